//! The Core's live view of its workers, shared by the registry (which writes it) and the
//! invocation path (which reads it without going through any mailbox).
//!
//! A worker is *ready* once its first status arrived, and *lost* when its statuses stop for
//! longer than the heartbeat time-out (a frozen or cut-off node, which TCP would notice only
//! after minutes). Lost workers get no new work, and every invocation in flight on one is told
//! at once through its [`Lease`]. A lost worker whose statuses come back is ready again; one
//! whose node disconnects leaves the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use funless_actors::protocol::{WorkerMessage, WorkerStatus};
use ractor::{ActorId, ActorRef};
use tokio::sync::watch;

use crate::scheduler::app::Script;
use crate::scheduler::{self, Candidate, NoWorker};

/// One connected worker.
#[derive(Debug, Clone)]
pub struct WorkerEntry {
    /// Its gateway.
    pub actor: ActorRef<WorkerMessage>,
    /// Last status it reported (`None` until the first one arrives).
    pub status: Option<WorkerStatus>,
    /// Code hashes of that status as sorted [`fingerprint`]s, for cheap affinity checks.
    cached: Arc<Vec<u64>>,
    /// When the last status arrived.
    pub seen: Instant,
    /// When it was declared lost, if it is.
    pub lost_since: Option<Instant>,
    /// When its gateway left while its node stayed (the worker's supervisor is restarting
    /// it): no new work, calls in flight go on, and the new gateway takes the entry over.
    pub restarting_since: Option<Instant>,
    /// Invocations this Core has in flight on it (exact, unlike the pushed figure).
    pub dispatched: Arc<AtomicU64>,
    /// Set to true when the worker is lost; leases watch it.
    lost: Arc<watch::Sender<bool>>,
}

impl WorkerEntry {
    fn new(actor: ActorRef<WorkerMessage>) -> Self {
        Self {
            actor,
            status: None,
            cached: Arc::default(),
            seen: Instant::now(),
            lost_since: None,
            restarting_since: None,
            dispatched: Arc::new(AtomicU64::new(0)),
            lost: Arc::new(watch::channel(false).0),
        }
    }

    /// Its name, once known.
    pub fn name(&self) -> String {
        self.status
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| format!("{}", self.actor.get_id()))
    }

    /// `ready`, `joining` (no status yet), `restarting` (its gateway is being restarted) or
    /// `lost`.
    pub fn state(&self) -> &'static str {
        match (&self.status, self.lost_since, self.restarting_since) {
            (_, Some(_), _) => "lost",
            (_, None, Some(_)) => "restarting",
            (None, None, None) => "joining",
            (Some(_), None, None) => "ready",
        }
    }

    fn record(&mut self, status: WorkerStatus) -> bool {
        let mut cached: Vec<u64> = status.cached.iter().map(|h| fingerprint(h)).collect();
        cached.sort_unstable();
        self.cached = Arc::new(cached);
        self.status = Some(status);
        self.seen = Instant::now();
        let revived = self.lost_since.take().is_some();
        if revived {
            // Leases taken before the loss keep their (fired) signal; new ones get a fresh one.
            self.lost = Arc::new(watch::channel(false).0);
        }
        revived
    }

    /// Resolves when this worker is declared lost or leaves.
    pub fn lost_signal(&self) -> watch::Receiver<bool> {
        self.lost.subscribe()
    }

    /// Whether every instance slot it reported is taken by calls this Core has in flight.
    fn full(&self) -> bool {
        self.status.as_ref().is_some_and(|s| {
            s.slots_total > 0 && self.dispatched.load(Ordering::Relaxed) >= u64::from(s.slots_total)
        })
    }

    fn mark_lost(&mut self) {
        self.lost_since = Some(Instant::now());
        self.lost.send_replace(true);
    }
}

/// The first 64 bits of a hex code hash: enough to tell a worker's few hundred cached
/// versions apart (a collision would only cost a preference, never correctness: workers
/// check the full hash), and compared without hashing strings per candidate.
fn fingerprint(hash: &str) -> u64 {
    hash.get(..16)
        .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
        .unwrap_or(0)
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
    lost: watch::Receiver<bool>,
}

