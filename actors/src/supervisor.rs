//! A one-for-one supervisor with a restart-intensity limit (ractor has linking but no restart
//! strategies; DESIGN.md §9).
//!
//! The supervisor starts its children linked to itself. When one fails (panics or returns an
//! error) or stops, only that child is started again, through the same start function, which
//! rebuilds its state from its arguments. More than `max_restarts` restarts within `within`
//! means something is persistently broken: the supervisor then stops itself, which escalates
//! to whoever watches it (for a node's root supervisor: the process exits with an error).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SpawnErr, SupervisionEvent};
use ractor_cluster::RactorMessage;

/// Starts a child linked to the given supervisor cell.
pub type StartFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// One supervised child.
#[derive(Clone)]
pub struct ChildSpec {
    /// Name used in logs.
    pub name: String,
    /// How to (re)start it.
    pub start: StartFn,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// The supervisor has no messages of its own: it only reacts to its children.
#[derive(Debug, RactorMessage)]
pub enum SupervisorMessage {}

/// How a supervisor starts.
#[derive(Debug)]
pub struct SupervisorArgs {
    /// Its children, started in order.
    pub children: Vec<ChildSpec>,
    /// Most restarts tolerated within `within`.
    pub max_restarts: usize,
    /// The window of the restart limit.
    pub within: Duration,
}

/// The supervisor actor.
#[derive(Debug)]
pub struct Supervisor;

/// The supervisor's state.
#[derive(Debug)]
pub struct SupervisorState {
    children: Vec<(ChildSpec, ActorCell)>,
    restarts: VecDeque<Instant>,
    max_restarts: usize,
    within: Duration,
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
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let cell = (spec.start)(myself.get_cell()).await?;
            tracing::debug!(child = %spec.name, "started");
            children.push((spec, cell));
        }
        Ok(SupervisorState {
            children,
            restarts: VecDeque::new(),
            max_restarts: args.max_restarts,
            within: args.within,
        })
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, format!("stopped: {}", reason.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        let Some(index) = state
            .children
            .iter()
            .position(|(_, c)| c.get_id() == cell.get_id())
        else {
            return Ok(());
        };
        let name = state.children[index].0.name.clone();
        let now = Instant::now();
        while state
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > state.within)
        {
            state.restarts.pop_front();
        }
        if state.restarts.len() >= state.max_restarts {
            tracing::error!(child = %name, %why, max = state.max_restarts, within = ?state.within, "restart limit reached; giving up");
            myself.stop(Some(format!("child {name} keeps failing")));
            return Ok(());
        }
        state.restarts.push_back(now);
        tracing::warn!(child = %name, %why, "restarting");
        let start = state.children[index].0.start.clone();
        let cell = start(myself.get_cell()).await?;
        state.children[index].1 = cell;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, RactorMessage)]
    enum CrashMessage {
        Crash,
    }

    struct Crasher;

    impl Actor for Crasher {
        type Msg = CrashMessage;
        type State = ();
        type Arguments = Arc<AtomicUsize>;

        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            starts: Arc<AtomicUsize>,
        ) -> Result<(), ActorProcessingErr> {
            starts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn handle(
            &self,
            _myself: ActorRef<Self::Msg>,
            _message: Self::Msg,
            _state: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            panic!("crash on purpose")
        }
    }

    fn spec(starts: Arc<AtomicUsize>, name: &'static str) -> ChildSpec {
        ChildSpec {
            name: name.into(),
            start: Arc::new(move |sup| {
                let starts = starts.clone();
                Box::pin(async move {
                    let (actor, _) =
                        Actor::spawn_linked(Some(name.to_string()), Crasher, starts, sup).await?;
                    Ok(actor.get_cell())
                })
            }),
        }
    }

    async fn until(what: impl Fn() -> bool) {
        for _ in 0..200 {
            if what() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn restarts_a_crashed_child_then_gives_up() {
        let starts = Arc::new(AtomicUsize::new(0));
        let (sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![spec(starts.clone(), "crasher-test")],
                max_restarts: 2,
                within: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        for expected in [2, 3] {
            until(|| ractor::registry::where_is("crasher-test").is_some()).await;
            let child: ActorRef<CrashMessage> =
                ractor::registry::where_is("crasher-test").unwrap().into();
            child.cast(CrashMessage::Crash).unwrap();
            until(|| starts.load(Ordering::SeqCst) == expected).await;
        }
        // The third crash within the window exceeds the limit: the supervisor stops.
        until(|| ractor::registry::where_is("crasher-test").is_some()).await;
        let child: ActorRef<CrashMessage> =
            ractor::registry::where_is("crasher-test").unwrap().into();
        child.cast(CrashMessage::Crash).unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        drop(sup);
    }
}
