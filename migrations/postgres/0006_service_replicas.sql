-- What each replica of a service went through, kept across Core restarts (keep in step with
-- ../sqlite/0006_service_replicas.sql): a JSON array, one object per replica index,
-- with its restart count, its back-off streak and its last exit reason. NULL: nothing yet.
ALTER TABLE services ADD COLUMN replicas TEXT;
