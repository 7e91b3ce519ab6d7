-- Secrets (keep in step with ../postgres/0010_secrets.sql): named values of a subject,
-- encrypted by the Core (XChaCha20-Poly1305 with the operator's key, the owner and name as
-- associated data) before they are stored; never stored, returned or logged in clear.
CREATE TABLE secrets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id    INTEGER NOT NULL REFERENCES subjects (id),
    name        TEXT    NOT NULL,
    nonce       BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (owner_id, name)
);