impl Lease {
    /// Resolves when the worker is declared lost or leaves (never, while it stays).
    pub async fn lost(&mut self) {
        if self.lost.wait_for(|lost| *lost).await.is_err() {
            // The entry (and its sender) is gone: the worker left the cluster.
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.dispatched.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How to choose a worker.
#[derive(Debug, Clone, Default)]
pub enum Policy {
    /// The default policy.
    #[default]
    Default,
    /// An APP script, for a function with this tag.
    App {
        /// The script's name (for errors).
        name: String,
        /// The parsed script.
        script: Arc<Script>,
        /// The function's metadata tag.
        tag: Option<String>,
    },
}

/// What an invocation asks of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Need<'a> {
    /// Memory the function needs, bytes.
    pub bytes: u64,
    /// Its code hash (workers holding it are preferred).
    pub hash: &'a str,
}

/// The table of workers.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    inner: Arc<RwLock<HashMap<ActorId, WorkerEntry>>>,
    turn: Arc<AtomicU64>,
    /// Bumped on every change that may let a waiting invocation find a worker.
    changes: Arc<watch::Sender<u64>>,
    /// When a worker last left or was lost, and how long one is expected back after that.
    departed: Arc<std::sync::Mutex<Option<Instant>>>,
    comeback: Arc<std::sync::Mutex<Duration>>,
}

impl Workers {
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Resolves at the next change of the table that may make a worker available.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How long after a worker leaves an invocation that finds no worker waits for one to
    /// come back (the heartbeat time-out: a worker whose session broke redials within it).
    pub fn set_comeback(&self, within: Duration) {
        *self.comeback.lock().unwrap_or_else(|p| p.into_inner()) = within;
    }

    /// How long a worker that left is expected back.
    pub fn comeback(&self) -> Duration {
        *self.comeback.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn departure(&self) {
        *self.departed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.changed();
    }

    /// Until when an invocation that finds no worker may wait for one: while some worker is
    /// joining (no status yet) or restarting its gateway, or within the come-back time after
    /// one left. `None`: nothing is expected, answer at once.
    pub fn expected_until(&self) -> Option<Instant> {
        let comeback = self.comeback();
        let coming = {
            let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
            map.values().any(|e| {
                e.lost_since.is_none() && (e.status.is_none() || e.restarting_since.is_some())
            })
        };
        if coming {
            return Some(Instant::now() + comeback);
        }
        let departed = *self.departed.lock().unwrap_or_else(|p| p.into_inner());
        departed
            .map(|t| t + comeback)
            .filter(|until| *until > Instant::now())
    }

    /// Adds a worker that just joined (status unknown yet). A gateway joining under the id
    /// of an entry that is restarting (ids are per session, and a session opened again can
    /// reuse one) is that worker back: the entry takes the new reference and is live again.
    pub fn join(&self, actor: ActorRef<WorkerMessage>) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&actor.get_id()) {
            Some(entry) => {
                entry.actor = actor;
                entry.restarting_since = None;
            }
            None => {
                map.insert(actor.get_id(), WorkerEntry::new(actor));
            }
        }
        drop(map);
        self.changed();
    }

    /// Whether the table holds this gateway.
    pub fn contains(&self, id: ActorId) -> bool {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.contains_key(&id)
    }

