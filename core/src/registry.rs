//! The worker registry and metrics collector: follows the workers' process group (joins and
//! leaves arrive as events, also when a worker's node disconnects), takes in the statuses
//! workers push and declares silent workers lost. It writes the shared [`Workers`] table;
//! nothing on the invocation path waits on this actor.
//!
//! It owns one status request per joining worker (a task kept in its state, so it ends with
//! the registry however it ends), retried until the worker answers or leaves. The heartbeat
//! check and the node-event watch are supervised children of the Core's root of their own
//! ([`heartbeat_child`], [`node_watch_child`]).

use std::time::Duration;

use funless_actors::protocol::{CoreMessage, WorkerMessage};
use funless_actors::supervisor::{ChildSpec, service};
use funless_actors::{CORE_GROUP, WORKER_GROUP, Wire};
use ractor::pg::GroupChangeMessage;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::workers::Workers;

/// How long a joining worker has to answer one status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between status requests to a joining worker that did not answer, growing to
/// [`STATUS_RETRY_MAX`].
const STATUS_RETRY_START: Duration = Duration::from_millis(200);
const STATUS_RETRY_MAX: Duration = Duration::from_secs(5);

/// Default time without a status after which a worker is declared lost. Workers report every
/// second by default, so this allows two missed reports and a slow one.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// The registry actor.
#[derive(Debug)]
pub struct Registry;

/// What the registry works on (shared with the rest of the Core).
#[derive(Debug, Clone)]
pub struct RegistryArgs {
    /// The table it maintains.
    pub workers: Workers,
    /// Where it reports the worker count.
    pub metrics: Metrics,
    /// Silence after which a worker is declared lost.
    pub heartbeat_timeout: Duration,
}

/// The registry's state: its arguments and the tasks it owns.
#[derive(Debug)]
pub struct RegistryState {
    args: RegistryArgs,
    /// Status requests to joining workers; dropping the set aborts them.
    asking: JoinSet<()>,
}

impl std::ops::Deref for RegistryState {
    type Target = RegistryArgs;
    fn deref(&self) -> &RegistryArgs {
        &self.args
    }
}

