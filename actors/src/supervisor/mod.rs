//! OTP-style supervisors over ractor actors (ractor links actors and reports their exits, but
//! has no restart strategies; DESIGN.md §9).
//!
//! A [`Supervisor`] starts its children linked to itself, in order, and applies its
//! [`Strategy`] when one exits: `one_for_one` restarts that child, `rest_for_one` also the
//! children started after it (they depend on it), `one_for_all` every child. Whether an exit
//! is restarted at all is the child's [`Restart`] type. More than `max_restarts` restarts
//! within `within` means something is persistently broken: the supervisor then *fails*, which
//! kills its remaining children and hands the decision to its own supervisor (escalation);
//! a node's root failing ends the process with an error, so systemd or Kubernetes restart it.
//!
//! Children may be added and removed at run time ([`SupervisorMessage::StartChild`],
//! [`SupervisorMessage::StopChild`]): the Core's connectors and sinks are such children.
//! Every supervisor answers [`SupervisorMessage::Describe`] with its live subtree and, for
//! fault injection, [`SupervisorMessage::Crash`] kills the actor at a path below it.

mod service;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use ractor_cluster::RactorMessage;

pub use service::{Job, Service, ServiceMessage, TaskGuard, service};

use crate::protocol::TreeNode;

/// Starts a child linked to the given supervisor cell.
pub type StartFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// Which children a supervisor restarts when one exits (OTP's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that exited.
    OneForOne,
    /// The child that exited and every child started after it.
    RestForOne,
    /// Every child.
    OneForAll,
}

impl Strategy {
    /// OTP's name of the strategy.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::RestForOne => "rest_for_one",
            Strategy::OneForAll => "one_for_all",
        }
    }
}

/// When a child is restarted (OTP's restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always, whatever the exit.
    Permanent,
    /// Only after an abnormal exit (a failure, a panic, a kill); a normal stop removes it.
    Transient,
    /// Never; any exit removes it.
    Temporary,
}

impl Restart {
    /// OTP's name of the restart type.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Permanent => "permanent",
            Restart::Transient => "transient",
            Restart::Temporary => "temporary",
        }
    }
}

/// One supervised child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Its name, unique among its siblings: logs, the tree view, fault-injection paths.
    pub name: String,
    /// What it does, for the tree view.
    pub role: String,
    /// When it is restarted.
    pub restart: Restart,
    /// Whether it is itself a [`Supervisor`] (its subtree is described and crash paths go
    /// through it).
    pub is_supervisor: bool,
    /// How to (re)start it: rebuilds its state from what the closure holds.
    pub start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .field("restart", &self.restart)
            .finish()
    }
}

impl ChildSpec {
    /// A permanent worker child (an actor that is not a supervisor).
    pub fn worker(name: impl Into<String>, role: impl Into<String>, start: StartFn) -> Self {
        Self {
            name: name.into(),
            role: role.into(),
            restart: Restart::Permanent,
            is_supervisor: false,
            start,
        }
    }

    /// A permanent child that is a [`Supervisor`] started with these arguments (rebuilt by
    /// `args` at every start).
    pub fn supervisor(
        name: impl Into<String>,
        role: impl Into<String>,
        args: impl Fn() -> Pin<Box<dyn Future<Output = Result<SupervisorArgs, SpawnErr>> + Send>>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        let args = Arc::new(args);
        Self {
            name: name.into(),
            role: role.into(),
            restart: Restart::Permanent,
            is_supervisor: true,
            start: Arc::new(move |parent| {
                let args = args.clone();
                Box::pin(async move {
                    let args = args().await?;
                    let (actor, _) = Actor::spawn_linked(None, Supervisor, args, parent).await?;
                    Ok(actor.get_cell())
                })
            }),
        }
    }

    /// The same child with another restart type.
    pub fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// The same child, started on another runtime: its actor, and every actor and task it
    /// starts in turn, run on that runtime's threads (ractor spawns on the current runtime),
    /// while it stays this supervisor's linked child. The Core's embedded worker runs so, as a
    /// worker process would beside its Core.
    pub fn on_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        let start = self.start.clone();
        self.start = Arc::new(move |parent| {
            let started = runtime.spawn(start(parent));
            Box::pin(async move {
                started
                    .await
                    .map_err(|e| SpawnErr::StartupFailed(Box::new(e)))?
            })
        });
        self
    }
}

