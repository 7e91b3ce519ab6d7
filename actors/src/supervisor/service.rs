//! A long-running task as a supervised actor: a server loop, a connector, a discovery loop.
//!
//! The actor owns the task: the task's end (it returned, failed or panicked) becomes the
//! actor's exit, seen by its supervisor, and the actor's end (stopped, failed, killed) aborts
//! the task, since the guard that holds it is dropped with the actor's state. Nothing outlives
//! its owner, which a bare `tokio::spawn` cannot promise.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::{ChildSpec, StartFn};

/// Makes the task's future afresh at every (re)start.
pub type Job =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The service actor.
#[derive(Debug)]
pub struct Service;

/// What a service's task reports when it ends.
#[derive(Debug, RactorMessage)]
pub enum ServiceMessage {
    /// The task returned (`Ok`: finished, `Err`: failed) or panicked (`Err`).
    Exited(Result<(), String>),
}

/// Aborts a task when dropped: kept in an actor's state, it ends the task with the actor,
/// however the actor ended (ractor skips `post_stop` after a failure or a kill, but always
/// drops the state).
#[derive(Debug)]
pub struct TaskGuard(pub tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Actor for Service {
    type Msg = ServiceMessage;
    type State = TaskGuard;
    type Arguments = Job;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        job: Job,
    ) -> Result<Self::State, ActorProcessingErr> {
        let future = job();
        let task = tokio::spawn(async move {
            let outcome = AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&*panic))));
            let _ = myself.cast(ServiceMessage::Exited(outcome));
        });
        Ok(TaskGuard(task))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _task: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ServiceMessage::Exited(Ok(())) => {
                myself.stop(Some("finished".into()));
                Ok(())
            }
            ServiceMessage::Exited(Err(e)) => Err(e.into()),
        }
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".into()
    }
}

/// A permanent child running `job` as a [`Service`].
pub fn service<F, Fut>(name: impl Into<String>, role: impl Into<String>, job: F) -> ChildSpec
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let job: Job = Arc::new(move || Box::pin(job()));
    let start: StartFn = Arc::new(move |parent| {
        let job = job.clone();
        Box::pin(async move {
            let (actor, _) = Actor::spawn_linked(None, Service, job, parent).await?;
            Ok(actor.get_cell())
        })
    });
    ChildSpec::worker(name, role, start)
}
