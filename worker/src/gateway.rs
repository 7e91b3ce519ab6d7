//! The worker's gateway: its one remotable actor, member of [`WORKER_GROUP`].
//!
//! The gateway only dispatches: every invocation and every compile runs in its own
//! short-lived [`Invoker`](crate::invoker::Invoker) actor under the invocation supervisor, so
//! no request ever waits in this mailbox behind another one's work, and a crashed run is
//! answered by that supervisor at once. Even starting an invoker (ractor's `spawn_linked`
//! waits for the new actor's first poll) happens off the mailbox, in a task the gateway's state
//! owns: under load the runtime's run queue is long, and a mailbox that waited for each start
//! in turn would pace every invocation of the worker by it.

use std::sync::Arc;

use funless_actors::protocol::{CacheReply, InvokeError, InvokeReply, TreeNode, WorkerMessage};
use funless_actors::supervisor::{SupervisorMessage, no_reply, path_exists};
use funless_actors::{WORKER_GROUP, Wire};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;

use crate::invoker::{InvocationsHandle, InvocationsSlot};
use crate::runtime::Runtime;

/// How long after answering a crash request the actor is killed.
const CRASH_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// How long the gateway waits for its tree's description.
const DESCRIBE_TIMEOUT_MS: u64 = 3000;

/// The gateway actor.
#[derive(Debug)]
pub struct Gateway;

/// How the gateway starts.
#[derive(Clone)]
pub struct GatewayArgs {
    /// The runtime shared by every incarnation.
    pub runtime: Arc<Runtime>,
    /// Where the current invocation supervisor is published.
    pub(crate) invocations: InvocationsSlot,
    /// Whether [`WorkerMessage::Crash`] is obeyed.
    pub fault_injection: bool,
}

/// The gateway's state.
pub struct GatewayState {
    runtime: Arc<Runtime>,
    invocations: InvocationsSlot,
    fault_injection: bool,
    /// Invokers being started. Owned here, so they end with the gateway (a `JoinSet` aborts
    /// its tasks when dropped) and a panicking one is seen.
    starting: JoinSet<()>,
}

impl GatewayState {
    /// The invocation supervisor running now (read per request: it may have been restarted
    /// since the gateway started; a read lock, never a mailbox).
    fn invocations(&self) -> Option<InvocationsHandle> {
        self.invocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs work off the mailbox (an invoker's start, a code chunk's copy), and reaps what is
    /// done.
    fn start(&mut self, starting: impl Future<Output = ()> + Send + 'static) {
        self.starting.spawn(starting);
        while let Some(done) = self.starting.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "work off the gateway's mailbox panicked");
            }
        }
    }
}

