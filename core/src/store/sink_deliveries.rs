//! Results queued for sinks, in the store (migration 0013), so one queued by a Core outlives
//! it: `crate::sinks` writes each before the invocation is answered, deletes it once the sink
//! took it, and `crate::sinks::keeper` keeps the heartbeat of this Core's rows and takes over
//! those whose heartbeat stopped.

use super::{Pool, Result, Store};

/// A result waiting for one sink, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SinkDeliveryRow {
    /// Its number.
    pub id: i64,
    /// Stored module name.
    pub module: String,
    /// Function name.
    pub function: String,
    /// The sink's place in the function's list.
    pub position: i64,
    /// The sink's kind (`webhook`, `couchdb`).
    pub kind: String,
    /// The sink's URL.
    pub url: String,
    /// The result, JSON text.
    pub document: String,
}

/// Where a result goes: a sink's place in its function's list, kind and URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkTarget<'a> {
    /// The sink's place in the function's list.
    pub position: usize,
    /// `webhook` or `couchdb`.
    pub kind: &'a str,
    /// Its URL.
    pub url: &'a str,
}

/// Most ids one statement deletes (SQLite allows 32,766 parameters; PostgreSQL 65,535).
const DELETE_CHUNK: usize = 500;

impl Store {
    /// Stores `document` once per target, delivered by `core`; answers the rows' ids, in
    /// the targets' order.
    pub async fn insert_sink_deliveries(
        &self,
        core: &str,
        module: &str,
        function: &str,
        targets: &[SinkTarget<'_>],
        document: &str,
        now: i64,
    ) -> Result<Vec<i64>> {
        const SQL: &str = "INSERT INTO sink_deliveries (module, function, position, kind, url, \
            document, core, heartbeat_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
            RETURNING id";
        // One transaction: a result is stored for all its sinks or for none.
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let mut ids = Vec::with_capacity(targets.len());
            for target in targets {
                let position = i64::try_from(target.position).unwrap_or(i64::MAX);
                let id: i64 = sqlx::query_scalar(SQL)
                    .bind(module)
                    .bind(function)
                    .bind(position)
                    .bind(target.kind)
                    .bind(target.url)
                    .bind(document)
                    .bind(core)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                ids.push(id);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Deletes the rows `ids` (delivered, refused or dropped); answers how many went.
    pub async fn delete_sink_deliveries(&self, ids: &[i64]) -> Result<u64> {
        let mut deleted = 0;
        for chunk in ids.chunks(DELETE_CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "DELETE FROM sink_deliveries WHERE id IN ({})",
                placeholders.join(", ")
            );
            deleted += on_pool!(self, p => {
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(p).await?.rows_affected()
            });
        }
        Ok(deleted)
    }

    /// `core` still delivers its rows: their heartbeat is `now`.
    pub async fn beat_sink_deliveries(&self, core: &str, now: i64) -> Result<u64> {
        const SQL: &str = "UPDATE sink_deliveries SET heartbeat_at = $2 WHERE core = $1";
        Ok(on_pool!(self, p => sqlx::query(SQL)
            .bind(core)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()))
    }

    /// Takes over for `core` at most `limit` rows whose heartbeat is older than
    /// `stale_before`, oldest first, and answers them. One statement claims them all, naming
    /// the take-over `claim` (a number no other take-over uses): a row another Core claimed
    /// first no longer matches the heartbeat condition (PostgreSQL checks it again on the
    /// row it waited for; SQLite has one writer), so no row is taken twice.
    pub async fn claim_stale_sink_deliveries(
        &self,
        core: &str,
        claim: i64,
        stale_before: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<SinkDeliveryRow>> {
        const CLAIM: &str = "UPDATE sink_deliveries SET core = $1, claim = $2, heartbeat_at = $3 \
            WHERE heartbeat_at < $4 AND id IN (SELECT id FROM sink_deliveries \
            WHERE heartbeat_at < $4 ORDER BY id LIMIT $5)";
        const TAKEN: &str = "SELECT id, module, function, position, kind, url, document \
            FROM sink_deliveries WHERE core = $1 AND claim = $2 ORDER BY id";
        let taken = on_pool!(self, p => sqlx::query(CLAIM)
            .bind(core)
            .bind(claim)
            .bind(now)
            .bind(stale_before)
            .bind(limit)
            .execute(p)
            .await?
            .rows_affected());
        if taken == 0 {
            return Ok(Vec::new());
        }
        Ok(on_pool!(self, p => sqlx::query_as(TAKEN)
            .bind(core)
            .bind(claim)
            .fetch_all(p)
            .await?))
    }

    /// How many results wait for sinks, over every Core.
    #[cfg(test)]
    pub(crate) async fn count_sink_deliveries(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM sink_deliveries";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await?))
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Run on both back ends by the store's suite.
    pub(in crate::store) async fn suite(store: &Store) {
        let hook = SinkTarget {
            position: 0,
            kind: "webhook",
            url: "http://127.0.0.1:9/hook",
        };
        let couch = SinkTarget {
            position: 1,
            kind: "couchdb",
            url: "http://127.0.0.1:9/db",
        };
        let first = store
            .insert_sink_deliveries("a", "_", "f", &[hook, couch], r#"{"n":1}"#, 100)
            .await
            .unwrap();
        let second = store
            .insert_sink_deliveries("a", "_", "f", &[hook], r#"{"n":2}"#, 200)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert!(
            first[0] < first[1] && first[1] < second[0],
            "{first:?} {second:?}"
        );
        assert_eq!(store.count_sink_deliveries().await.unwrap(), 3);

        // A live Core's rows are beaten and not taken; a dead one's are taken once, oldest
        // first, up to the limit, by the Core that names the claim.
        assert_eq!(store.beat_sink_deliveries("a", 1_000).await.unwrap(), 3);
        let none = store
            .claim_stale_sink_deliveries("b", 7, 500, 1_001, 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        let taken = store
            .claim_stale_sink_deliveries("b", 7, 2_000, 2_001, 2)
            .await
            .unwrap();
        let ids: Vec<i64> = taken.iter().map(|r| r.id).collect();
        assert_eq!(ids, first);
        assert_eq!(
            (
                taken[1].position,
                taken[1].kind.as_str(),
                taken[1].url.as_str()
            ),
            (1, "couchdb", couch.url)
        );
        assert_eq!(taken[0].document, r#"{"n":1}"#);
        assert_eq!(
            (taken[0].module.as_str(), taken[0].function.as_str()),
            ("_", "f")
        );
        // Taken rows are b's now: beaten with b's, not taken again by c.
        let again = store
            .claim_stale_sink_deliveries("c", 9, 2_000, 2_002, 10)
            .await
            .unwrap();
        assert_eq!(again.iter().map(|r| r.id).collect::<Vec<_>>(), second);
        assert_eq!(store.beat_sink_deliveries("b", 3_000).await.unwrap(), 2);

        // Delivered rows go, however many at once.
        assert_eq!(store.delete_sink_deliveries(&first).await.unwrap(), 2);
        assert_eq!(store.delete_sink_deliveries(&first).await.unwrap(), 0);
        let many: Vec<i64> = (0..1_200).map(|i| second[0] + 1_000_000 + i).collect();
        let mut with_last = many.clone();
        with_last.push(second[0]);
        assert_eq!(store.delete_sink_deliveries(&with_last).await.unwrap(), 1);
        assert_eq!(store.count_sink_deliveries().await.unwrap(), 0);
    }
}
