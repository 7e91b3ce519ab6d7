//! Long-running services on a worker: the `services` supervisor and its replicas.
//!
//! Every replica of a user's service runs as its own actor ([`replica::Replica`]), a temporary
//! child of the worker's `services` supervisor (so the live tree shows each one, and fault
//! injection can kill one). Whether a replica that ended runs again is the Core's decision
//! (the service's child spec, applied by its service manager, which may also move it to
//! another worker): the replica reports its exit there, with the reason, and the worker reports
//! every second what it runs, so a restarted Core learns the replicas instead of starting
//! them again. What replicas write on stdout and stderr is kept in a bounded ring per replica
//! ([`LogRing`]) that outlives the replica's incarnations on this worker.

mod replica;

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use funless_actors::Wire;
use funless_actors::protocol::{
    LogLine, LogsRequest, ReplicaExited, ReplicaId, ReplicaReport, ReplicaStart, ReplicaStop,
    SERVICES_GROUP, ServicesMessage,
};
use funless_actors::supervisor::{
    ChildSpec, Restart, StartFn, Strategy, Supervisor, SupervisorArgs, SupervisorMessage,
    start_actor,
};
use ractor::{Actor, ActorCell, ActorRef};

use crate::runtime::Runtime;

/// Most lines kept per replica.
const MAX_LINES: usize = 1000;
/// Most bytes kept per replica (lines included).
const MAX_RING_BYTES: usize = 256 * 1024;
/// Most bytes of one line; longer lines are cut.
const MAX_LINE_BYTES: usize = 4096;
/// Most replicas whose logs one worker keeps (running or ended).
const MAX_LOGGED_REPLICAS: usize = 1024;
/// How long a start or stop request may wait for the `services` supervisor.
const SUPERVISOR_TIMEOUT_MS: u64 = 10_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The output of one replica across its incarnations on this worker: the newest lines, within
/// a line count and a byte bound.
#[derive(Debug, Default)]
pub(crate) struct LogRing {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// An unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

impl LogRing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends what a stream wrote, line by line.
    pub(crate) fn write(&self, id: &ReplicaId, stream: usize, bytes: &[u8]) {
        let mut ring = self.lock();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let ends = chunk.ends_with(b"\n");
            let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            let room = MAX_LINE_BYTES.saturating_sub(ring.partial[stream].len());
            let kept = &body[..body.len().min(room)];
            ring.partial[stream].extend_from_slice(kept);
            if ends || ring.partial[stream].len() >= MAX_LINE_BYTES {
                let line = std::mem::take(&mut ring.partial[stream]);
                ring.push(id, stream, &line);
            }
        }
    }

    /// The newest `n` lines.
    pub(crate) fn tail(&self, n: usize) -> Vec<LogLine> {
        let ring = self.lock();
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }
}

impl Ring {
    fn push(&mut self, id: &ReplicaId, stream: usize, line: &[u8]) {
        let line = String::from_utf8_lossy(line)
            .trim_end_matches('\r')
            .to_string();
        self.bytes += line.len();
        self.lines.push_back(LogLine {
            index: id.index,
            incarnation: id.incarnation,
            at_ms: now_ms(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.into(),
            line,
        });
        while self.lines.len() > MAX_LINES || self.bytes > MAX_RING_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.line.len(),
                None => break,
            }
        }
    }
}

/// A replica's stdout or stderr as WASI sees it: every write goes to its [`LogRing`].
#[derive(Debug, Clone)]
pub(crate) struct LogStream {
    ring: Arc<LogRing>,
    id: ReplicaId,
    stream: usize,
}

impl LogStream {
    pub(crate) fn stdout(ring: Arc<LogRing>, id: ReplicaId) -> Self {
        Self {
            ring,
            id,
            stream: 0,
        }
    }

