//! The worker registry: follows the workers' process group (joins and leaves arrive as events,
//! also when a worker's node disconnects) and takes in the statuses workers push. It writes the
//! shared [`Workers`] table; nothing on the invocation path waits on this actor.

use std::time::Duration;

use funless_actors::protocol::{CoreMessage, WorkerMessage};
use funless_actors::{CORE_GROUP, WORKER_GROUP, Wire};
use ractor::pg::GroupChangeMessage;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::metrics::Metrics;
use crate::workers::Workers;

/// How long a joining worker has to answer its first status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The registry's state: its arguments and the heartbeat checker it owns.
#[derive(Debug)]
pub struct RegistryState {
    args: RegistryArgs,
    checker: tokio::task::JoinHandle<()>,
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
        // After a restart the table is rebuilt from the group's current members.
        for cell in ractor::pg::get_members(&WORKER_GROUP.to_string()) {
            admit(&args, cell);
        }
        let checker = tokio::spawn(check_heartbeats(
            args.workers.clone(),
            args.metrics.clone(),
            args.heartbeat_timeout,
        ));
        Ok(RegistryState { args, checker })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.checker.abort();
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
                }
                GroupChangeMessage::Leave(_, group, cells) if group == WORKER_GROUP => {
                    for cell in cells {
                        if let Some(entry) = state.workers.leave(cell.get_id()) {
                            if entry.lost_since.is_none() {
                                state.metrics.worker_lost();
                            }
                            tracing::warn!(worker = %entry.name(), "worker left");
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

/// Adds a worker and asks for its first status in the background.
fn admit(state: &RegistryArgs, cell: ActorCell) {
    let actor: ActorRef<WorkerMessage> = cell.into();
    state.workers.join(actor.clone());
    state.metrics.set_workers(state.workers.live().len());
    let workers = state.workers.clone();
    tokio::spawn(async move {
        let id = actor.get_id();
        match actor
            .call(WorkerMessage::Status, Some(STATUS_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(status)) => match Wire::into_inner(status) {
                Ok(status) => {
                    tracing::info!(worker = %status.name, %id, memory_free = status.memory_free, "worker joined");
                    workers.set_status(id, status);
                }
                Err(e) => tracing::error!(%id, error = %e, "worker answered an undecodable status"),
            },
            Ok(_) => tracing::warn!(%id, "worker did not answer its status request in time"),
            Err(e) => tracing::warn!(%id, error = %e, "cannot ask a joining worker for its status"),
        }
    });
}
