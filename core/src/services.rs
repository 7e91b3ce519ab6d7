//! Users' long-running services: the table of services and their replicas, owned by the
//! `services` manager actor ([`manager`]), read by the API ([`api`]).
//!
//! A service is a WASI command or `wasi:cli/run` component that runs until it exits, kept alive
//! under an OTP child spec: `restart` (`permanent`, `transient`, `temporary`), intensity
//! (`max_restarts` within `period_ms`), a doubling back-off and a number of `replicas`. Each
//! replica runs as an actor under its worker's `services` supervisor and reports its exits
//! here; the manager applies the spec: restart in place after the back-off, or at once on
//! another worker when its worker is lost; past the intensity, the service is `failed` with
//! the reason, and nothing of it runs. Workers report every second what they run, so a
//! restarted Core (or manager) adopts the replicas that run instead of starting them again,
//! and stops any it no longer wants.

mod api;
mod manager;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use funless_actors::protocol::ServicesMessage;
use funless_actors::supervisor::{ChildSpec, start_actor};
use funless_api::types::{ReplicaInfo, ServiceInfo, ServiceSpec, ServiceSpecRequest};
use ractor::ActorRef;

use crate::metrics::Metrics;
use crate::store::{ServiceRow, Store};
use crate::workers::Workers;

/// How long the manager has to read the stored services again when asked.
const RELOAD_TIMEOUT_MS: u64 = 10_000;
/// Most replicas of one service.
pub const MAX_REPLICAS: u32 = 16;
/// Longest back-off between restarts, milliseconds.
const MAX_BACKOFF_MS: u64 = 30_000;
/// Longest stop grace period, milliseconds: within the 5 s a worker's supervisor gives a
/// child to stop before killing it.
const MAX_STOP_GRACE_MS: u64 = 4000;
/// Most environment variables of a service.
const MAX_ENV: usize = 64;

/// OTP's restart types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    Permanent,
    Transient,
    Temporary,
}

impl Restart {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "permanent" => Some(Restart::Permanent),
            "transient" => Some(Restart::Transient),
            "temporary" => Some(Restart::Temporary),
            _ => None,
        }
    }

    /// Whether an exit is restarted.
    fn restarts(self, normal: bool) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !normal,
            Restart::Temporary => false,
        }
    }
}

/// A child spec with its defaults filled in and its bounds checked; the error is for the user.
pub fn resolve(request: ServiceSpecRequest) -> Result<ServiceSpec, String> {
    let spec = ServiceSpec {
        restart: request.restart.unwrap_or_else(|| "permanent".into()),
        max_restarts: request.max_restarts.unwrap_or(3),
        period_ms: request.period_ms.unwrap_or(5_000),
        backoff_ms: request.backoff_ms.unwrap_or(200),
        replicas: request.replicas.unwrap_or(1),
        memory_bytes: request.memory_bytes.unwrap_or(64 * 1024 * 1024),
        allow_hosts: request.allow_hosts.unwrap_or_default(),
        env: request.env.unwrap_or_default(),
        stop_grace_ms: request.stop_grace_ms.unwrap_or(1000),
        tag: request.tag.filter(|t| !t.is_empty()),
    };
    if Restart::parse(&spec.restart).is_none() {
        return Err(format!(
            "restart must be permanent, transient or temporary, not {:?}",
            spec.restart
        ));
    }
    if spec.max_restarts > 1000 {
        return Err("max_restarts must be at most 1000".into());
    }
    if !(100..=86_400_000).contains(&spec.period_ms) {
        return Err("period_ms must be 100 to 86400000".into());
    }
    if spec.backoff_ms > 60_000 {
        return Err("backoff_ms must be at most 60000".into());
    }
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        return Err(format!("replicas must be 1 to {MAX_REPLICAS}"));
    }
    if !(1024 * 1024..=(4u64 << 30)).contains(&spec.memory_bytes) {
        return Err("memory_bytes must be 1 MiB to 4 GiB".into());
    }
    if spec.tag.as_ref().is_some_and(|t| t.len() > 256) {
        return Err("tag must be at most 256 bytes".into());
    }
    if spec.stop_grace_ms > MAX_STOP_GRACE_MS {
        return Err(format!("stop_grace_ms must be at most {MAX_STOP_GRACE_MS}"));
    }
    if spec.env.len() > MAX_ENV {
        return Err(format!("at most {MAX_ENV} environment variables"));
    }
    for (key, value) in &spec.env {
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(format!(
                "environment variable name {key:?} must be 1 to 256 letters, digits or _"
            ));
        }
        if value.len() > 4096 || value.contains('\0') {
            return Err(format!(
                "environment variable {key} must be at most 4096 bytes, without NUL"
            ));
        }
    }
    Ok(spec)
}

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a worker (none fits, or the manager is still learning what runs).
    Pending,
    /// A worker was asked to start it.
    Starting,
    /// Running on its worker.
    Running,
    /// Ended; restarted at `next_start`.
    Backoff,
    /// Ended and not restarted (its restart type).
    Exited,
    /// Its service failed.
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Exited => "exited",
            State::Stopped => "stopped",
        }
    }
}

