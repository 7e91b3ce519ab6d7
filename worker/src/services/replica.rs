//! One replica of a service: an actor that owns the task running the program in Wasmtime.
//!
//! The task's end (the program exited, trapped, failed to compile) becomes the actor's stop;
//! the actor's end (stopped by the Core, killed by fault injection, its supervisor gone)
//! aborts the task, since the guard that holds it lives in the actor's state. A guest that
//! computes yields every epoch tick and one that sleeps waits on a timer, so the abort takes
//! effect within a tick. Whichever way the replica ends, its state's drop tells the Core how.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use funless_actors::protocol::{ReplicaExited, ReplicaStart};
use funless_actors::supervisor::TaskGuard;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use crate::runtime::Runtime;

/// The replica actor.
#[derive(Debug)]
pub(crate) struct Replica;

/// How a replica starts (cloned for every start: the Core sends a new incarnation for a
/// restart, so in practice once).
#[derive(Clone)]
pub(crate) struct ReplicaArgs {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) start: Arc<ReplicaStart>,
}

/// Its one message: the program ended (`true`: normally), and how.
#[derive(Debug, RactorMessage)]
pub(crate) enum ReplicaMessage {
    Exited(bool, String),
}

/// Reports the replica's end to the Core when dropped, with the outcome if the program's end
/// was seen, else as an abnormal end of the actor (stopped or killed).
struct ExitReport {
    runtime: Arc<Runtime>,
    start: Arc<ReplicaStart>,
    outcome: Option<(bool, String)>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let id = self.start.id.clone();
        let (normal, reason) = self
            .outcome
            .take()
            .unwrap_or_else(|| (false, "the replica was stopped or killed".into()));
        tracing::info!(replica = %id, normal, %reason, "service replica ended");
        // The exit leaves before the replica leaves the registry, so no report sent after it
        // can reach the Core first and make the replica look vanished.
        super::report_exit(ReplicaExited {
            worker: self.runtime.name().to_string(),
            id: id.clone(),
            normal,
            reason,
        });
        self.runtime.services().unregister(&id);
    }
}

/// The replica's state: its task (aborted on drop, first) and its exit report (sent on drop,
/// after).
pub(crate) struct ReplicaState {
    _task: TaskGuard,
    exit: ExitReport,
}

impl Actor for Replica {
    type Msg = ReplicaMessage;
    type State = ReplicaState;
    type Arguments = ReplicaArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ReplicaArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let registry = args.runtime.services();
        let ring = registry.ring(&args.start.id);
        registry.register(&args.start.id);
        tracing::info!(replica = %args.start.id, "service replica starting");
        let (runtime, start) = (args.runtime.clone(), args.start.clone());
        let task = tokio::spawn(async move {
            let (normal, reason) = AssertUnwindSafe(runtime.run_service(&start, ring))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| (false, "the replica's runner panicked".into()));
            let _ = myself.cast(ReplicaMessage::Exited(normal, reason));
        });
        Ok(ReplicaState {
            exit: ExitReport {
                runtime: args.runtime,
                start: args.start,
                outcome: None,
            },
            _task: TaskGuard(task),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ReplicaMessage::Exited(normal, reason) => {
                state.exit.outcome = Some((normal, reason.clone()));
                myself.stop(Some(reason));
            }
        }
        Ok(())
    }
}
