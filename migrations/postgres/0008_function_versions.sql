-- Function versions (keep in step with ../sqlite/0008_function_versions.sql).
-- Every create, update and rollback stores an immutable version: its code hash and metadata,
-- who made it and when. `functions` keeps a copy of the current version's columns (what
-- lists and invocations read) and its number in `version`. A function's existing row
-- becomes its version 1.
CREATE TABLE function_versions (
    function_id     BIGINT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    version         BIGINT  NOT NULL,
    hash            TEXT    NOT NULL,
    abi             TEXT    NOT NULL,
    size            BIGINT  NOT NULL,
    capacity_bytes  BIGINT  NOT NULL,
    retryable       BOOLEAN NOT NULL,
    timeout_ms      BIGINT  NOT NULL,
    allow_hosts     TEXT    NOT NULL,
    tag             TEXT,
    events          TEXT,
    sinks           TEXT,
    created_by      TEXT,
    rollback_of     BIGINT,
    created_at      BIGINT  NOT NULL,
    PRIMARY KEY (function_id, version)
);

INSERT INTO function_versions
    (function_id, version, hash, abi, size, capacity_bytes, retryable, timeout_ms, allow_hosts,
     tag, events, sinks, created_by, rollback_of, created_at)
SELECT id, 1, hash, abi, size, capacity_bytes, retryable, timeout_ms, allow_hosts,
       tag, events, sinks, NULL, NULL, updated_at
FROM functions;

ALTER TABLE functions ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- Code is kept per function and hash, so versions with the same code share one copy and a
-- rollback stores no code.
CREATE TABLE function_code_by_hash (
    function_id  BIGINT NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    hash         TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    chunk        BYTEA   NOT NULL,
    PRIMARY KEY (function_id, hash, seq)
);

INSERT INTO function_code_by_hash (function_id, hash, seq, chunk)
SELECT c.function_id, f.hash, c.seq, c.chunk
FROM function_code c JOIN functions f ON f.id = c.function_id;

DROP TABLE function_code;
ALTER TABLE function_code_by_hash RENAME TO function_code;
