-- Configuration (keep in step with ../sqlite/0009_config.sql): key/value settings of a
-- module and of each function version, JSON objects of strings, given to the function as its
-- environment (the function's own over its module's). A function's current configuration is
-- copied into `functions` with the rest of its current version.
ALTER TABLE modules ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE functions ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE function_versions ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
