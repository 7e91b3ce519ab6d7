//! Stored secrets (migration 0010): a subject's named values, sealed by `crate::secrets`
//! before they reach the store. The store sees only nonces and ciphertexts.

use super::{Pool, Result, Store, StoreError, now_ms};

/// A stored secret, sealed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretRow {
    /// The subject it belongs to.
    pub owner_id: i64,
    /// Its name, unique for its owner.
    pub name: String,
    /// The nonce it was sealed with.
    pub nonce: Vec<u8>,
    /// The sealed value.
    pub ciphertext: Vec<u8>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Time of the last rotation (or creation), unix milliseconds.
    pub updated_at: i64,
}

/// The columns of a [`SecretRow`].
const COLUMNS: &str = "owner_id, name, nonce, ciphertext, created_at, updated_at";

impl Store {
    /// Stores or replaces (rotates) the sealed secret `owner`/`name`; answers whether it is new.
    /// `Invalid` when the owner does not exist.
    pub async fn put_secret(
        &self,
        owner: i64,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<bool> {
        const UPDATE: &str = "UPDATE secrets SET nonce = $3, ciphertext = $4, updated_at = $5 \
            WHERE owner_id = $1 AND name = $2";
        const INSERT: &str = "INSERT INTO secrets \
            (owner_id, name, nonce, ciphertext, created_at, updated_at) \
            VALUES ($1, $2, $3, $4, $5, $5)";
        let now = now_ms();
        // A rotation first; else a creation. Two creations racing: the loser's insert is a
        // unique violation, and its second round rotates what the winner created.
        for _ in 0..2 {
            let rotated = on_pool!(self, p => sqlx::query(UPDATE)
                .bind(owner)
                .bind(name)
                .bind(nonce)
                .bind(ciphertext)
                .bind(now)
                .execute(p)
                .await?
                .rows_affected());
            if rotated > 0 {
                return Ok(false);
            }
            let inserted = on_pool!(self, p => sqlx::query(INSERT)
                .bind(owner)
                .bind(name)
                .bind(nonce)
                .bind(ciphertext)
                .bind(now)
                .execute(p)
                .await
                .map(|_| ()));
            match inserted {
                Ok(()) => return Ok(true),
                Err(e) if super::is_unique_violation(&e) => continue,
                Err(e) if super::is_foreign_key_violation(&e) => {
                    return Err(StoreError::Invalid(format!(
                        "subject {owner} does not exist"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict(format!(
            "secret '{name}' was created and deleted meanwhile; try again"
        )))
    }

    /// The sealed secret `owner`/`name`, if it exists.
    pub async fn get_secret(&self, owner: i64, name: &str) -> Result<Option<SecretRow>> {
        let sql = format!("SELECT {COLUMNS} FROM secrets WHERE owner_id = $1 AND name = $2");
        Ok(on_pool!(self, p => sqlx::query_as(&sql)
            .bind(owner)
            .bind(name)
            .fetch_optional(p)
            .await?))
    }

    /// `owner`'s secrets, sealed, ordered by name.
    pub async fn list_secrets(&self, owner: i64) -> Result<Vec<SecretRow>> {
        let sql = format!("SELECT {COLUMNS} FROM secrets WHERE owner_id = $1 ORDER BY name");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).bind(owner).fetch_all(p).await?))
    }

    /// One stored secret of anyone, if there is any: the Core checks its key opens it.
    pub async fn any_secret(&self) -> Result<Option<SecretRow>> {
        let sql = format!("SELECT {COLUMNS} FROM secrets ORDER BY id LIMIT 1");
        Ok(on_pool!(self, p => sqlx::query_as(&sql).fetch_optional(p).await?))
    }

    /// Deletes the secret `owner`/`name`. `NotFound`.
    pub async fn delete_secret(&self, owner: i64, name: &str) -> Result<()> {
        const SQL: &str = "DELETE FROM secrets WHERE owner_id = $1 AND name = $2";
        let deleted = on_pool!(self, p => sqlx::query(SQL)
            .bind(owner)
            .bind(name)
            .execute(p)
            .await?
            .rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("secret '{name}' not found")));
        }
        Ok(())
    }
}
