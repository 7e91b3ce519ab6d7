-- Per-function time limit (keep in step with ../postgres/0003_timeout.sql).
ALTER TABLE functions ADD COLUMN timeout_ms BIGINT NOT NULL DEFAULT 60000;
