-- Sink deliveries (keep in step with ../sqlite/0013_sink_deliveries.sql): every result queued
-- for a function's sink is a row until the sink took it (or refused it), so a result outlives
-- the Core that queued it. The Core delivering it (`core`) refreshes `heartbeat_at`; a row
-- whose heartbeat stopped is taken over by another Core (or the same one, restarted), which
-- delivers it to the function's sink at `position` if that sink still has this kind and URL.
-- `claim` names one take-over, so a Core reads back exactly the rows it took.
CREATE TABLE sink_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    module        TEXT    NOT NULL,
    function      TEXT    NOT NULL,
    position      BIGINT  NOT NULL,
    kind          TEXT    NOT NULL,
    url           TEXT    NOT NULL,
    document      TEXT    NOT NULL,
    core          TEXT    NOT NULL,
    heartbeat_at  BIGINT  NOT NULL,
    claim         BIGINT  NOT NULL DEFAULT 0,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX sink_deliveries_core ON sink_deliveries (core, claim);
CREATE INDEX sink_deliveries_heartbeat ON sink_deliveries (heartbeat_at);
