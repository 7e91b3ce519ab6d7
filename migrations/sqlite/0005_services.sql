-- Long-running services (keep in step with ../postgres/0005_services.sql).
-- `spec` is the child spec as JSON (restart, intensity, period, backoff, replicas, memory,
-- egress allow-list, environment); `state` is `running` or `failed` (with `reason`).
CREATE TABLE services (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    owner_id    INTEGER REFERENCES subjects (id),
    code        BLOB    NOT NULL,
    hash        TEXT    NOT NULL,
    abi         TEXT    NOT NULL,
    size        BIGINT  NOT NULL,
    spec        TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    reason      TEXT,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
