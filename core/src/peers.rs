//! Cores sharing one PostgreSQL store tell each other that something changed, so that none
//! keeps serving metadata another one replaced. A change made here (a function, module,
//! subject, APP script or secret written) wakes [`Changes`]; the `peers-notify` child sends one
//! `NOTIFY funless_changes` for all the changes since its last, naming this Core; the
//! `peers-listen` child of every other Core, listening on that channel, drops that Core's
//! in-memory copies (the catalog, the sessions, the parsed scripts, the opened secrets:
//! `Platform::forget_cached`), which are read again from the store on their next use, and
//! starts, changes or stops its functions' sinks as the store has them. A
//! listener that lost its connection may have missed notifications, so it drops them on every
//! (re)connection too. On SQLite (one Core: `launch.rs` refuses a second) neither child runs.

use std::sync::Arc;

use funless_actors::supervisor::{ChildSpec, service};

use crate::platform::Platform;
use crate::store::Store;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "funless_changes";

/// First wait before trying the store again, doubled up to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Changes made by this Core not yet told to the others, coalesced: any number of them wait
/// as one wake-up, so the pending work is bounded however fast changes come.
#[derive(Debug)]
pub struct Changes {
    pending: tokio::sync::Notify,
    /// This Core's name in its notifications (random per process), so it ignores its own.
    id: String,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            pending: tokio::sync::Notify::new(),
            id: format!("{:032x}", rand::random::<u128>()),
        }
    }
}

impl Changes {
    /// Records that this Core changed the store (call after the write).
    pub fn changed(&self) {
        self.pending.notify_one();
    }

    /// This Core's id in notifications.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The children that tell other Cores of this one's changes and listen for theirs: none on
/// SQLite.
pub fn children(store: &Store, changes: Arc<Changes>, platform: Platform) -> Vec<ChildSpec> {
    if store.backend() != "postgres" {
        return Vec::new();
    }
    let notify_store = store.clone();
    let notify = service(
        "peers-notify",
        "tells the other Cores on this PostgreSQL store that this one changed it",
        move || {
            let (store, changes) = (notify_store.clone(), changes.clone());
            async move {
                loop {
                    changes.pending.notified().await;
                    // The store may be away for a while: this change is told once it is back
                    // (with the ones made meanwhile), and nothing escalates.
                    let mut wait = RETRY_FIRST;
                    while let Err(e) = store.notify(CHANNEL, changes.id()).await {
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot tell the other Cores of a change");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                }
            }
        },
    );
    let listen_store = store.clone();
    let listen = service(
        "peers-listen",
        "drops this Core's in-memory metadata when another Core changes the store",
        move || {
            let (store, platform) = (listen_store.clone(), platform.clone());
            async move { listen(store, platform).await }
        },
    );
    vec![notify, listen]
}

async fn listen(store: Store, platform: Platform) -> Result<(), String> {
    let own = platform.changes().id().to_string();
    let mut wait = RETRY_FIRST;
    loop {
        let mut listener = match store.listener(CHANNEL).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot listen for the other Cores' changes");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
                continue;
            }
        };
        wait = RETRY_FIRST;
        // Whatever changed before this listener ran was not heard.
        forget(&platform).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) if notification.payload() == own => {}
                Ok(Some(notification)) => {
                    tracing::debug!(
                        from = notification.payload(),
                        "another Core changed the store"
                    );
                    forget(&platform).await;
                }
                // The connection was lost (the next call reconnects): anything may have been
                // missed meanwhile.
                Ok(None) => {
                    tracing::warn!("lost the connection listening for the other Cores' changes");
                    forget(&platform).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for the other Cores' changes failed; listening again");
                    break;
                }
            }
        }
    }
}

/// Drops the in-memory copies, has the service manager read the services again, and makes
/// the running sinks match the store (and the event connectors, on the Core holding the
/// lease: `crate::lease`).
async fn forget(platform: &Platform) {
    platform.forget_cached();
    platform.services().refresh().await;
    if let Err(e) = platform.sync_with_store().await {
        tracing::warn!(error = %e, "cannot bring the sinks and event connectors up to date");
    }
}
