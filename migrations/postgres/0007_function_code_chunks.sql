-- A function's code in 1 MiB rows (keep in step with ../sqlite/0007_function_code_chunks.sql):
-- a store request then never holds more than a chunk of it, and readers join the rows in
-- `seq` order; `functions.code` is left empty.
CREATE TABLE function_code (
    function_id  BIGINT  NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    chunk        BYTEA   NOT NULL,
    PRIMARY KEY (function_id, seq)
);

INSERT INTO function_code (function_id, seq, chunk) SELECT id, 0, code FROM functions;
UPDATE functions SET code = ''::bytea;
