//! One replica of a service: an actor that owns the task running the program in Wasmtime.
//!
//! The task's end (the program exited, trapped, failed to compile) becomes the actor's stop;
//! the actor's end (stopped by the Core, killed by fault injection, its supervisor gone)
//! aborts the task, since the guard that holds it lives in the actor's state. A guest that
//! computes yields every epoch tick and one that sleeps waits on a timer, so the abort takes
//! effect within a tick. Whichever way the replica ends, its state's drop tells the Core how.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funless_actors::protocol::{ReplicaExited, ReplicaStart};
use funless_actors::supervisor::TaskGuard;
use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::StopSignal;
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

/// Its one message: the program ended, and how (the outcome itself is kept for the exit
/// report).
#[derive(Debug, RactorMessage)]
pub(crate) enum ReplicaMessage {
    Exited(String),
}

/// How the program ended, once it did (set by the task that runs it).
type Outcome = Arc<Mutex<Option<(bool, String)>>>;

/// Reports the replica's end to the Core when dropped, with the outcome if the program's end
/// was seen, else as an abnormal end of the actor (stopped or killed).
struct ExitReport {
    runtime: Arc<Runtime>,
    start: Arc<ReplicaStart>,
    outcome: Outcome,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let id = self.start.id.clone();
        let (normal, reason) = self
            .outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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

/// The replica's state: its task (aborted on drop, first), its exit report (sent on drop,
/// after), and its stop signal with the grace period it gives.
pub(crate) struct ReplicaState {
    task: TaskGuard,
    _exit: ExitReport,
    stop: StopSignal,
    grace: Duration,
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
        let stop = StopSignal::default();
        registry.register(&args.start.id, stop.clone());
        tracing::info!(replica = %args.start.id, "service replica starting");
        let (runtime, start) = (args.runtime.clone(), args.start.clone());
        let outcome = Outcome::default();
        let (seen, stdin) = (outcome.clone(), stop.clone());
        // A replica runs as long as it lives: on the compute pool, off the node's thread.
        let task = args.runtime.compute().handle().spawn(async move {
            let (normal, reason) = AssertUnwindSafe(runtime.run_service(&start, ring, stdin))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| (false, "the replica's runner panicked".into()));
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((normal, reason.clone()));
            // The actor's stop follows; its exit report reads the outcome.
            let _ = myself.cast(ReplicaMessage::Exited(reason));
        });
        Ok(ReplicaState {
            task: TaskGuard(task),
            _exit: ExitReport {
                runtime: args.runtime,
                start: args.start.clone(),
                outcome,
            },
            stop,
            grace: Duration::from_millis(args.start.stop_grace_ms),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ReplicaMessage::Exited(reason) => myself.stop(Some(reason)),
        }
        Ok(())
    }

    /// Asked to stop (not killed): the program's stdin closes, and it has its grace period to
    /// end by itself before the task is aborted with the state.
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.task.0.is_finished() {
            state.stop.fire();
            let _ = tokio::time::timeout(state.grace, &mut state.task.0).await;
        }
        Ok(())
    }
}