/// One replica.
#[derive(Debug, Clone)]
struct Replica {
    state: State,
    worker: Option<String>,
    /// The incarnation the manager expects (0: none yet).
    incarnation: u64,
    /// When its current run started (as seen here).
    started: Option<Instant>,
    restarts: u64,
    /// Restarts in a row (the back-off's exponent); reset by a run longer than the period.
    streak: u32,
    last_exit: Option<String>,
    next_start: Option<Instant>,
}

/// What a replica went through, as stored (`services.replicas`): kept across Core restarts,
/// so a restarted Core shows the same restart counts and goes on with the same back-off.
/// The intensity's window is not kept: as in OTP, a restarted supervisor starts it afresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ReplicaHistory {
    restarts: u64,
    streak: u32,
    last_exit: Option<String>,
}

impl Replica {
    fn new() -> Self {
        Self {
            state: State::Pending,
            worker: None,
            incarnation: 0,
            started: None,
            restarts: 0,
            streak: 0,
            last_exit: None,
            next_start: None,
        }
    }

    fn history(&self) -> ReplicaHistory {
        ReplicaHistory {
            restarts: self.restarts,
            streak: self.streak,
            last_exit: self.last_exit.clone(),
        }
    }

    fn info(&self, index: u32) -> ReplicaInfo {
        ReplicaInfo {
            index,
            state: self.state.as_str().into(),
            worker: self.worker.clone(),
            restarts: self.restarts,
            uptime_ms: match self.state {
                State::Running => self.started.map(|t| t.elapsed().as_millis() as u64),
                _ => None,
            },
            last_exit: self.last_exit.clone(),
        }
    }
}

/// One service.
#[derive(Debug, Clone)]
struct Service {
    name: String,
    owner_id: Option<i64>,
    hash: String,
    abi: String,
    size: u64,
    created_at: i64,
    /// The stored version (moves on every update).
    updated_at: i64,
    code: bytes::Bytes,
    spec: ServiceSpec,
    restart: Restart,
    failed: Option<String>,
    /// Stored before the manager started: its replicas may be running already, so they wait
    /// for the workers' reports (the adoption grace) before being started.
    adopt: bool,
    /// Replicas still to be replaced by a rolling restart (an update), in order.
    rolling: VecDeque<u32>,
    /// The replica being replaced now: the next waits until it runs again.
    rolling_now: Option<u32>,
    /// Restarts within the intensity's period.
    recent: VecDeque<Instant>,
    replicas: Vec<Replica>,
}

