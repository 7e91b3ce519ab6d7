//! The Core's live view of its workers, shared by the registry (which writes it) and the
//! invocation path (which reads it without going through any mailbox).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use funless_actors::protocol::{WorkerMessage, WorkerStatus};
use ractor::{ActorId, ActorRef};

use crate::scheduler::{self, Candidate, NoWorker};

/// One connected worker.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    /// Its gateway.
    pub actor: ActorRef<WorkerMessage>,
    /// Last status it reported (`None` until the first one arrives).
    pub status: Option<WorkerStatus>,
    /// When the last status arrived.
    pub seen: Instant,
    /// Invocations this Core has in flight on it (exact, unlike the pushed figure).
    pub dispatched: Arc<AtomicU64>,
}

impl WorkerEntry {
    /// Its name, once known.
    pub fn name(&self) -> String {
        self.status
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("{}", self.actor.get_id()))
    }
}

/// A worker chosen for an invocation; holds its in-flight slot until dropped.
#[derive(Debug)]
pub struct Lease {
    /// The worker's gateway.
    pub actor: ActorRef<WorkerMessage>,
    /// Its id, to exclude it from a retry.
    pub id: ActorId,
    /// Its name.
    pub name: String,
    dispatched: Arc<AtomicU64>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.dispatched.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The table of workers.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    inner: Arc<RwLock<HashMap<ActorId, WorkerEntry>>>,
}

impl Workers {
    /// Adds a worker that just joined (status unknown yet).
    pub fn join(&self, actor: ActorRef<WorkerMessage>) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.entry(actor.get_id()).or_insert_with(|| WorkerEntry {
            actor,
            status: None,
            seen: Instant::now(),
            dispatched: Arc::new(AtomicU64::new(0)),
        });
    }

    /// Removes a worker; returns its entry if it was known.
    pub fn leave(&self, id: ActorId) -> Option<WorkerEntry> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        map.remove(&id)
    }

    /// Records a status answered by the worker with this id.
    pub fn set_status(&self, id: ActorId, status: WorkerStatus) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = map.get_mut(&id) {
            entry.status = Some(status);
            entry.seen = Instant::now();
        }
    }

    /// Records a pushed status, matched by worker name; false when no such worker is known.
    pub fn update_by_name(&self, status: WorkerStatus) -> bool {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .values_mut()
            .find(|e| e.status.as_ref().is_some_and(|s| s.name == status.name));
        match entry {
            Some(entry) => {
                entry.status = Some(status);
                entry.seen = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Every worker.
    pub fn all(&self) -> Vec<WorkerEntry> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Number of workers whose status is known (those the scheduler can use).
    pub fn ready_count(&self) -> usize {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|e| e.status.is_some()).count()
    }

    /// Picks a worker for a function needing `need_bytes`, skipping `exclude`, and takes an
    /// in-flight slot on it.
    pub fn lease(&self, need_bytes: u64, exclude: &[ActorId]) -> Result<Lease, NoWorker> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let candidates: Vec<Candidate<ActorId>> = map
            .iter()
            .filter(|(id, _)| !exclude.contains(id))
            .filter_map(|(id, e)| {
                let status = e.status.as_ref()?;
                Some(Candidate {
                    key: *id,
                    memory_free: status.memory_free,
                    in_flight: e.dispatched.load(Ordering::Relaxed),
                })
            })
            .collect();
        let chosen = scheduler::pick(&candidates, need_bytes)?;
        let entry = map.get(&chosen).ok_or(NoWorker::NoneConnected)?;
        entry.dispatched.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            actor: entry.actor.clone(),
            id: chosen,
            name: entry.name(),
            dispatched: entry.dispatched.clone(),
        })
    }
}