    pub(crate) fn stderr(ring: Arc<LogRing>, id: ReplicaId) -> Self {
        Self {
            ring,
            id,
            stream: 1,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.ring.write(&self.id, self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A replica's stdin, and how it is asked to stop: open and empty while it runs (a read
/// waits), at end-of-file once [`StopSignal::fire`] was called. Every stream made from it shares
/// that state, as WASI wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopSignal {
    inner: Arc<Mutex<(bool, Vec<std::task::Waker>)>>,
}

impl StopSignal {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, Vec<std::task::Waker>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether [`StopSignal::fire`] was called.
    pub(crate) fn fired(&self) -> bool {
        self.lock().0
    }

    /// Closes the stdin: every read under way or to come ends with end-of-file.
    pub(crate) fn fire(&self) {
        let wakers = {
            let mut state = self.lock();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for StopSignal {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdinStream for StopSignal {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncRead for StopSignal {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut state = self.lock();
        if state.0 {
            // Nothing put in `buf`: end-of-file.
            return Poll::Ready(Ok(()));
        }
        if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
            state.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// A JavaScript replica's side of the engine: its console lines go to its log ring (stdout),
/// and the engine's event loop looks at its stop signal (JavaScript reads no stdin).
#[derive(Debug)]
pub(crate) struct ServiceIo {
    pub(crate) out: LogStream,
    pub(crate) stop: StopSignal,
}

impl ServiceIo {
    /// One console line (or several, when it holds line breaks).
    pub(crate) fn log(&self, bytes: &[u8]) {
        self.out.ring.write(&self.out.id, self.out.stream, bytes);
        self.out.ring.write(&self.out.id, self.out.stream, b"\n");
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.fired()
    }
}

/// A running replica as the worker knows it.
struct Running {
    id: ReplicaId,
    started: Instant,
    stop: StopSignal,
}

/// The worker's replicas: the running ones, their logs, and the current `services`
/// supervisor. Shared by the gateway (starts, stops, logs), the reporter (reports) and the
/// replicas themselves (they register and unregister).
#[derive(Default)]
pub(crate) struct Registry {
    running: Mutex<HashMap<(String, u32), Running>>,
    logs: Mutex<HashMap<(String, u32), Arc<LogRing>>>,
    supervisor: RwLock<Option<ActorRef<SupervisorMessage>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<LogRing>>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn supervisor(&self) -> Option<ActorRef<SupervisorMessage>> {
        self.supervisor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The log ring of a replica (made on its first start here). Past the bound, the ring of
    /// a replica that no longer runs makes room.
    fn ring(&self, id: &ReplicaId) -> Arc<LogRing> {
        let key = (id.service.clone(), id.index);
        let mut logs = self.logs();
        if let Some(ring) = logs.get(&key) {
            return ring.clone();
        }
        if logs.len() >= MAX_LOGGED_REPLICAS {
            let running = self.running();
            let idle = logs.keys().find(|k| !running.contains_key(*k)).cloned();
            drop(running);
            if let Some(idle) = idle {
                logs.remove(&idle);
            }
        }
        let ring = Arc::new(LogRing::default());
        logs.insert(key, ring.clone());
        ring
    }

    fn register(&self, id: &ReplicaId, stop: StopSignal) {
        self.running().insert(
            (id.service.clone(), id.index),
            Running {
                id: id.clone(),
                started: Instant::now(),
                stop,
            },
        );
    }

    /// Forgets a replica that ended (unless a newer incarnation took its place).
    fn unregister(&self, id: &ReplicaId) {
        let mut running = self.running();
        let key = (id.service.clone(), id.index);
        if running
            .get(&key)
            .is_some_and(|r| r.id.incarnation == id.incarnation)
        {
            running.remove(&key);
        }
    }

    /// What runs here now, with uptimes.
    pub(crate) fn report(&self, worker: &str) -> ReplicaReport {
        let running = self.running();
        let mut list: Vec<(ReplicaId, u64)> = running
            .values()
            .map(|r| (r.id.clone(), r.started.elapsed().as_millis() as u64))
            .collect();
        list.sort_by(|a, b| (&a.0.service, a.0.index).cmp(&(&b.0.service, b.0.index)));
        ReplicaReport {
            worker: worker.to_string(),
            running: list,
        }
    }
}

/// The tree name of a replica's actor.
fn child_name(service: &str, index: u32) -> String {
    format!("{service}.{index}")
}

/// The `services` supervisor as a child of the worker's root: one-for-one over temporary
/// replicas (the Core decides restarts), published in the runtime's registry at every start
/// so the gateway always reaches the current one.
pub(crate) fn supervisor_child(runtime: Arc<Runtime>) -> ChildSpec {
    let start: StartFn = Arc::new(move |parent: ActorCell| {
        let runtime = runtime.clone();
        Box::pin(async move {
            let args = SupervisorArgs {
                name: "services".into(),
                role: "users' long-running services: one temporary actor per replica".into(),
                strategy: Strategy::OneForOne,
                children: Vec::new(),
                // Replicas are temporary: this supervisor never restarts one itself.
                max_restarts: 1,
                within: Duration::from_secs(1),
            };
            let (actor, _) = Actor::spawn_linked(None, Supervisor, args, parent).await?;
            *runtime
                .services()
                .supervisor
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(actor.clone());
            Ok(actor.get_cell())
        })
    });
    ChildSpec {
        name: "services".into(),
        role: "users' long-running services: one temporary actor per replica".into(),
        restart: Restart::Permanent,
        is_supervisor: true,
        start,
    }
}

/// Starts (or replaces) a replica under the `services` supervisor.
pub(crate) async fn start(runtime: &Arc<Runtime>, start: ReplicaStart) -> Result<(), String> {
    let supervisor = runtime
        .services()
        .supervisor()
        .ok_or("the worker's services supervisor is not running")?;
    let name = child_name(&start.id.service, start.id.index);
    let role = format!(
        "service replica ({}, {} restarts by the Core)",
        start.restart, start.restarts
    );
    let args = replica::ReplicaArgs {
        runtime: runtime.clone(),
        start: Arc::new(start),
    };
    let spec = ChildSpec::worker(
        name,
        role,
        start_actor(move || (replica::Replica, args.clone())),
    )
    .with_restart(Restart::Temporary);
    match ractor::call_t!(
        supervisor,
        SupervisorMessage::StartChild,
        SUPERVISOR_TIMEOUT_MS,
        spec
    ) {
        Ok(result) => result,
        Err(e) => Err(format!("the services supervisor did not answer: {e}")),
    }
}

/// Stops the replicas that match; returns how many. All of them are signalled first (their
/// stdin closes), so their grace periods run together.
pub(crate) async fn stop(runtime: &Arc<Runtime>, stop: ReplicaStop) -> u32 {
    let registry = runtime.services();
    let names: Vec<String> = registry
        .running()
        .values()
        .filter(|r| {
            r.id.service == stop.service
                && stop.index.is_none_or(|i| i == r.id.index)
                && stop.incarnation.is_none_or(|n| n == r.id.incarnation)
        })
        .map(|r| {
            r.stop.fire();
            child_name(&r.id.service, r.id.index)
        })
        .collect();
    let mut stopped = 0;
    if let Some(supervisor) = registry.supervisor() {
        for name in names {
            match ractor::call_t!(
                supervisor,
                SupervisorMessage::StopChild,
                SUPERVISOR_TIMEOUT_MS,
                name.clone()
            ) {
                Ok(true) => stopped += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(replica = %name, error = %e, "cannot stop a replica"),
            }
        }
    }
    if stop.forget_logs {
        registry
            .logs()
            .retain(|(service, _), _| *service != stop.service);
    }
    stopped
}

/// The newest lines of a service's replicas on this worker, oldest first.
pub(crate) fn logs(runtime: &Runtime, request: &LogsRequest) -> Vec<LogLine> {
    let rings: Vec<Arc<LogRing>> = runtime
        .services()
        .logs()
        .iter()
        .filter(|((service, _), _)| *service == request.service)
        .map(|(_, ring)| ring.clone())
        .collect();
    let mut lines: Vec<LogLine> = rings
        .iter()
        .flat_map(|ring| ring.tail(request.lines as usize))
        .collect();
    lines.sort_by_key(|l| l.at_ms);
    lines
}

/// Tells the Core's service managers about an exit.
fn report_exit(exited: ReplicaExited) {
    for cell in ractor::pg::get_members(&SERVICES_GROUP.to_string()) {
        let manager: ActorRef<ServicesMessage> = cell.into();
        if let Err(e) = manager.cast(ServicesMessage::Exited(Wire::new(exited.clone()))) {
            tracing::debug!(error = %e, "cannot report a replica's exit");
        }
    }
}

/// Sends what runs here to the Core's service managers (with every status report).
pub(crate) fn push_report(runtime: &Runtime) {
    let members = ractor::pg::get_members(&SERVICES_GROUP.to_string());
    if members.is_empty() {
        return;
    }
    let report = runtime.services().report(runtime.name());
    for cell in members {
        let manager: ActorRef<ServicesMessage> = cell.into();
        if let Err(e) = manager.cast(ServicesMessage::Running(Wire::new(report.clone()))) {
            tracing::debug!(error = %e, "cannot report the running replicas");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn id() -> ReplicaId {
        ReplicaId {
            service: "s".into(),
            index: 0,
            incarnation: 7,
        }
    }

    #[test]
    fn lines_are_split_joined_across_writes_and_bounded() {
        let ring = LogRing::default();
        ring.write(&id(), 0, b"one\ntw");
        ring.write(&id(), 0, b"o\n");
        ring.write(&id(), 1, b"err\n");
        let lines: Vec<String> = ring.tail(10).into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["one", "two", "err"]);
        assert_eq!(ring.tail(1)[0].stream, "stderr");
        for i in 0..(MAX_LINES + 10) {
            ring.write(&id(), 0, format!("line {i}\n").as_bytes());
        }
        let tail = ring.tail(usize::MAX);
        assert_eq!(tail.len(), MAX_LINES);
        assert_eq!(tail.last().unwrap().line, format!("line {}", MAX_LINES + 9));
    }

    #[test]
    fn a_long_line_is_cut_and_the_byte_bound_holds() {
        let ring = LogRing::default();
        let long = vec![b'x'; MAX_LINE_BYTES * 3];
        ring.write(&id(), 0, &long);
        ring.write(&id(), 0, b"\n");
        let tail = ring.tail(usize::MAX);
        assert!(tail.iter().all(|l| l.line.len() <= MAX_LINE_BYTES));
        for _ in 0..200 {
            ring.write(&id(), 0, &[b'y'; 4000]);
            ring.write(&id(), 0, b"\n");
        }
        assert!(ring.lock().bytes <= MAX_RING_BYTES);
    }
}
