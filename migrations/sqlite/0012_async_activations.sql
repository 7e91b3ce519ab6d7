-- Asynchronous invocations (keep in step with ../postgres/0012_async_activations.sql): every
-- one accepted (202) is a row before it is answered, so it outlives the Core that accepted
-- it. The Core running it (`core`) refreshes `heartbeat_at` while it runs; a row whose
-- heartbeat stopped is taken over by another Core (or the same one, restarted), which runs a
-- retryable function again and records the others' loss. A finished one keeps its record (the
-- activation's JSON) until the activations' time limit.
CREATE TABLE async_activations (
    id            TEXT    PRIMARY KEY,
    owner_id      BIGINT  NOT NULL,
    module        TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    version       BIGINT,
    args          TEXT    NOT NULL,
    script        TEXT,
    state         TEXT    NOT NULL,
    core          TEXT    NOT NULL,
    heartbeat_at  BIGINT  NOT NULL,
    attempts      BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    record        TEXT
);
CREATE INDEX async_activations_running ON async_activations (state, heartbeat_at);