impl Actor for Gateway {
    type Msg = WorkerMessage;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(WORKER_GROUP.to_string(), vec![myself.get_cell()]);
        tracing::info!(worker = %args.runtime.name(), "worker gateway ready");
        Ok(GatewayState {
            runtime: args.runtime,
            invocations: args.invocations,
            fault_injection: args.fault_injection,
            starting: JoinSet::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::leave(WORKER_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::Invoke(request, reply) => match state.invocations() {
                Some(invocations) => {
                    let received = std::time::Instant::now();
                    let runtime = state.runtime.clone();
                    state.start(async move {
                        invocations.invoke(runtime, request, received, reply).await;
                    });
                }
                None => {
                    let _ = reply.send(Wire::new(InvokeReply::Failed(InvokeError::Crashed {
                        message: "the worker's invocation supervisor is restarting".into(),
                    })));
                }
            },
            WorkerMessage::Cache(push, reply) => match state.invocations() {
                Some(invocations) => {
                    let runtime = state.runtime.clone();
                    state.start(async move {
                        invocations.cache(runtime, push, reply).await;
                    });
                }
                None => {
                    let _ = reply.send(Wire::new(CacheReply::Failed {
                        reason: "the worker's invocation supervisor is restarting".into(),
                    }));
                }
            },
            WorkerMessage::Chunk(chunk, reply) => {
                // Copying a chunk (up to 1 MiB) into the staging table happens off the
                // mailbox, so no invocation waits behind it. The chunks of one transfer still
                // arrive in order: the Core sends the next only once this one is answered.
                let runtime = state.runtime.clone();
                state.start(async move {
                    let answer = match chunk.into_inner() {
                        Ok(chunk) => runtime.staging.add(chunk).map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = reply.send(Wire::new(answer));
                });
            }
            WorkerMessage::Evict(evict) => {
                if let Ok(evict) = evict.into_inner() {
                    state.runtime.evict_through_owner(evict.hashes);
                }
            }
            WorkerMessage::Status(reply) => {
                let _ = reply.send(Wire::new(state.runtime.status()));
            }
            WorkerMessage::Tree(reply) => {
                let tree = describe_root(myself.get_cell()).await;
                let _ = reply.send(Wire::new(tree));
            }
            WorkerMessage::StartReplica(start, reply) => {
                let answer = match start.into_inner() {
                    Ok(start) => crate::services::start(&state.runtime, start).await,
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(Wire::new(answer));
            }
            WorkerMessage::StopReplicas(stop, reply) => {
                let stopped = match stop.into_inner() {
                    Ok(stop) => crate::services::stop(&state.runtime, stop).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable stop request");
                        0
                    }
                };
                let _ = reply.send(Wire::new(stopped));
            }
            WorkerMessage::ReplicaLogs(request, reply) => {
                let lines = match request.into_inner() {
                    Ok(request) => crate::services::logs(&state.runtime, &request),
                    Err(e) => {
                        tracing::warn!(error = %e, "undecodable logs request");
                        Vec::new()
                    }
                };
                let _ = reply.send(Wire::new(lines));
            }
            WorkerMessage::Crash(path, reply) => {
                let answer = match path.into_inner() {
                    Ok(path) if state.fault_injection => crash(myself.get_cell(), path).await,
                    Ok(_) => Err(
                        "fault injection is off on this worker (start it with --fault-injection)"
                            .into(),
                    ),
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(Wire::new(answer));
            }
        }
        Ok(())
    }
}

/// The root of the worker's tree: the gateway's supervisor (in the single-process mode that
/// root is itself a child of the Core's).
fn root_of(cell: ActorCell) -> ActorRef<SupervisorMessage> {
    cell.try_get_supervisor().unwrap_or(cell).into()
}

/// The worker's whole tree, described by its root supervisor.
async fn describe_root(me: ActorCell) -> TreeNode {
    let root = root_of(me);
    match ractor::call_t!(root, SupervisorMessage::Describe, DESCRIBE_TIMEOUT_MS) {
        Ok(tree) => tree,
        Err(e) => TreeNode {
            name: "worker".into(),
            role: format!("cannot describe the tree: {e}"),
            kind: "supervisor".into(),
            strategy: None,
            restart: "permanent".into(),
            state: "unknown".into(),
            restarts: 0,
            uptime_ms: 0,
            linked: 0,
            children: Vec::new(),
        },
    }
}

/// Checks the path against the live tree, answers, then has the root kill the actor: the
/// gateway itself may be the target, and a killed gateway could not answer afterwards.
async fn crash(me: ActorCell, path: String) -> Result<String, String> {
    let tree = describe_root(me.clone()).await;
    if !path_exists(&tree, &path) {
        return Err(format!("no actor {path} in the worker's tree"));
    }
    let root = root_of(me);
    // A moment later, so this answer leaves over the cluster session first (the actor killed
    // may be the node that carries it).
    let target = path.clone();
    root.send_after(CRASH_DELAY, move || {
        SupervisorMessage::Crash(target, no_reply())
    });
    Ok(format!("{}/{path}", tree.name))
}