impl Service {
    fn from_row(row: ServiceRow) -> Result<Self, String> {
        let request: ServiceSpecRequest =
            serde_json::from_str(&row.spec).map_err(|e| format!("stored spec: {e}"))?;
        let spec = resolve(request)?;
        let restart = Restart::parse(&spec.restart).unwrap_or(Restart::Permanent);
        let failed =
            (row.state == "failed").then(|| row.reason.clone().unwrap_or_else(|| "failed".into()));
        let mut replicas = vec![Replica::new(); spec.replicas as usize];
        // An unreadable history is not worth losing the service over: it starts from zero.
        let history: Vec<ReplicaHistory> = row
            .replicas
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default();
        for (replica, history) in replicas.iter_mut().zip(history) {
            replica.restarts = history.restarts;
            replica.streak = history.streak;
            replica.last_exit = history.last_exit;
        }
        if failed.is_some() {
            for replica in &mut replicas {
                replica.state = State::Stopped;
            }
        }
        Ok(Self {
            name: row.name,
            owner_id: row.owner_id,
            hash: row.hash,
            abi: row.abi,
            size: row.size.max(0) as u64,
            created_at: row.created_at,
            updated_at: row.updated_at,
            code: bytes::Bytes::from(row.code),
            spec,
            restart,
            failed,
            adopt: false,
            rolling: VecDeque::new(),
            rolling_now: None,
            recent: VecDeque::new(),
            replicas,
        })
    }

    fn info(&self) -> ServiceInfo {
        ServiceInfo {
            name: crate::store::shown_module(&self.name).to_string(),
            hash: self.hash.clone(),
            abi: self.abi.clone(),
            size: self.size,
            state: if self.failed.is_some() {
                "failed"
            } else if self.replicas.iter().all(|r| r.state == State::Exited) {
                "exited"
            } else {
                "running"
            }
            .into(),
            reason: self.failed.clone(),
            spec: self.spec.clone(),
            replicas: self
                .replicas
                .iter()
                .enumerate()
                .map(|(i, r)| r.info(i as u32))
                .collect(),
            created_at: crate::platform::rfc3339(self.created_at),
        }
    }

    /// Takes a new stored version (code, spec; an update also revives a failed service):
    /// replicas past the new count are dropped (returned, to be stopped where they run), the
    /// others are replaced one at a time by [`Service::roll`].
    fn update(&mut self, row: ServiceRow) -> Result<Vec<(String, u32, u64)>, String> {
        let new = Service::from_row(row)?;
        let count = new.replicas.len();
        let stops = self
            .replicas
            .iter()
            .enumerate()
            .skip(count)
            .filter_map(|(index, r)| match (&r.worker, r.state) {
                (Some(worker), State::Starting | State::Running) => {
                    Some((worker.clone(), index as u32, r.incarnation))
                }
                _ => None,
            })
            .collect();
        let mut replicas = std::mem::take(&mut self.replicas);
        replicas.truncate(count);
        let kept = replicas.len() as u32;
        replicas.resize(count, Replica::new());
        for replica in &mut replicas {
            if matches!(replica.state, State::Stopped | State::Exited) {
                replica.state = State::Pending;
                replica.streak = 0;
            }
        }
        *self = Service {
            replicas,
            rolling: (0..kept).collect(),
            ..new
        };
        Ok(stops)
    }

    /// One step of a rolling restart: once the replica being replaced runs again, the next one
    /// is taken down and made pending (the manager starts it with the new version). Returns
    /// the incarnation to stop, with its worker and index.
    fn roll(&mut self) -> Option<(String, u32, u64)> {
        if self.failed.is_some() {
            self.rolling.clear();
            self.rolling_now = None;
            return None;
        }
        if let Some(index) = self.rolling_now {
            let waiting = self
                .replicas
                .get(index as usize)
                .is_some_and(|r| matches!(r.state, State::Pending | State::Starting));
            if waiting {
                return None;
            }
            self.rolling_now = None;
        }
        let index = self.rolling.pop_front()?;
        let replica = self.replicas.get_mut(index as usize)?;
        let stop = match (&replica.worker, replica.state) {
            (Some(worker), State::Starting | State::Running) => {
                Some((worker.clone(), index, replica.incarnation))
            }
            _ => None,
        };
        replica.state = State::Pending;
        replica.incarnation = 0;
        replica.started = None;
        replica.next_start = None;
        if stop.is_some() {
            replica.restarts += 1;
            replica.last_exit = Some("replaced by an update".into());
        }
        self.rolling_now = Some(index);
        stop
    }