impl Actor for Registry {
    type Msg = CoreMessage;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RegistryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(CORE_GROUP.to_string(), vec![myself.get_cell()]);
        ractor::pg::monitor(WORKER_GROUP.to_string(), myself.get_cell());
        args.workers.set_comeback(args.heartbeat_timeout);
        let mut state = RegistryState {
            args,
            asking: JoinSet::new(),
        };
        // After a restart the table is rebuilt from the group's current members.
        for cell in ractor::pg::get_members(&WORKER_GROUP.to_string()) {
            admit(&mut state, cell);
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor(WORKER_GROUP.to_string(), myself.get_id());
        ractor::pg::leave(CORE_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            CoreMessage::Status(status) => {
                if let Ok(status) = status.into_inner() {
                    state.workers.update_by_name(status);
                    state.metrics.set_workers(state.workers.live().len());
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = event {
            match change {
                GroupChangeMessage::Join(_, group, cells) if group == WORKER_GROUP => {
                    for cell in cells {
                        admit(state, cell);
                    }
                    // Reap the finished status requests; one that panicked left its worker
                    // joining: say so (it is asked again when it rejoins).
                    while let Some(done) = state.asking.try_join_next() {
                        if let Err(e) = done {
                            tracing::error!(error = %e, "a status request to a joining worker failed");
                        }
                    }
                }
                GroupChangeMessage::Leave(_, group, cells) if group == WORKER_GROUP => {
                    for cell in cells {
                        match state.workers.gateway_left(cell.get_id()) {
                            Some(entry) => {
                                if entry.lost_since.is_none() {
                                    state.metrics.worker_lost();
                                }
                                tracing::warn!(worker = %entry.name(), "worker left");
                            }
                            None => {
                                tracing::info!(gateway = %cell.get_id(), "a worker's gateway left; waiting for its supervisor to restart it");
                            }
                        }
                    }
                    state.metrics.set_workers(state.workers.live().len());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The heartbeat check as a supervised child of the Core's root (`heartbeat`).
pub fn heartbeat_child(workers: Workers, metrics: Metrics, timeout: Duration) -> ChildSpec {
    service(
        "heartbeat",
        "declares lost the workers whose statuses stopped",
        move || {
            let (workers, metrics) = (workers.clone(), metrics.clone());
            async move {
                check_heartbeats(workers, metrics, timeout).await;
                Err("the heartbeat check stopped".to_string())
            }
        },
    )
}

/// The watch of the node's session events as a supervised child of the Core's root
/// (`node-watch`).
pub fn node_watch_child(
    node: funless_actors::node::Node,
    workers: Workers,
    metrics: Metrics,
) -> ChildSpec {
    service(
        "node-watch",
        "ends a worker's entries at once when its node disconnects",
        move || {
            let (events, workers, metrics) = (node.events(), workers.clone(), metrics.clone());
            async move {
                watch_disconnections(events, workers, metrics).await;
                Err("the node's session events ended".to_string())
            }
        },
    )
}

/// Declares lost the workers whose statuses stopped. Checks four times per time-out, so a
/// silent worker is noticed within 1.25 time-outs.
async fn check_heartbeats(workers: Workers, metrics: Metrics, timeout: Duration) {
    let mut every = tokio::time::interval(timeout / 4);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let lost = workers.expire(timeout);
        for name in &lost {
            metrics.worker_lost();
            tracing::warn!(worker = %name, silent_for = ?timeout, "worker lost: no status within the heartbeat time-out");
        }
        if !lost.is_empty() {
            metrics.set_workers(workers.live().len());
        }
    }
}

/// Ends the entries of worker nodes whose cluster session closed, at once (a gateway that
/// leaves while its node stays is being restarted, and keeps its entry for a while).
async fn watch_disconnections(
    mut events: tokio::sync::broadcast::Receiver<funless_actors::node::NodeEvent>,
    workers: Workers,
    metrics: Metrics,
) {
    use funless_actors::node::NodeEvent;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(NodeEvent::Disconnected {
                name: Some(name),
                authenticated: true,
                ..
            }) => {
                for entry in workers.node_down(&name) {
                    if entry.lost_since.is_none() {
                        metrics.worker_lost();
                    }
                    tracing::warn!(worker = %entry.name(), "worker left: its node disconnected");
                }
                metrics.set_workers(workers.live().len());
            }
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Adds a worker and asks for its first status in the background, again and again until it
/// answers (it is `joining` until then) or leaves.
fn admit(state: &mut RegistryState, cell: ActorCell) {
    let actor: ActorRef<WorkerMessage> = cell.into();
    state.workers.join(actor.clone());
    state.metrics.set_workers(state.workers.live().len());
    let workers = state.workers.clone();
    state.asking.spawn(async move {
        let id = actor.get_id();
        let mut pause = STATUS_RETRY_START;
        while workers.contains(id) {
            match actor
                .call(WorkerMessage::Status, Some(STATUS_TIMEOUT))
                .await
            {
                Ok(CallResult::Success(status)) => match Wire::into_inner(status) {
                    Ok(status) => {
                        tracing::info!(worker = %status.name, %id, memory_free = status.memory_free, "worker joined");
                        workers.set_status(id, status);
                        return;
                    }
                    Err(e) => {
                        tracing::error!(%id, error = %e, "worker answered an undecodable status")
                    }
                },
                Ok(_) => tracing::warn!(%id, retry_in = ?pause, "worker did not answer its status request in time; asking again"),
                Err(e) => tracing::warn!(%id, error = %e, retry_in = ?pause, "cannot ask a joining worker for its status; asking again"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(STATUS_RETRY_MAX);
        }
    });
}
