//! The `services` manager: the one actor that changes the services table. It places replicas
//! on workers, hears their exits and the workers' reports, and applies each service's child
//! spec. Calls to workers run in tasks the manager owns (a `JoinSet` in its state, aborted
//! with it), which answer back through its mailbox, so it never waits on the network.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funless_actors::Wire;
use funless_actors::protocol::{
    Code, ReplicaExited, ReplicaId, ReplicaStart, ReplicaStop, SERVICES_GROUP, ServicesMessage,
    WorkerMessage,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::{AbortHandle, JoinSet};

use super::{Replica, Service, Services, State, backoff};
use crate::code_transfer;
use crate::workers::WorkerEntry;

mod health;

/// How often the manager looks at back-offs, placements and lost workers.
const TICK: Duration = Duration::from_millis(100);
/// How long a worker has to take a replica (its actor starts; compiling comes after).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stop request may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a watching manager reads the stored services (besides the other Cores'
/// notifications).
const WATCH_READ: Duration = Duration::from_secs(1);
/// A replica the manager believes runs, missing from its worker's report for this long after
/// its start, is taken as ended (its worker's `services` supervisor restarted, say).
const MISSING_AFTER: Duration = Duration::from_secs(3);

/// The manager actor.
#[derive(Debug)]
pub(crate) struct Manager;

/// Its state.
pub(crate) struct ManagerState {
    services: Services,
    /// Calls to workers under way; aborted when the manager ends.
    tasks: JoinSet<()>,
    /// Start calls under way, by incarnation (aborted when their service is deleted).
    starts: HashMap<u64, AbortHandle>,
    next_incarnation: u64,
    /// Until then, unplaced replicas of the services stored before the manager started wait:
    /// workers report what runs, to be adopted.
    adopt_until: Instant,
    /// Whether the stored services were read (retried every tick until they are).
    loaded: bool,
    /// Services whose replicas' histories changed since they were last stored.
    dirty: HashSet<String>,
    /// Set while a task stores histories: one at a time, so an older write never lands last.
    storing: Arc<AtomicBool>,
    /// Whether this manager acts on the services (see `Services::set_active`); a watching
    /// one only mirrors the store and the workers' reports.
    acting: bool,
    /// How long unplaced replicas wait for workers' reports after the manager starts acting.
    grace: Duration,
    /// When a watching manager last read the stored services.
    last_read: Instant,
}

impl Actor for Manager {
    type Msg = ServicesMessage;
    type State = ManagerState;
    type Arguments = Services;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        services: Services,
    ) -> Result<Self::State, ActorProcessingErr> {
        // The table is rebuilt from the store and from what workers report: replicas that
        // run are adopted, not started again.
        services.table_mut().clear();
        *services
            .inner
            .manager
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(myself.clone());
        ractor::pg::join(SERVICES_GROUP.to_string(), vec![myself.get_cell()]);
        myself.send_interval(TICK, || ServicesMessage::Tick);
        // Workers report every second, once connected; one that was cut off redials within
        // the heartbeat time-out.
        let grace = services
            .inner
            .workers
            .comeback()
            .max(Duration::from_secs(3))
            * 2;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut state = ManagerState {
            services: services.clone(),
            tasks: JoinSet::new(),
            starts: HashMap::new(),
            // Unique across restarts of the Core: a late report of an earlier incarnation
            // never matches a new one.
            next_incarnation: now_ms << 12,
            adopt_until: Instant::now() + grace,
            loaded: false,
            dirty: HashSet::new(),
            storing: Arc::default(),
            acting: services.active(),
            grace,
            last_read: Instant::now(),
        };
        // A failure is logged there and retried every tick.
        let _ = state.reload().await;
        for service in state.services.table_mut().values_mut() {
            service.adopt = true;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(SERVICES_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            // The acting Core's manager restarts it; a watching one sees it in the next report.
            ServicesMessage::Exited(_) if !state.acting => {}
            ServicesMessage::Exited(exited) => match exited.into_inner() {
                Ok(exited) => state.exited(exited),
                Err(e) => tracing::warn!(error = %e, "undecodable replica exit"),
            },
            ServicesMessage::Running(report) => match report.into_inner() {
                Ok(report) if state.acting => state.report(report),
                Ok(report) => state.mirror(report),
                Err(e) => tracing::warn!(error = %e, "undecodable replica report"),
            },
            ServicesMessage::Started(started) => {
                if let Ok((worker, id, result)) = started.into_inner() {
                    state.started(&worker, &id, result);
                }
            }
            ServicesMessage::Reload(reply) => {
                let answer = state.reload().await;
                if state.acting {
                    state.roll();
                    state.place(&myself);
                }
                let _ = reply.send(Wire::new(answer));
            }
            ServicesMessage::Tick => {
                while state.tasks.try_join_next().is_some() {}
                let active = state.services.active();
                if active != state.acting {
                    state.switch(active).await;
                }
                let watching = !state.acting && state.last_read.elapsed() >= WATCH_READ;
                if !state.loaded || watching {
                    // Logged there; tried again next tick.
                    let _ = state.reload().await;
                }
                let services = &state.services;
                if !state.acting {
                    // The acting Core counts the replicas: summed over Cores, each counts once.
                    services.inner.metrics.count(&HashMap::new());
                    return Ok(());
                }
                state.check_workers();
                state.roll();
                state.place(&myself);
                state.store_histories();
                let services = &state.services;
                services.inner.metrics.count(&services.table());
            }
        }
        Ok(())
    }
}

impl ManagerState {
    /// Starts acting on the services (this Core took the lease from one that stopped, whose
    /// replicas still run: they are adopted from the workers' reports, as by a restarted
    /// manager) or stops (another Core acts now; this one's starts under way finish).
    async fn switch(&mut self, active: bool) {
        self.acting = active;
        if !active {
            tracing::info!("another Core manages the services: this one only watches them");
            return;
        }
        tracing::info!("this Core manages the services: adopting their running replicas");
        self.services.table_mut().clear();
        self.loaded = false;
        // Logged there; tried again next tick (the table is adopted from then on).
        let _ = self.reload().await;
        for service in self.services.table_mut().values_mut() {
            service.adopt = true;
        }
        self.adopt_until = Instant::now() + self.grace;
    }

    /// Reads the stored services: adds new ones, forgets deleted ones (the API stops their
    /// replicas), takes updated ones (a rolling restart follows), keeps the rest as they are.
    async fn reload(&mut self) -> Result<(), String> {
        self.last_read = Instant::now();
        let rows = match self.services.inner.store.list_services().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored services");
                return Err(e.to_string());
            }
        };
        self.loaded = true;
        let mut table = self.services.table_mut();
        let names: std::collections::HashSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let gone: Vec<String> = table
            .keys()
            .filter(|name| !names.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(service) = table.remove(&name) {
                for replica in &service.replicas {
                    if let Some(start) = self.starts.remove(&replica.incarnation) {
                        start.abort();
                    }
                }
                tracing::info!(service = %name, "service deleted");
            }
        }
        let mut stops = Vec::new();
        for row in rows {
            if let Some(service) = table.get_mut(&row.name) {
                if service.updated_at != row.updated_at {
                    let name = row.name.clone();
                    match service.update(row) {
                        Ok(dropped) => {
                            tracing::info!(service = %name, "service updated: rolling restart");
                            stops.extend(
                                dropped.into_iter().map(|(w, i, n)| (w, name.clone(), i, n)),
                            );
                        }
                        Err(e) => {
                            tracing::error!(service = %name, error = %e, "updated service unusable")
                        }
                    }
                }
                continue;
            }
            let name = row.name.clone();
            match Service::from_row(row) {
                Ok(service) => {
                    table.insert(name, service);
                }
                Err(e) => tracing::error!(service = %name, error = %e, "stored service unusable"),
            }
        }
        drop(table);
        for (worker, service, index, incarnation) in stops {
            self.stop(&worker, service, Some(index), Some(incarnation));
        }
        Ok(())
    }

    /// Moves every rolling restart on by a step.
    fn roll(&mut self) {
        let stops: Vec<(String, String, u32, u64)> = self
            .services
            .table_mut()
            .iter_mut()
            .filter_map(|(name, service)| {
                service
                    .roll()
                    .map(|(worker, index, incarnation)| (worker, name.clone(), index, incarnation))
            })
            .collect();
        for (worker, service, index, incarnation) in stops {
            tracing::info!(%service, index, %worker, "rolling restart: replacing a replica");
            self.dirty.insert(service.clone());
            self.stop(&worker, service, Some(index), Some(incarnation));
        }
    }

    /// Starts every replica that waits for a worker or whose back-off is over.
    fn place(&mut self, myself: &ActorRef<ServicesMessage>) {
        let now = Instant::now();
        let adopting = now < self.adopt_until;
        let workers: Vec<WorkerEntry> = self
            .services
            .inner
            .workers
            .all()
            .into_iter()
            .filter(|e| e.state() == "ready")
            .collect();
        let mut starts = Vec::new();
        {
            let mut table = self.services.table_mut();
            // Memory taken by replicas being started (not yet in the workers' reports).
            let mut reserved: HashMap<String, u64> = HashMap::new();
            let mut count: HashMap<String, usize> = HashMap::new();
            for service in table.values() {
                for replica in &service.replicas {
                    if let (Some(worker), State::Starting | State::Running) =
                        (&replica.worker, replica.state)
                    {
                        *count.entry(worker.clone()).or_default() += 1;
                        if replica.state == State::Starting {
                            *reserved.entry(worker.clone()).or_default() +=
                                service.spec.memory_bytes;
                        }
                    }
                }
            }
            let mut names: Vec<String> = table.keys().cloned().collect();
            names.sort();
            for name in names {
                let Some(service) = table.get_mut(&name) else {
                    continue;
                };
                if service.failed.is_some() {
                    continue;
                }
                for index in 0..service.replicas.len() {
                    let due = match service.replicas[index].state {
                        State::Pending => !(adopting && service.adopt),
                        State::Backoff => {
                            service.replicas[index].next_start.is_none_or(|t| t <= now)
                        }
                        _ => false,
                    };
                    if !due {
                        continue;
                    }
                    let need = service.spec.memory_bytes;
                    // Workers running fewer replicas of this service first (spread), then
                    // fewer replicas in all, then by name.
                    let mine = |worker: &str| {
                        service
                            .replicas
                            .iter()
                            .filter(|r| {
                                r.worker.as_deref() == Some(worker)
                                    && matches!(r.state, State::Starting | State::Running)
                            })
                            .count()
                    };
                    let chosen = workers
                        .iter()
                        .filter(|e| {
                            let name = e.name();
                            let tagged = service.spec.tag.as_ref().is_none_or(|tag| {
                                *tag == name
                                    || e.status.as_ref().is_some_and(|s| s.tags.contains(tag))
                            });
                            if !tagged {
                                return false;
                            }
                            let free = e.status.as_ref().map_or(0, |s| s.memory_free);
                            free.saturating_sub(reserved.get(&name).copied().unwrap_or(0)) >= need
                        })
                        .min_by_key(|e| {
                            let name = e.name();
                            (mine(&name), count.get(&name).copied().unwrap_or(0), name)
                        });
                    let Some(entry) = chosen else {
                        if service.replicas[index].state == State::Backoff {
                            service.replicas[index].state = State::Pending;
                        }
                        continue;
                    };
                    let worker = entry.name();
                    *reserved.entry(worker.clone()).or_default() += need;
                    *count.entry(worker.clone()).or_default() += 1;
                    self.next_incarnation += 1;
                    let id = ReplicaId {
                        service: name.clone(),
                        index: index as u32,
                        incarnation: self.next_incarnation,
                    };
                    let env = service.env();
                    let replica = &mut service.replicas[index];
                    replica.state = State::Starting;
                    replica.worker = Some(worker.clone());
                    replica.incarnation = id.incarnation;
                    replica.started = Some(now);
                    replica.next_start = None;
                    let start = ReplicaStart {
                        id: id.clone(),
                        hash: service.hash.clone(),
                        // Staged on the worker by the start's task (see below).
                        code: Code::Inline(Vec::new()),
                        memory_limit_bytes: need,
                        allow_hosts: service.spec.allow_hosts.clone(),
                        env,
                        restart: service.spec.restart.clone(),
                        restarts: replica.restarts,
                        stop_grace_ms: service.spec.stop_grace_ms,
                    };
                    tracing::info!(replica = %id, %worker, "starting a service replica");
                    starts.push((entry.clone(), worker, start, service.code.clone()));
                }
            }
        }
        for (entry, worker, mut start, code) in starts {
            let me = myself.clone();
            let id = start.id.clone();
            let incarnation = id.incarnation;
            let handle = self.tasks.spawn(async move {
                let result: Result<(), String> = async {
                    start.code = code_transfer::stage(&entry.actor, &code)
                        .await
                        .map_err(|e| e.to_string())?;
                    let answer = entry
                        .actor
                        .call(
                            |port| WorkerMessage::StartReplica(Wire::new(start), port),
                            Some(START_TIMEOUT),
                        )
                        .await;
                    match answer {
                        Ok(CallResult::Success(reply)) => {
                            reply.into_inner().map_err(|e| e.to_string())?
                        }
                        Ok(CallResult::Timeout) => Err("the worker did not answer in time".into()),
                        Ok(CallResult::SenderError) | Err(_) => {
                            Err("the worker is unreachable".into())
                        }
                    }
                }
                .await;
                let _ = me.cast(ServicesMessage::Started(Wire::new((worker, id, result))));
            });
            self.starts.insert(incarnation, handle);
        }
    }

    /// A worker answered a start request.
    fn started(&mut self, worker: &str, id: &ReplicaId, result: Result<(), String>) {
        self.starts.remove(&id.incarnation);
        match result {
            Ok(()) => {
                let mut table = self.services.table_mut();
                if let Some(replica) = replica_of(&mut table, id)
                    && replica.incarnation == id.incarnation
                    && replica.state == State::Starting
                {
                    replica.state = State::Running;
                    replica.started = Some(Instant::now());
                }
            }
            Err(e) => self.ended(
                id,
                false,
                format!("could not start on {worker}: {e}"),
                false,
            ),
        }
    }

    /// A replica ended on its worker.
    fn exited(&mut self, exited: ReplicaExited) {
        tracing::info!(replica = %exited.id, worker = %exited.worker, normal = exited.normal, reason = %exited.reason, "service replica exited");
        self.ended(&exited.id, exited.normal, exited.reason, false);
    }

    /// Applies the child spec to the end of a replica's incarnation (ignored when it is not
    /// the one expected: a late report). `moved`: its worker is gone, so it starts elsewhere
    /// at once.
    fn ended(&mut self, id: &ReplicaId, normal: bool, reason: String, moved: bool) {
        let mut stops = Vec::new();
        let mut persist = None;
        {
            let mut table = self.services.table_mut();
            let Some(service) = table.get_mut(&id.service) else {
                return;
            };
            let (period, max) = (
                Duration::from_millis(service.spec.period_ms),
                service.spec.max_restarts as usize,
            );
            let restart = service.restart;
            let failed = service.failed.is_some();
            let Some(replica) = service.replicas.get_mut(id.index as usize) else {
                return;
            };
            if replica.incarnation != id.incarnation
                || !matches!(replica.state, State::Starting | State::Running)
                || failed
            {
                return;
            }
            let ran = replica.started.map(|t| t.elapsed()).unwrap_or_default();
            replica.last_exit = Some(reason.clone());
            self.dirty.insert(id.service.clone());
            replica.started = None;
            if !restart.restarts(normal) {
                replica.state = State::Exited;
                return;
            }
            if ran > period {
                replica.streak = 0;
            }
            let now = Instant::now();
            while service
                .recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > period)
            {
                service.recent.pop_front();
            }
            if service.recent.len() >= max {
                let why = format!(
                    "restart intensity exceeded (more than {max} restarts in {} ms); replica {} last ended: {reason}",
                    period.as_millis(),
                    id.index
                );
                tracing::error!(service = %id.service, reason = %why, "service failed");
                for (index, other) in service.replicas.iter_mut().enumerate() {
                    if let (Some(worker), State::Starting | State::Running) =
                        (&other.worker, other.state)
                    {
                        stops.push((worker.clone(), id.service.clone(), index as u32));
                    }
                    other.state = State::Stopped;
                    other.started = None;
                }
                service.failed = Some(why.clone());
                self.services.inner.metrics.failures.inc();
                persist = Some(why);
            } else {
                service.recent.push_back(now);
                let replica = &mut service.replicas[id.index as usize];
                let delay = if moved {
                    Duration::ZERO
                } else {
                    backoff(service.spec.backoff_ms, replica.streak)
                };
                replica.streak = replica.streak.saturating_add(1);
                replica.restarts += 1;
                self.services.inner.metrics.restarts.inc();
                replica.state = State::Backoff;
                replica.next_start = Some(now + delay);
                tracing::info!(replica = %id, ?delay, "service replica restarts after its back-off");
            }
        }
        for (worker, service, index) in stops {
            self.stop(&worker, service, Some(index), None);
        }
        if let Some(why) = persist {
            let store = self.services.inner.store.clone();
            let name = id.service.clone();
            self.tasks.spawn(async move {
                if let Err(e) = store
                    .set_service_state(&name, "failed", Some(&why))
                    .await
                {
                    tracing::error!(service = %name, error = %e, "cannot record the service's failure");
                }
            });
        }
    }

    /// Stores the histories that changed (in a task, one at a time: the next tick takes what
    /// changed meanwhile).
    fn store_histories(&mut self) {
        if self.dirty.is_empty() || self.storing.swap(true, Ordering::AcqRel) {
            return;
        }
        let writes: Vec<(String, String)> = {
            let table = self.services.table();
            self.dirty
                .drain()
                .filter_map(|name| table.get(&name).map(|s| (name, s.history())))
                .collect()
        };
        let (store, storing) = (self.services.inner.store.clone(), self.storing.clone());
        self.tasks.spawn(async move {
            for (name, history) in writes {
                if let Err(e) = store.set_service_replicas(&name, &history).await {
                    tracing::warn!(service = %name, error = %e, "cannot record the replicas' restarts");
                }
            }
            storing.store(false, Ordering::Release);
        });
    }

    /// Asks a worker to stop replicas (in a task; the answer is only logged).
    fn stop(
        &mut self,
        worker: &str,
        service: String,
        index: Option<u32>,
        incarnation: Option<u64>,
    ) {
        let Some(entry) = self
            .services
            .inner
            .workers
            .all()
            .into_iter()
            .find(|e| e.name() == worker)
        else {
            return;
        };
        let stop = ReplicaStop {
            service,
            index,
            incarnation,
            forget_logs: false,
        };
        self.tasks.spawn(async move {
            let answer = entry
                .actor
                .call(
                    |port| WorkerMessage::StopReplicas(Wire::new(stop), port),
                    Some(STOP_TIMEOUT),
                )
                .await;
            if !matches!(answer, Ok(CallResult::Success(_))) {
                tracing::warn!(worker = %entry.name(), "a stop request got no answer");
            }
        });
    }
}

/// The replica an id names, if its service and index exist.
fn replica_of<'a>(
    table: &'a mut HashMap<String, Service>,
    id: &ReplicaId,
) -> Option<&'a mut Replica> {
    table
        .get_mut(&id.service)
        .filter(|s| s.failed.is_none())
        .and_then(|s| s.replicas.get_mut(id.index as usize))
}
