//! The `sink-keeper` child: every [`BEAT`] it deletes the rows of results that left their
//! queue, refreshes the heartbeat of this Core's other rows, and takes over the rows of a Core
//! whose heartbeat stopped ([`STALE`], as for asynchronous invocations in `pending.rs`),
//! queueing each for its function's sink here.

use std::collections::HashSet;

use funless_actors::supervisor::{ChildSpec, service};

use super::Adopted;
use crate::pending::{BEAT, STALE};
use crate::platform::Platform;
use crate::store::SinkDeliveryRow;

/// Most rows one beat takes over (the queues' bounds hold the rest back anyway).
const CLAIM_MAX: i64 = 1_000;

/// The `sink-keeper` child.
pub fn child(platform: Platform) -> ChildSpec {
    service(
        "sink-keeper",
        "keeps this Core's queued sink results alive in the store and takes over those of a Core that died",
        move || {
            let platform = platform.clone();
            async move { keep(platform).await }
        },
    )
}

/// Never returns: a store that is away is tried again at the next beat.
async fn keep(platform: Platform) -> Result<(), String> {
    let core = platform.changes().id().to_string();
    // Rows taken over whose function could not be read yet (at most one claim's worth: the
    // store that failed that read fails the next claim too).
    let mut unplaced = Vec::new();
    loop {
        tokio::time::sleep(BEAT).await;
        unplaced = adopt_unmatched(&platform, unplaced).await;
        if unplaced.is_empty() {
            unplaced = beat(&platform, &core).await;
        }
    }
}

/// One beat: delete, refresh, take over; answers the rows taken over that could not be
/// placed yet.
async fn beat(platform: &Platform, core: &str) -> Vec<SinkDeliveryRow> {
    let (store, sinks) = (platform.store(), platform.sinks());
    let done = sinks.finished.take();
    if !done.is_empty()
        && let Err(e) = store.delete_sink_deliveries(&done).await
    {
        tracing::warn!(error = %e, rows = done.len(), "cannot delete delivered sink results; trying again");
        sinks.finished.give_back(done);
    }
    let now = crate::store::now_ms();
    if let Err(e) = store.beat_sink_deliveries(core, now).await {
        tracing::warn!(error = %e, "cannot refresh the queued sink results' heartbeat");
        return Vec::new();
    }
    // Zero is the claim of rows never taken over.
    let claim = rand::random::<i64>() | 1;
    let stale_before = now - STALE.as_millis() as i64;
    let rows = match store
        .claim_stale_sink_deliveries(core, claim, stale_before, now, CLAIM_MAX)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for abandoned sink results");
            return Vec::new();
        }
    };
    if rows.is_empty() {
        return Vec::new();
    }
    tracing::warn!(
        results = rows.len(),
        "took over sink results whose Core stopped"
    );
    let mut unmatched = Vec::new();
    for row in rows {
        if sinks.adopt(&row) == Adopted::NoSink {
            unmatched.push(row);
        }
    }
    adopt_unmatched(platform, unmatched).await
}

/// Rows whose sink does not run here: this Core may not have heard of the function's sinks
/// yet (it is starting, or a change's notification is on its way), so they are read from the
/// store; a row whose sink is gone from the function (or the function with it) is deleted,
/// as a removed sink's queue is dropped. Answers the rows whose function could not be read.
async fn adopt_unmatched(platform: &Platform, rows: Vec<SinkDeliveryRow>) -> Vec<SinkDeliveryRow> {
    let (store, sinks) = (platform.store(), platform.sinks());
    let mut read = HashSet::new();
    let mut unplaced = Vec::new();
    for row in rows {
        let key = (row.module.clone(), row.function.clone());
        if !read.contains(&key) {
            match store.get_function(&row.module, &row.function).await {
                Ok(Some(function)) => sinks.ensure(
                    &row.module,
                    &row.function,
                    crate::platform::stored_sinks(&function),
                ),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a function whose sink results were taken over; trying again");
                    unplaced.push(row);
                    continue;
                }
            }
            read.insert(key);
        }
        if sinks.adopt(&row) == Adopted::NoSink {
            tracing::info!(function = %format!("{}/{}", row.module, row.function), sink = %row.url, "a taken-over sink result's sink is gone: dropped");
            sinks.forget_stored(row.id);
        }
    }
    unplaced
}