    /// Its replicas' histories as stored (JSON).
    fn history(&self) -> String {
        let history: Vec<ReplicaHistory> = self.replicas.iter().map(Replica::history).collect();
        serde_json::to_string(&history).unwrap_or_else(|_| "[]".into())
    }

    fn env(&self) -> Vec<(String, String)> {
        self.spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Labels of the replica gauge.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The services' metrics.
#[derive(Debug, Default)]
struct ServiceMetrics {
    replicas: prometheus_client::metrics::family::Family<
        StateLabels,
        prometheus_client::metrics::gauge::Gauge,
    >,
    restarts: prometheus_client::metrics::counter::Counter,
    failures: prometheus_client::metrics::counter::Counter,
}

impl ServiceMetrics {
    /// Sets the replica gauge from the table.
    fn count(&self, table: &HashMap<String, Service>) {
        let mut counts: HashMap<&'static str, i64> = [
            State::Pending,
            State::Starting,
            State::Running,
            State::Backoff,
            State::Exited,
            State::Stopped,
        ]
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for replica in table.values().flat_map(|s| &s.replicas) {
            *counts.entry(replica.state.as_str()).or_default() += 1;
        }
        for (state, n) in counts {
            self.replicas
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n);
        }
    }
}

/// The services table and the way to the manager; cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    workers: Workers,
    metrics: ServiceMetrics,
    /// Written by the manager only; the API reads it.
    table: RwLock<HashMap<String, Service>>,
    manager: RwLock<Option<ActorRef<ServicesMessage>>>,
    /// Whether this Core's manager acts (starts, restarts, moves and stops replicas): on
    /// PostgreSQL only the Core holding the singletons' lease (`crate::lease`) does; the
    /// others keep a view of the stored services and of what workers report.
    active: std::sync::atomic::AtomicBool,
}

impl Services {
    /// The services of this store, placed on these workers, counted in `metrics`.
    pub fn new(store: Store, workers: Workers, metrics: &Metrics) -> Self {
        let service_metrics = ServiceMetrics::default();
        metrics.register(
            "service_replicas",
            "Replicas of long-running services by state (pending, starting, running, backoff, exited, stopped)",
            service_metrics.replicas.clone(),
        );
        metrics.register(
            "service_restarts",
            "Restarts of service replicas by their child specs (in place or on another worker)",
            service_metrics.restarts.clone(),
        );
        metrics.register(
            "service_failures",
            "Services failed for exceeding their restart intensity",
            service_metrics.failures.clone(),
        );
        Self {
            inner: Arc::new(Shared {
                workers,
                metrics: service_metrics,
                active: std::sync::atomic::AtomicBool::new(store.backend() != "postgres"),
                store,
                table: RwLock::default(),
                manager: RwLock::default(),
            }),
        }
    }

    /// Makes this Core's manager act on the services (it took the lease) or only watch them
    /// (it lost it); the manager notices at its next tick.
    pub(crate) fn set_active(&self, active: bool) {
        self.inner
            .active
            .store(active, std::sync::atomic::Ordering::Release);
    }

