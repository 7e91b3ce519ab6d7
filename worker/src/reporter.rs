//! Pushes the worker's status to the Core's registry (members of [`CORE_GROUP`]) every
//! interval, so the scheduler works from live numbers without polling.

use std::sync::Arc;
use std::time::Duration;

use funless_actors::protocol::CoreMessage;
use funless_actors::supervisor::TaskGuard;
use funless_actors::{CORE_GROUP, Wire};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use crate::runtime::Runtime;

/// Messages of the reporter.
#[derive(Debug, RactorMessage)]
pub enum ReporterMessage {
    /// Push the status now.
    Report,
}

/// The reporter actor.
#[derive(Debug)]
pub struct Reporter;

/// How the reporter starts.
#[derive(Debug, Clone)]
pub struct ReporterArgs {
    /// The runtime whose status is reported.
    pub runtime: Arc<Runtime>,
    /// Interval between pushes.
    pub every: Duration,
}

impl Actor for Reporter {
    type Msg = ReporterMessage;
    type State = (Arc<Runtime>, TaskGuard);
    type Arguments = ReporterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ReporterArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        myself.send_interval(args.every, || ReporterMessage::Report);
        // Also report as soon as the cached code changes, so the Core's view is fresh when
        // an upload answers.
        // The watch task is owned by this actor: it ends with it, however it ends.
        let runtime = args.runtime.clone();
        let me = myself.clone();
        let watch = TaskGuard(tokio::spawn(async move {
            loop {
                runtime.changed().await;
                if me.cast(ReporterMessage::Report).is_err() {
                    break;
                }
            }
        }));
        Ok((args.runtime, watch))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        (runtime, _watch): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ReporterMessage::Report => {
                push_status(runtime);
                crate::services::push_report(runtime);
            }
        }
        Ok(())
    }
}

/// Sends the current status to every Core registry this node knows.
pub fn push_status(runtime: &Runtime) {
    let status = runtime.status();
    for cell in ractor::pg::get_members(&CORE_GROUP.to_string()) {
        let core: ActorRef<CoreMessage> = cell.into();
        if let Err(e) = core.cast(CoreMessage::Status(Wire::new(status.clone()))) {
            tracing::debug!(error = %e, "cannot push status to a core");
        }
    }
}
