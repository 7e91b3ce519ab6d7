-- Egress allow-list of a function, JSON array of "host" or "host:port" (keep in step with ../postgres/0004_egress.sql).
ALTER TABLE functions ADD COLUMN allow_hosts TEXT NOT NULL DEFAULT '[]';
