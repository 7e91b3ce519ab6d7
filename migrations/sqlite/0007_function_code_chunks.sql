-- A function's code in 1 MiB rows (keep in step with ../postgres/0007_function_code_chunks.sql):
-- SQLite builds a whole row in memory, several times over, to insert or read it, so one row
-- per function made a 60 MiB upload cost the Core ~4x its size in SQLite alone. Readers join
-- the rows in `seq` order; `functions.code` is left empty.
CREATE TABLE function_code (
    function_id  INTEGER NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    chunk        BLOB    NOT NULL,
    PRIMARY KEY (function_id, seq)
);

INSERT INTO function_code (function_id, seq, chunk) SELECT id, 0, code FROM functions;
UPDATE functions SET code = x'';
