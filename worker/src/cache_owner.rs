//! The owner of the code table, as a process owns an ETS table.
//!
//! The table itself ([`crate::cache::CodeCache`]) is read and filled concurrently by the
//! invokers (a lookup per invocation must not queue in any mailbox; ETS's `public` access), but
//! its lifetime is this actor's: it is filled from the disk cache when the owner starts (before
//! the gateway joins the cluster, since the owner starts first) and emptied when the owner
//! ends, however it ends. Explicit evictions, which also remove the precompiled files, go
//! through the owner's mailbox, one at a time.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use crate::runtime::Runtime;

/// Messages of the code-table owner.
#[derive(Debug, RactorMessage)]
pub(crate) enum CacheMessage {
    /// Drop these code versions from memory and disk (a function was deleted or replaced).
    Evict(Vec<String>),
}

/// The code-table owner.
#[derive(Debug)]
pub(crate) struct CacheOwner;

/// Its state; dropping it empties the table.
pub(crate) struct CacheOwnerState {
    runtime: Arc<Runtime>,
}

impl Drop for CacheOwnerState {
    fn drop(&mut self) {
        self.runtime.clear_memory_cache();
    }
}

impl Actor for CacheOwner {
    type Msg = CacheMessage;
    type State = CacheOwnerState;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        runtime: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        runtime.preload().await;
        runtime.set_cache_owner(Some(myself));
        Ok(CacheOwnerState { runtime })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.runtime.set_cache_owner(None);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CacheMessage::Evict(hashes) => {
                let runtime = state.runtime.clone();
                // File removal is blocking I/O: off the async threads, but still one at a time.
                tokio::task::spawn_blocking(move || runtime.evict(&hashes)).await?;
            }
        }
        Ok(())
    }
}
