-- Scheduling (keep in step with ../postgres/0002_scheduling.sql).
-- One memory unit everywhere: a function's declared need is now bytes (it was KiB).
ALTER TABLE functions RENAME COLUMN capacity_kib TO capacity_bytes;
UPDATE functions SET capacity_bytes = capacity_bytes * 1024;
-- Whether an invocation may run again elsewhere when its worker is lost mid-call.
ALTER TABLE functions ADD COLUMN retryable BOOLEAN NOT NULL DEFAULT TRUE;

-- FunLess APP scheduling scripts (YAML source, checked at upload).
CREATE TABLE app_scripts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    source      TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