/// A reply port whose answer nobody reads: for telling a supervisor something (start, stop,
/// crash a child) without waiting for it.
pub fn no_reply<T: Send + 'static>() -> RpcReplyPort<T> {
    let (port, _) = tokio::sync::oneshot::channel();
    RpcReplyPort::from(port)
}

/// A start function for an actor built afresh by `make` at every (re)start.
pub fn start_actor<A, F>(make: F) -> StartFn
where
    A: Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    Arc::new(move |parent| {
        let make = make.clone();
        Box::pin(async move {
            let (actor, args) = make();
            let (actor, _) = Actor::spawn_linked(None, actor, args, parent).await?;
            Ok(actor.get_cell())
        })
    })
}

/// Messages of a supervisor.
#[derive(RactorMessage)]
pub enum SupervisorMessage {
    /// Adds a child (replacing a running one of the same name) and starts it.
    StartChild(ChildSpec, RpcReplyPort<Result<(), String>>),
    /// Stops a child and forgets it; answers whether it existed.
    StopChild(String, RpcReplyPort<bool>),
    /// The live subtree below (and including) this supervisor.
    Describe(RpcReplyPort<TreeNode>),
    /// Kills the actor at this `/`-separated path below this supervisor; a last segment `*`
    /// kills one of the short-lived actors linked to the named child (an invoker). Answers what
    /// was killed.
    Crash(String, RpcReplyPort<Result<String, String>>),
}

impl std::fmt::Debug for SupervisorMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupervisorMessage::StartChild(spec, _) => write!(f, "StartChild({})", spec.name),
            SupervisorMessage::StopChild(name, _) => write!(f, "StopChild({name})"),
            SupervisorMessage::Describe(_) => write!(f, "Describe"),
            SupervisorMessage::Crash(path, _) => write!(f, "Crash({path})"),
        }
    }
}

/// A root supervisor's restart intensity (OTP's intensity and period): more than
/// `max_restarts` restarts within `within` and it gives up, which ends the node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Most restarts tolerated within `within`.
    pub max_restarts: usize,
    /// The window.
    pub within: Duration,
}

impl Default for Intensity {
    /// 5 restarts in 30 s.
    fn default() -> Self {
        Self {
            max_restarts: 5,
            within: Duration::from_secs(30),
        }
    }
}

/// How a supervisor starts.
#[derive(Debug)]
pub struct SupervisorArgs {
    /// Its name in the tree.
    pub name: String,
    /// What it supervises, for the tree view.
    pub role: String,
    /// Its restart strategy.
    pub strategy: Strategy,
    /// Its children, started in order.
    pub children: Vec<ChildSpec>,
    /// Most restarts tolerated within `within` (OTP's intensity).
    pub max_restarts: usize,
    /// The window of the restart limit (OTP's period).
    pub within: Duration,
}

/// The supervisor actor.
#[derive(Debug)]
pub struct Supervisor;

/// How long a child has to stop when its supervisor stops it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a supervisor waits for a child supervisor's description.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u64,
    started: Instant,
}

/// The supervisor's state.
pub struct SupervisorState {
    name: String,
    role: String,
    strategy: Strategy,
    children: Vec<Child>,
    restarts: VecDeque<Instant>,
    max_restarts: usize,
    within: Duration,
}

