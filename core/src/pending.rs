//! Asynchronous invocations outlive the Core that accepted them. Each is a row of the store
//! (`store/pending.rs`) before its 202 is sent; the Core running it keeps the row's heartbeat
//! fresh (the `async-keeper` child, every [`BEAT`]) and writes how it ended. A row whose
//! heartbeat is older than [`STALE`] belongs to a Core that died: the keeper of a live Core
//! (another one sharing PostgreSQL, or the same one restarted) takes it over, and runs it again
//! if its function is retryable (so such a function runs at least once; it may run twice when
//! its first run was cut short) or records that it was lost otherwise. Any Core answers
//! `GET /v1/activations/:id` from the store when its memory does not hold the record. Finished
//! rows keep no arguments, and go after the activations' time limit or past their count
//! limit (`--activation-max`).

use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, service};
use funless_api::types::{ActivationInfo, ActivationStatus, ErrorDetail};

use crate::platform::Platform;
use crate::store::PendingRow;

/// How often the keeper refreshes its Core's rows and looks for abandoned ones.
pub const BEAT: Duration = Duration::from_secs(2);

/// A row whose heartbeat is this old is abandoned.
pub const STALE: Duration = Duration::from_secs(10);

/// Most taken-over invocations this Core runs at once (each beat takes only as many more).
const MAX_RESUMED: usize = 32;

/// How often finished rows past the activations' time limit are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The `async-keeper` child.
pub fn child(platform: Platform) -> ChildSpec {
    service(
        "async-keeper",
        "keeps this Core's asynchronous invocations alive in the store and takes over those of a Core that died",
        move || {
            let platform = platform.clone();
            async move { keep(platform).await }
        },
    )
}

/// Never returns: a store that is away is tried again at the next beat.
async fn keep(platform: Platform) -> Result<(), String> {
    let core = platform.changes().id().to_string();
    let store = platform.store().clone();
    let mut last_prune = std::time::Instant::now();
    // The runs this keeper started, owned by it: bounded, and a panic is logged.
    let mut resumed = tokio::task::JoinSet::new();
    loop {
        tokio::time::sleep(BEAT).await;
        while let Some(ended) = resumed.try_join_next() {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a taken-over asynchronous invocation's run failed");
            }
        }
        let now = crate::store::now_ms();
        if let Err(e) = store.beat_pending(&core, now).await {
            tracing::warn!(error = %e, "cannot refresh the asynchronous invocations' heartbeat");
            continue;
        }
        let stale_before = now - STALE.as_millis() as i64;
        let room = MAX_RESUMED.saturating_sub(resumed.len()) as i64;
        match store
            .claim_stale_pending(&core, stale_before, now, room)
            .await
        {
            Ok(rows) => {
                for row in rows {
                    tracing::warn!(activation = %row.id, function = %format!("{}/{}", row.module, row.function), attempts = row.attempts, "took over an asynchronous invocation whose Core stopped");
                    let platform = platform.clone();
                    resumed.spawn(async move { platform.resume_pending(row).await });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for abandoned asynchronous invocations")
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = std::time::Instant::now();
            let limits = platform.activation_limits();
            let ttl = i64::try_from(limits.ttl.as_millis()).unwrap_or(i64::MAX);
            let keep = i64::try_from(limits.max_records).unwrap_or(i64::MAX);
            if let Err(e) = store.prune_pending(now.saturating_sub(ttl), keep).await {
                tracing::warn!(error = %e, "cannot delete old asynchronous invocations");
            }
        }
    }
}

/// What `GET /v1/activations/:id` shows of a stored invocation.
pub fn stored_info(row: PendingRow) -> ActivationInfo {
    if let Some(record) = row.record.as_deref()
        && let Ok(info) = serde_json::from_str::<ActivationInfo>(record)
    {
        return info;
    }
    ActivationInfo {
        activation_id: row.id,
        module: crate::store::shown_module(&row.module).to_string(),
        function: row.function,
        status: ActivationStatus::Running,
        started_at_ms: u64::try_from(row.created_at).unwrap_or(0),
        duration_ms: None,
        worker: None,
        result: None,
        error: None,
        logs: Vec::new(),
        version: row.version.and_then(|v| u64::try_from(v).ok()),
        track: None,
    }
}

/// The record of a stored invocation that cannot run: the reason and why.
pub fn lost_info(row: &PendingRow, reason: &str, detail: String) -> ActivationInfo {
    ActivationInfo {
        status: ActivationStatus::Error,
        error: Some(ErrorDetail {
            detail,
            reason: Some(reason.to_string()),
        }),
        duration_ms: Some(0.0),
        ..stored_info(row.clone())
    }
}
