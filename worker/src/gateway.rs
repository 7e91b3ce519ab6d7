//! The worker's gateway: its one remotable actor, member of [`WORKER_GROUP`].
//!
//! The gateway only dispatches: every invocation and every compile runs in its own task, so no
//! request ever waits in this mailbox behind another one's work.

use std::sync::Arc;

use funless_actors::protocol::{CacheReply, InvokeError, InvokeReply, WorkerMessage};
use funless_actors::{WORKER_GROUP, Wire};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::runtime::Runtime;

/// The gateway actor; its state is the shared [`Runtime`].
#[derive(Debug)]
pub struct Gateway;

impl Actor for Gateway {
    type Msg = WorkerMessage;
    type State = Arc<Runtime>;
    type Arguments = Arc<Runtime>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        runtime: Arc<Runtime>,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(WORKER_GROUP.to_string(), vec![myself.get_cell()]);
        tracing::info!(worker = %runtime.name(), "worker gateway ready");
        Ok(runtime)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        runtime: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WorkerMessage::Invoke(request, reply) => {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    let answer = match request.into_inner() {
                        Ok(request) => runtime.invoke(request).await,
                        Err(e) => InvokeReply::Failed(InvokeError::Worker {
                            message: e.to_string(),
                        }),
                    };
                    // The caller may have given up (time-out); nothing to do then.
                    let _ = reply.send(Wire::new(answer));
                });
            }
            WorkerMessage::Cache(push, reply) => {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    let answer = match push.into_inner() {
                        Ok(push) => runtime.cache_code(push).await,
                        Err(e) => CacheReply::Failed {
                            reason: e.to_string(),
                        },
                    };
                    let _ = reply.send(Wire::new(answer));
                });
            }
            WorkerMessage::Evict(evict) => {
                if let Ok(evict) = evict.into_inner() {
                    runtime.evict(&evict.hashes);
                }
            }
            WorkerMessage::Status(reply) => {
                let _ = reply.send(Wire::new(runtime.status()));
            }
        }
        Ok(())
    }
}