    /// Whether this Core's manager acts on the services.
    fn active(&self) -> bool {
        self.inner.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Has the manager read the stored services again (another Core changed them); a manager
    /// that does not answer reads them at its next tick anyway.
    pub(crate) async fn refresh(&self) {
        if let Some(manager) = self.manager() {
            let _ = ractor::call_t!(manager, ServicesMessage::Reload, RELOAD_TIMEOUT_MS);
        }
    }

    /// The manager as a child of the Core's root (`services`).
    pub fn child_spec(&self) -> ChildSpec {
        let services = self.clone();
        ChildSpec::worker(
            "services",
            "service manager: applies services' child specs across workers",
            start_actor(move || (manager::Manager, services.clone())),
        )
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Service>> {
        self.inner.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Service>> {
        self.inner.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn manager(&self) -> Option<ActorRef<ServicesMessage>> {
        self.inner
            .manager
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A service as the API shows it.
    fn info(&self, name: &str) -> Option<ServiceInfo> {
        self.table().get(name).map(Service::info)
    }

    /// Every service visible to `owner` (`None`: all), by name.
    fn infos(&self, owner: Option<i64>) -> Vec<ServiceInfo> {
        let table = self.table();
        let mut list: Vec<(&String, ServiceInfo)> = table
            .iter()
            .filter(|(_, s)| owner.is_none() || s.owner_id == owner)
            .map(|(name, s)| (name, s.info()))
            .collect();
        list.sort_by(|a, b| a.0.cmp(b.0));
        list.into_iter().map(|(_, info)| info).collect()
    }
}

/// The stored name of a subject's service: the admin's as named, a subject's in its own
/// namespace (as its modules).
fn stored_name(who: &funless_api::Subject, name: &str) -> String {
    if who.admin {
        name.to_string()
    } else {
        format!("{name}~{}", who.id)
    }
}

/// The back-off before restart number `streak` (0-based) of a replica.
fn backoff(base_ms: u64, streak: u32) -> std::time::Duration {
    let factor = 1u64 << streak.min(16);
    std::time::Duration::from_millis(base_ms.saturating_mul(factor).min(MAX_BACKOFF_MS))
}

/// The spec as stored (what was asked, defaults filled in).
fn stored_spec(spec: &ServiceSpec) -> Result<String, String> {
    let request = ServiceSpecRequest {
        restart: Some(spec.restart.clone()),
        max_restarts: Some(spec.max_restarts),
        period_ms: Some(spec.period_ms),
        backoff_ms: Some(spec.backoff_ms),
        replicas: Some(spec.replicas),
        memory_bytes: Some(spec.memory_bytes),
        allow_hosts: Some(spec.allow_hosts.clone()),
        env: Some(spec.env.clone()),
        stop_grace_ms: Some(spec.stop_grace_ms),
        tag: spec.tag.clone(),
    };
    serde_json::to_string(&request).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn specs_get_defaults_and_bounds() {
        let spec = resolve(ServiceSpecRequest::default()).unwrap();
        assert_eq!(spec.restart, "permanent");
        assert_eq!(spec.replicas, 1);
        let bad = |request: ServiceSpecRequest| resolve(request).unwrap_err();
        assert!(
            bad(ServiceSpecRequest {
                restart: Some("sometimes".into()),
                ..Default::default()
            })
            .contains("permanent, transient or temporary")
        );
        assert!(
            bad(ServiceSpecRequest {
                replicas: Some(0),
                ..Default::default()
            })
            .contains("replicas")
        );
        assert!(
            bad(ServiceSpecRequest {
                env: Some([("A-B".to_string(), "x".to_string())].into()),
                ..Default::default()
            })
            .contains("environment variable name")
        );
        let again = resolve(serde_json::from_str(&stored_spec(&spec).unwrap()).unwrap()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn restart_types_follow_otp() {
        assert!(Restart::Permanent.restarts(true) && Restart::Permanent.restarts(false));
        assert!(!Restart::Transient.restarts(true) && Restart::Transient.restarts(false));
        assert!(!Restart::Temporary.restarts(true) && !Restart::Temporary.restarts(false));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(200, 0).as_millis(), 200);
        assert_eq!(backoff(200, 2).as_millis(), 800);
        assert_eq!(backoff(200, 40).as_millis(), u128::from(MAX_BACKOFF_MS));
    }
}