impl std::fmt::Debug for SupervisorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorState")
            .field("name", &self.name)
            .finish()
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState {
            name: args.name,
            role: args.role,
            strategy: args.strategy,
            children: Vec::with_capacity(args.children.len()),
            restarts: VecDeque::new(),
            max_restarts: args.max_restarts,
            within: args.within,
        };
        for spec in args.children {
            let cell = match (spec.start)(myself.get_cell()).await {
                Ok(cell) => cell,
                Err(e) => {
                    // Like OTP: a child that cannot start fails its supervisor's start, after
                    // the children already started are stopped.
                    stop_all(&myself, &mut state).await;
                    return Err(format!("starting {}: {e}", spec.name).into());
                }
            };
            tracing::debug!(supervisor = %state.name, child = %spec.name, "started");
            state.children.push(Child {
                spec,
                cell: Some(cell),
                restarts: 0,
                started: Instant::now(),
            });
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // An orderly shutdown stops the children in the reverse of their start order.
        stop_all(&myself, state).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::StartChild(spec, reply) => {
                if let Some(index) = state.index_of(&spec.name) {
                    let old = state.children.remove(index);
                    stop_child(&myself, old.cell).await;
                }
                let result = match (spec.start)(myself.get_cell()).await {
                    Ok(cell) => {
                        state.children.push(Child {
                            spec,
                            cell: Some(cell),
                            restarts: 0,
                            started: Instant::now(),
                        });
                        Ok(())
                    }
                    Err(e) => Err(format!("starting {}: {e}", spec.name)),
                };
                let _ = reply.send(result);
            }
            SupervisorMessage::StopChild(name, reply) => {
                let found = match state.index_of(&name) {
                    Some(index) => {
                        let old = state.children.remove(index);
                        stop_child(&myself, old.cell).await;
                        true
                    }
                    None => false,
                };
                let _ = reply.send(found);
            }
            SupervisorMessage::Describe(reply) => {
                let _ = reply.send(describe(state).await);
            }
            SupervisorMessage::Crash(path, reply) => {
                let answer = crash(state, &path).await;
                if let Err(e) = &answer {
                    tracing::warn!(supervisor = %state.name, %path, error = %e, "fault injection: nothing killed");
                }
                let _ = reply.send(answer);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, abnormal, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                // A kill (`killed`) or a cancelled task is abnormal; a stop with or without a
                // reason is a normal exit.
                let abnormal = matches!(
                    reason.as_deref(),
                    Some("killed") | Some("actor_task_cancelled")
                );
                let why = format!("stopped: {}", reason.unwrap_or_else(|| "normal".into()));
                (cell, abnormal, why)
            }
            _ => return Ok(()),
        };
        let Some(index) = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|c| c.get_id() == cell.get_id()))
        else {
            // A child stopped on purpose (replaced, removed, or stopped by a strategy).
            return Ok(());
        };
        let name = state.children[index].spec.name.clone();
        state.children[index].cell = None;
        let restart = match state.children[index].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            tracing::info!(supervisor = %state.name, child = %name, %why, "child exited; not restarted");
            state.children.remove(index);
            return Ok(());
        }
        tracing::warn!(supervisor = %state.name, child = %name, %why, strategy = state.strategy.as_str(), "restarting");
        let first = match state.strategy {
            Strategy::OneForOne => index,
            Strategy::RestForOne => index,
            Strategy::OneForAll => 0,
        };
        let last = match state.strategy {
            Strategy::OneForOne => index,
            Strategy::RestForOne | Strategy::OneForAll => state.children.len() - 1,
        };
        // Siblings in the restarted range stop in the reverse of their start order.
        for i in (first..=last).rev() {
            if i != index {
                let cell = state.children[i].cell.take();
                stop_child(&myself, cell).await;
            }
        }
        // One exit is one restart for the intensity, however many children it restarts
        // (as in OTP); a child that fails to start again counts once more.
        state.note_restart()?;
        for i in first..=last {
            let mut attempt = 0;
            loop {
                if attempt > 0 {
                    state.note_restart()?;
                }
                attempt += 1;
                let child = &mut state.children[i];
                match (child.spec.start)(myself.get_cell()).await {
                    Ok(cell) => {
                        child.cell = Some(cell);
                        child.restarts += 1;
                        child.started = Instant::now();
                        break;
                    }
                    Err(e) => {
                        tracing::error!(supervisor = %state.name, child = %child.spec.name, error = %e, "restart failed");
                    }
                }
            }
        }
        Ok(())
    }
}

impl SupervisorState {
    fn index_of(&self, name: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.name == name)
    }

    /// Counts a restart; beyond the intensity the supervisor fails (escalation).
    fn note_restart(&mut self) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.within)
        {
            self.restarts.pop_front();
        }
        if self.restarts.len() >= self.max_restarts {
            tracing::error!(supervisor = %self.name, max = self.max_restarts, within = ?self.within, "restart intensity reached; escalating");
            return Err(format!(
                "supervisor {} reached its restart intensity ({} in {:?})",
                self.name, self.max_restarts, self.within
            )
            .into());
        }
        self.restarts.push_back(now);
        Ok(())
    }
}

/// Stops one child without triggering a restart: unlinked first, then asked to stop, then
/// killed if it does not within the grace period.
async fn stop_child(myself: &ActorRef<SupervisorMessage>, cell: Option<ActorCell>) {
    let Some(cell) = cell else { return };
    cell.unlink(myself.get_cell());
    if cell.get_status() == ActorStatus::Stopped {
        return;
    }
    if cell
        .stop_and_wait(Some("stopped by its supervisor".into()), Some(STOP_GRACE))
        .await
        .is_err()
    {
        let _ = cell.kill_and_wait(Some(STOP_GRACE)).await;
    }
}

