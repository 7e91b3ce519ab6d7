-- FunLess function store, SQLite flavour (keep in step with ../postgres/0001_initial.sql).
-- Timestamps are unix milliseconds; names compare byte-wise.

CREATE TABLE subjects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    token_hash  TEXT    NOT NULL UNIQUE,
    admin       BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE modules (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    owner_id    INTEGER REFERENCES subjects (id),
    created_at  BIGINT  NOT NULL
);

CREATE INDEX modules_owner_id ON modules (owner_id);

CREATE TABLE functions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    module_id     INTEGER NOT NULL REFERENCES modules (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    code          BLOB    NOT NULL,
    hash          TEXT    NOT NULL,
    abi           TEXT    NOT NULL,
    size          BIGINT  NOT NULL,
    capacity_kib  BIGINT  NOT NULL,
    tag           TEXT,
    events        TEXT,
    sinks         TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    UNIQUE (module_id, name)
);
