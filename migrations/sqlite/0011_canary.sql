-- Canaries (keep in step with ../postgres/0011_canary.sql): a function may send a share of its
-- invocations (canary_percent, 1 to 99) to one of its kept versions other than the current one
-- (canary_version), from canary_since (unix milliseconds). All three are set, or none.
-- The canary's version may be newer than the current one (an upload staged as a canary).
-- Pruning keeps the canary's version, and it cannot be deleted while the canary runs.
ALTER TABLE functions ADD COLUMN canary_version BIGINT;
ALTER TABLE functions ADD COLUMN canary_percent BIGINT;
ALTER TABLE functions ADD COLUMN canary_since BIGINT;
-- The highest version number the function has had: a new version takes the next one. The
-- current version (`version`) is not always the newest: an upload may be staged as a canary.
ALTER TABLE functions ADD COLUMN last_version BIGINT NOT NULL DEFAULT 1;
UPDATE functions SET last_version = version;