async fn stop_all(myself: &ActorRef<SupervisorMessage>, state: &mut SupervisorState) {
    for child in state.children.iter_mut().rev() {
        let cell = child.cell.take();
        stop_child(myself, cell).await;
    }
}

async fn describe(state: &SupervisorState) -> TreeNode {
    let mut children = Vec::with_capacity(state.children.len());
    for child in &state.children {
        let mut node = TreeNode {
            name: child.spec.name.clone(),
            role: child.spec.role.clone(),
            kind: if child.spec.is_supervisor {
                "supervisor"
            } else {
                "worker"
            }
            .into(),
            strategy: None,
            restart: child.spec.restart.as_str().into(),
            state: if child.cell.is_some() {
                "running"
            } else {
                "stopped"
            }
            .into(),
            restarts: child.restarts,
            uptime_ms: child.started.elapsed().as_millis() as u64,
            linked: 0,
            children: Vec::new(),
        };
        if let Some(cell) = &child.cell {
            if child.spec.is_supervisor {
                let sup: ActorRef<SupervisorMessage> = cell.clone().into();
                if let Ok(ractor::rpc::CallResult::Success(sub)) = sup
                    .call(SupervisorMessage::Describe, Some(DESCRIBE_TIMEOUT))
                    .await
                {
                    node.strategy = sub.strategy;
                    node.children = sub.children;
                }
            } else {
                node.linked = cell.get_children().len() as u64;
            }
        }
        children.push(node);
    }
    TreeNode {
        name: state.name.clone(),
        role: state.role.clone(),
        kind: "supervisor".into(),
        strategy: Some(state.strategy.as_str().into()),
        restart: Restart::Permanent.as_str().into(),
        state: "running".into(),
        restarts: 0,
        uptime_ms: 0,
        linked: 0,
        children,
    }
}

async fn crash(state: &SupervisorState, path: &str) -> Result<String, String> {
    let (first, rest) = match path.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let child = state
        .children
        .iter()
        .find(|c| c.spec.name == first)
        .ok_or_else(|| format!("{} has no child {first}", state.name))?;
    let cell = child
        .cell
        .as_ref()
        .ok_or_else(|| format!("{first} is not running"))?;
    match rest {
        None => {
            tracing::warn!(supervisor = %state.name, child = %first, "fault injection: killing");
            cell.kill();
            Ok(format!("{}/{first}", state.name))
        }
        Some(rest) if child.spec.is_supervisor => {
            let sup: ActorRef<SupervisorMessage> = cell.clone().into();
            match sup
                .call(
                    |reply| SupervisorMessage::Crash(rest.to_string(), reply),
                    Some(DESCRIBE_TIMEOUT),
                )
                .await
            {
                Ok(ractor::rpc::CallResult::Success(answer)) => {
                    answer.map(|path| format!("{}/{path}", state.name))
                }
                _ => Err(format!("{first} did not answer")),
            }
        }
        Some("*") => {
            // Short-lived actors may do all their work in `post_start`, while still `Starting`.
            let linked = cell
                .get_children()
                .into_iter()
                .find(|c| matches!(c.get_status(), ActorStatus::Starting | ActorStatus::Running))
                .ok_or_else(|| format!("nothing is running under {first}"))?;
            tracing::warn!(supervisor = %state.name, child = %first, actor = %linked.get_id(), "fault injection: killing a linked actor");
            linked.kill();
            Ok(format!("{}/{first}/{}", state.name, linked.get_id()))
        }
        Some(rest) => Err(format!("{first} is not a supervisor (no {rest} below it)")),
    }
}

/// Whether `path` (as [`SupervisorMessage::Crash`] takes it, relative to `tree`'s root) names
/// a running actor of the tree; a last segment `*` needs a linked actor to be running.
pub fn path_exists(tree: &TreeNode, path: &str) -> bool {
    let mut node = tree;
    let mut segments = path.split('/').peekable();
    while let Some(segment) = segments.next() {
        if segment == "*" && segments.peek().is_none() {
            return node.linked > 0;
        }
        match node
            .children
            .iter()
            .find(|c| c.name == segment && c.state == "running")
        {
            Some(child) => node = child,
            None => return false,
        }
    }
    !path.is_empty()
}
