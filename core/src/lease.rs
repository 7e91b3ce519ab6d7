//! On PostgreSQL, the Cores sharing the database run the functions' event connectors (MQTT and
//! NATS subscriptions, cron schedules) on exactly one of them, so a message or a tick starts
//! one invocation, not one per Core. That Core holds the connectors' lease: a session-level
//! advisory lock taken on a connection of its own, which PostgreSQL releases when that session
//! ends, however the Core ends (a `kill -9` closes its socket). Every other Core's
//! `connectors-lease` child tries to take it every second, so one of them runs the connectors
//! within about a second of the holder's death. The holder checks its connection every second
//! and stops its connectors as soon as it fails (it can no longer know it holds the lease).
//! Changes made through any Core reach the holder's connectors through `crate::peers`. The
//! same lease makes the holder's service manager the one that acts on long-running services
//! (`crate::services`): the others only watch, and the next holder adopts the replicas that
//! run. On SQLite (one Core) the Core runs them all and this child does not run.

use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, service};

use crate::platform::Platform;
use crate::store::Store;

/// The advisory lock's key ("flconn" in ASCII).
pub const LEASE_KEY: i64 = 0x666c_636f_6e6e;

/// How often a Core tries to take the lease, and the holder checks its connection.
const EVERY: Duration = Duration::from_secs(1);

/// The `connectors-lease` child (on PostgreSQL only).
pub fn child(store: &Store, platform: Platform) -> Option<ChildSpec> {
    if store.backend() != "postgres" {
        return None;
    }
    let store = store.clone();
    Some(service(
        "connectors-lease",
        "runs the functions' event connectors and manages the services while this Core holds the PostgreSQL lease",
        move || {
            let (store, platform) = (store.clone(), platform.clone());
            async move { hold(store, platform).await }
        },
    ))
}

/// Takes the lease when it is free, runs the connectors while it is held, and starts over
/// when the connection is lost. Never returns: store failures are retried.
async fn hold(store: Store, platform: Platform) -> Result<(), String> {
    // A restarted child does not know whether its old connection still held the lease.
    platform.drop_connectors();
    'connect: loop {
        let mut connection = match store.dedicated_connection().await {
            Ok(connection) => connection,
            Err(e) => {
                tracing::warn!(error = %e, "cannot connect for the connectors' lease; trying again");
                tokio::time::sleep(EVERY).await;
                continue;
            }
        };
        loop {
            let taken: Result<bool, sqlx::Error> =
                sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(LEASE_KEY)
                    .fetch_one(&mut connection)
                    .await;
            match taken {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(EVERY).await,
                // Whether the lock was taken is unknown: a new session starts from nothing.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask for the connectors' lease; reconnecting");
                    tokio::time::sleep(EVERY).await;
                    continue 'connect;
                }
            }
        }
        let mut synced = match platform.take_connectors().await {
            Ok(functions) => {
                tracing::info!(
                    functions,
                    "this Core holds the connectors' lease and runs the event connectors"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "holding the connectors' lease, but cannot read the functions yet");
                false
            }
        };
        loop {
            tokio::time::sleep(EVERY).await;
            if let Err(e) = sqlx::query("SELECT 1").execute(&mut connection).await {
                tracing::warn!(error = %e, "lost the connection holding the connectors' lease: its connectors stop");
                break;
            }
            // A first read that failed is tried again until it works.
            if !synced {
                synced = platform.sync_with_store().await.is_ok();
            }
        }
        platform.drop_connectors();
    }
}
