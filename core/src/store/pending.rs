//! Asynchronous invocations in the store (migration 0012), so one accepted by a Core outlives
//! it: `crate::pending` writes each before answering 202, keeps its heartbeat while it runs,
//! takes over those whose heartbeat stopped, and records how each ended.

use super::{Pool, Result, Store};

/// An asynchronous invocation as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingRow {
    /// Its activation id.
    pub id: String,
    /// The subject that asked for it.
    pub owner_id: i64,
    /// Stored module name.
    pub module: String,
    /// Function name.
    pub function: String,
    /// The version it was pinned to, if any.
    pub version: Option<i64>,
    /// Its arguments, JSON text.
    pub args: String,
    /// The APP script it was scheduled with, if any.
    pub script: Option<String>,
    /// `running` or `done`.
    pub state: String,
    /// The Core running it (`crate::peers::Changes::id`).
    pub core: String,
    /// When that Core last said it still runs it, unix milliseconds.
    pub heartbeat_at: i64,
    /// How many Cores started it.
    pub attempts: i64,
    /// When it was accepted, unix milliseconds.
    pub created_at: i64,
    /// When it ended, unix milliseconds.
    pub finished_at: Option<i64>,
    /// How it ended: the activation record's JSON.
    pub record: Option<String>,
}

/// The columns of a [`PendingRow`].
const COLUMNS: &str = "id, owner_id, module, function, version, args, script, state, core, \
    heartbeat_at, attempts, created_at, finished_at, record";

impl Store {
    /// Stores an accepted invocation as running on `row.core`.
    pub async fn insert_pending(&self, row: &PendingRow) -> Result<()> {
        const SQL: &str = "INSERT INTO async_activations (id, owner_id, module, function, \
            version, args, script, state, core, heartbeat_at, attempts, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, 1, $10)";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(&row.id)
            .bind(row.owner_id)
            .bind(&row.module)
            .bind(&row.function)
            .bind(row.version)
            .bind(&row.args)
            .bind(&row.script)
            .bind(&row.core)
            .bind(row.heartbeat_at)
            .bind(row.created_at)
            .execute(p)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Records how the invocation `id` run by `core` ended (nothing when another Core took it
    /// over meanwhile: its own run records it), and drops its arguments, which only a run
    /// needs; answers whether it was recorded.
    pub async fn finish_pending(
        &self,
        id: &str,
        core: &str,
        record: &str,
        now: i64,
    ) -> Result<bool> {
        const SQL: &str = "UPDATE async_activations SET state = 'done', record = $3, \
            finished_at = $4, args = '' WHERE id = $1 AND core = $2 AND state = 'running'";
        let done = on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(core)
            .bind(record)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    /// `core` still runs its invocations: their heartbeat is `now`.
    pub async fn beat_pending(&self, core: &str, now: i64) -> Result<u64> {
        const SQL: &str = "UPDATE async_activations SET heartbeat_at = $2 \
            WHERE core = $1 AND state = 'running'";
        Ok(on_pool!(self, p => sqlx::query(SQL)
            .bind(core)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()))
    }

    /// Takes over for `core` at most `limit` running invocations whose heartbeat is older than
    /// `stale_before`, oldest first: each is claimed by a compare-and-set on its heartbeat,
    /// so two Cores never take the same one.
    pub async fn claim_stale_pending(
        &self,
        core: &str,
        stale_before: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<PendingRow>> {
        const STALE: &str = "SELECT id, heartbeat_at FROM async_activations \
            WHERE state = 'running' AND heartbeat_at < $1 ORDER BY created_at LIMIT $2";
        const CLAIM: &str = "UPDATE async_activations SET core = $2, heartbeat_at = $3, \
            attempts = attempts + 1 WHERE id = $1 AND state = 'running' AND heartbeat_at = $4";
        let stale: Vec<(String, i64)> = on_pool!(self, p => sqlx::query_as(STALE)
            .bind(stale_before)
            .bind(limit)
            .fetch_all(p)
            .await?);
        let mut claimed = Vec::with_capacity(stale.len());
        for (id, beat) in stale {
            let taken = on_pool!(self, p => sqlx::query(CLAIM)
                .bind(&id)
                .bind(core)
                .bind(now)
                .bind(beat)
                .execute(p)
                .await?
                .rows_affected());
            if taken > 0
                && let Some(row) = self.get_pending(&id).await?
            {
                claimed.push(row);
            }
        }
        Ok(claimed)
    }

    /// Gives up `core`'s claim on the running invocation `id`, so the next look for abandoned
    /// ones (any Core's) takes it again: for a run that could not start for a passing reason.
    pub async fn release_pending(&self, id: &str, core: &str) -> Result<()> {
        const SQL: &str = "UPDATE async_activations SET heartbeat_at = 0 \
            WHERE id = $1 AND core = $2 AND state = 'running'";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(id)
            .bind(core)
            .execute(p)
            .await
            .map(drop)?);
        Ok(())
    }

    /// The stored invocation `id`, if any.
    pub async fn get_pending(&self, id: &str) -> Result<Option<PendingRow>> {
        let sql = format!("SELECT {COLUMNS} FROM async_activations WHERE id = $1");
        Ok(on_pool!(self, p => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?))
    }

    /// Deletes the finished invocations that ended before `before`, and those past the
    /// `keep` newest finished ones; answers how many.
    pub async fn prune_pending(&self, before: i64, keep: i64) -> Result<u64> {
        const SQL: &str = "DELETE FROM async_activations WHERE state = 'done' AND \
            (finished_at < $1 OR finished_at < (SELECT finished_at FROM async_activations \
             WHERE state = 'done' ORDER BY finished_at DESC LIMIT 1 OFFSET $2))";
        Ok(on_pool!(self, p => sqlx::query(SQL)
            .bind(before)
            // The `keep`-th newest: what ended before it goes.
            .bind(keep.max(1) - 1)
            .execute(p)
            .await?
            .rows_affected()))
    }
}