    /// Removes a worker (its node left); in-flight invocations on it are told at once. The
    /// returned entry's `lost_since` is set only if it had been declared lost before.
    pub fn leave(&self, id: ActorId) -> Option<WorkerEntry> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let entry = map.remove(&id)?;
        // Tell its leases; `lost_since` keeps saying whether the heartbeat had noticed first.
        entry.lost.send_replace(true);
        drop(map);
        self.departure();
        Some(entry)
    }

    /// A worker's gateway left the group. When its node is still there (a remote gateway
    /// whose node has not disconnected, or a local one), its supervisor is restarting it: the
    /// entry stays, marked `restarting`, its calls in flight go on, and the next gateway of
    /// the same worker takes it over ([`Workers::set_status`]). A gateway that never reported
    /// leaves at once. Returns the entry when it was removed.
    pub fn gateway_left(&self, id: ActorId) -> Option<WorkerEntry> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&id) {
            Some(entry) if entry.status.is_some() && entry.lost_since.is_none() => {
                entry.restarting_since = Some(Instant::now());
                drop(map);
                self.changed();
                None
            }
            Some(_) => {
                let entry = map.remove(&id)?;
                entry.lost.send_replace(true);
                drop(map);
                self.departure();
                Some(entry)
            }
            None => None,
        }
    }

    /// The worker node `name` disconnected: its entries leave and their calls in flight are
    /// told at once. Returns the entries removed.
    pub fn node_down(&self, name: &str) -> Vec<WorkerEntry> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<ActorId> = map
            .iter()
            .filter(|(_, e)| e.status.as_ref().is_some_and(|s| s.name == name))
            .map(|(id, _)| *id)
            .collect();
        let removed: Vec<WorkerEntry> = ids
            .into_iter()
            .filter_map(|id| map.remove(&id))
            .inspect(|entry| {
                entry.lost.send_replace(true);
            })
            .collect();
        drop(map);
        if !removed.is_empty() {
            self.departure();
        }
        removed
    }

    /// Records a status answered by the worker with this id. The first status of a new
    /// gateway takes over an older entry of the same worker (a restarted gateway): its calls
    /// in flight and their loss signal move to the new entry.
    pub fn set_status(&self, id: ActorId, status: WorkerStatus) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let first = map.get(&id).is_some_and(|e| e.status.is_none());
        if first {
            let older: Vec<ActorId> = map
                .iter()
                .filter(|(other, e)| {
                    **other != id && e.status.as_ref().is_some_and(|s| s.name == status.name)
                })
                .map(|(other, _)| *other)
                .collect();
            for other in older {
                if let Some(old) = map.remove(&other)
                    && let Some(entry) = map.get_mut(&id)
                {
                    if old.lost_since.is_none() {
                        entry.dispatched = old.dispatched;
                        entry.lost = old.lost;
                    } else {
                        old.lost.send_replace(true);
                    }
                    tracing::info!(worker = %status.name, "worker's restarted gateway took over");
                }
            }
        }
        if let Some(entry) = map.get_mut(&id)
            && entry.record(status)
        {
            tracing::info!(worker = %entry.name(), "lost worker is back");
        }
        drop(map);
        self.changed();
    }

    /// Records a pushed status, matched by worker name; false when no such worker is known.
    pub fn update_by_name(&self, status: WorkerStatus) -> bool {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        // A restarting entry and the new gateway's entry may share the name: the new one.
        let entry = map
            .values_mut()
            .filter(|e| e.status.as_ref().is_some_and(|s| s.name == status.name))
            .min_by_key(|e| e.restarting_since.is_some());
        match entry {
            Some(entry) => {
                if entry.record(status) {
                    tracing::info!(worker = %entry.name(), "lost worker is back");
                    drop(map);
                    self.changed();
                }
                true
            }
            None => false,
        }
    }

    /// Declares lost every ready worker not heard from within `timeout`, and every restarting
    /// one whose new gateway did not come within it; returns their names.
    pub fn expire(&self, timeout: Duration) -> Vec<String> {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stuck: Vec<ActorId> = map
            .iter()
            .filter(|(_, e)| {
                e.restarting_since
                    .is_some_and(|t| now.duration_since(t) > timeout)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut names: Vec<String> = stuck
            .into_iter()
            .filter_map(|id| map.remove(&id))
            .map(|entry| {
                entry.lost.send_replace(true);
                entry.name()
            })
            .collect();
        names.extend(
            map.values_mut()
                .filter(|e| e.lost_since.is_none() && now.duration_since(e.seen) > timeout)
                .map(|e| {
                    e.mark_lost();
                    e.name()
                }),
        );
        drop(map);
        if !names.is_empty() {
            self.departure();
        }
        names
    }

    /// Every worker.
    pub fn all(&self) -> Vec<WorkerEntry> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Workers that are not lost (those a broadcast should reach).
    pub fn live(&self) -> Vec<WorkerEntry> {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values()
            .filter(|e| e.lost_since.is_none())
            .cloned()
            .collect()
    }

    /// Number of ready workers (those the scheduler can use).
    pub fn ready_count(&self) -> usize {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|e| e.state() == "ready").count()
    }

    /// Picks a ready worker for `need` with `policy`, skipping `exclude`, and takes an
    /// in-flight slot on it.
    pub fn lease(
        &self,
        need: Need<'_>,
        policy: &Policy,
        exclude: &[ActorId],
    ) -> Result<Lease, NoWorker> {
        let wanted = fingerprint(need.hash);
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut full = 0;
        let candidates: Vec<Candidate<'_, ActorId>> = map
            .iter()
            .filter(|(id, e)| {
                e.lost_since.is_none() && e.restarting_since.is_none() && !exclude.contains(id)
            })
            // A worker whose slots are all taken would refuse the call: never send it one.
            .filter(|(_, e)| {
                let is_full = e.full();
                full += usize::from(is_full);
                !is_full
            })
            .filter_map(|(id, e)| {
                let status = e.status.as_ref()?;
                Some(Candidate {
                    key: *id,
                    name: &status.name,
                    tags: &status.tags,
                    memory_total: status.memory_total,
                    memory_free: status.memory_free,
                    in_flight: e.dispatched.load(Ordering::Relaxed),
                    cpu_load_permille: status.cpu_load_permille,
                    has_code: e.cached.binary_search(&wanted).is_ok(),
                })
            })
            .collect();
        if candidates.is_empty() && full > 0 {
            return Err(NoWorker::AllBusy { workers: full });
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let chosen = match policy {
            Policy::Default => scheduler::pick(&candidates, need.bytes, turn)?,
            Policy::App { name, script, tag } => {
                script.select(name, tag.as_deref(), &candidates, need.bytes, turn)?
            }
        };
        let entry = map.get(&chosen).ok_or(NoWorker::NoneConnected)?;
        entry.dispatched.fetch_add(1, Ordering::Relaxed);
        Ok(Lease {
            actor: entry.actor.clone(),
            id: chosen,
            name: entry.name(),
            dispatched: entry.dispatched.clone(),
            lost: entry.lost.subscribe(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use funless_actors::protocol::CacheReport;
    use ractor::{Actor, ActorProcessingErr};

    /// A gateway that answers nothing: only its reference matters here.
    struct Silent;

    impl Actor for Silent {
        type Msg = WorkerMessage;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<Self::Msg>,
            _: (),
        ) -> Result<Self::State, ActorProcessingErr> {
            Ok(())
        }
    }

    async fn gateway() -> ActorRef<WorkerMessage> {
        Actor::spawn(None, Silent, ()).await.unwrap().0
    }

    fn status(name: &str) -> WorkerStatus {
        WorkerStatus {
            name: name.into(),
            memory_total: 1 << 30,
            memory_free: 1 << 29,
            in_flight: 0,
            slots_total: 0,
            slots_free: 0,
            cached: Vec::new(),
            cache: CacheReport::default(),
            allocator: "on-demand".into(),
            tags: Vec::new(),
            cpus: 1,
            cpu_load_permille: 0,
        }
    }

    const NEED: Need<'static> = Need {
        bytes: 1,
        hash: "00",
    };

    #[tokio::test]
    async fn a_restarted_gateway_takes_over_its_workers_calls() {
        let workers = Workers::default();
        workers.set_comeback(Duration::from_secs(3));
        let old = gateway().await;
        workers.join(old.clone());
        workers.set_status(old.get_id(), status("w1"));
        let mut lease = workers.lease(NEED, &Policy::Default, &[]).unwrap();

        // The gateway leaves while its node stays: restarting, the call goes on, no new work.
        assert!(workers.gateway_left(old.get_id()).is_none());
        assert_eq!(workers.all()[0].state(), "restarting");
        assert!(workers.lease(NEED, &Policy::Default, &[]).is_err());
        assert!(workers.expected_until().is_some());

        // The new gateway of the same worker takes the entry over, with the call in flight.
        let new = gateway().await;
        workers.join(new.clone());
        workers.set_status(new.get_id(), status("w1"));
        let all = workers.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].state(), "ready");
        assert_eq!(all[0].dispatched.load(Ordering::Relaxed), 1);
        let next = workers.lease(NEED, &Policy::Default, &[]).unwrap();
        assert_eq!(next.id, new.get_id());
        // The first call was never told its worker was lost.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), lease.lost())
                .await
                .is_err()
        );
        drop(lease);
        drop(next);
        assert_eq!(workers.all()[0].dispatched.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_node_going_down_ends_its_calls_and_a_stuck_restart_expires() {
        let workers = Workers::default();
        let w1 = gateway().await;
        workers.join(w1.clone());
        workers.set_status(w1.get_id(), status("w1"));
        let mut lease = workers.lease(NEED, &Policy::Default, &[]).unwrap();
        assert_eq!(workers.node_down("w1").len(), 1);
        tokio::time::timeout(Duration::from_secs(1), lease.lost())
            .await
            .unwrap();
        assert!(workers.all().is_empty());

        // A gateway that leaves and never comes back is lost after the time-out.
        let w2 = gateway().await;
        workers.join(w2.clone());
        workers.set_status(w2.get_id(), status("w2"));
        let mut lease = workers.lease(NEED, &Policy::Default, &[]).unwrap();
        workers.gateway_left(w2.get_id());
        assert!(workers.expire(Duration::from_secs(60)).is_empty());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(workers.expire(Duration::from_millis(10)), ["w2"]);
        tokio::time::timeout(Duration::from_secs(1), lease.lost())
            .await
            .unwrap();
        assert!(workers.all().is_empty());
    }

    #[tokio::test]
    async fn a_gateway_joining_under_a_restarting_entrys_id_is_live_again() {
        let workers = Workers::default();
        let w1 = gateway().await;
        workers.join(w1.clone());
        workers.set_status(w1.get_id(), status("w1"));
        workers.gateway_left(w1.get_id());
        assert_eq!(workers.all()[0].state(), "restarting");
        workers.join(w1.clone());
        assert_eq!(workers.all()[0].state(), "ready");
        assert!(workers.lease(NEED, &Policy::Default, &[]).is_ok());
    }
}
