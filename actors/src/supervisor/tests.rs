#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorMessage;

use super::*;

#[derive(Debug, RactorMessage)]
enum TestMessage {
    Panic,
    Stop,
}

/// Counts its starts; panics or stops on request.
struct Counted;

impl Actor for Counted {
    type Msg = TestMessage;
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
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TestMessage::Panic => panic!("crash on purpose"),
            TestMessage::Stop => myself.stop(None),
        }
        Ok(())
    }
}

/// A child named `name` in the tree, registered as `registered` (unique in the test binary)
/// so a test can message it.
fn counted(name: &str, starts: &Arc<AtomicUsize>) -> ChildSpec {
    let starts = starts.clone();
    let registered = format!("{name}-{}", UNIQUE.fetch_add(1, Ordering::SeqCst));
    ChildSpec::worker(
        name,
        "test child",
        Arc::new(move |parent| {
            let (starts, registered) = (starts.clone(), registered.clone());
            Box::pin(async move {
                let (actor, _) =
                    Actor::spawn_linked(Some(registered), Counted, starts, parent).await?;
                Ok(actor.get_cell())
            })
        }),
    )
}

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

async fn until(what: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !what() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn tree(sup: &ActorRef<SupervisorMessage>) -> TreeNode {
    ractor::call_t!(sup, SupervisorMessage::Describe, 2000).unwrap()
}

async fn crash(sup: &ActorRef<SupervisorMessage>, path: &str) -> Result<String, String> {
    ractor::call_t!(sup, SupervisorMessage::Crash, 2000, path.to_string()).unwrap()
}

fn args(strategy: Strategy, children: Vec<ChildSpec>, max_restarts: usize) -> SupervisorArgs {
    SupervisorArgs {
        name: "root".into(),
        role: "test".into(),
        strategy,
        children,
        max_restarts,
        within: Duration::from_secs(60),
    }
}

/// The running child named `name` of `sup`.
async fn child(sup: &ActorRef<SupervisorMessage>, name: &str) -> ActorRef<TestMessage> {
    let prefix = format!("{name}-");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = sup.get_children().into_iter().find(|c| {
            c.get_status() == ractor::ActorStatus::Running
                && c.get_name().is_some_and(|n| n.starts_with(&prefix))
        });
        if let Some(cell) = found {
            return cell.into();
        }
        assert!(tokio::time::Instant::now() < deadline, "no {name}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn one_for_one_restarts_a_panicked_child_then_escalates_past_its_intensity() {
    let starts = Arc::new(AtomicUsize::new(0));
    let (sup, handle) = Actor::spawn(
        None,
        Supervisor,
        args(Strategy::OneForOne, vec![counted("a", &starts)], 2),
    )
    .await
    .unwrap();
    for expected in [2, 3] {
        child(&sup, "a").await.cast(TestMessage::Panic).unwrap();
        until(|| starts.load(Ordering::SeqCst) == expected).await;
    }
    let described = tree(&sup).await;
    assert_eq!(described.children[0].restarts, 2);
    assert_eq!(described.strategy.as_deref(), Some("one_for_one"));
    // The third crash within the window exceeds the intensity: the supervisor fails.
    child(&sup, "a").await.cast(TestMessage::Panic).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
    assert_eq!(starts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn rest_for_one_restarts_the_later_siblings_only() {
    let (a, b, c) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::RestForOne,
            vec![counted("a", &a), counted("b", &b), counted("c", &c)],
            5,
        ),
    )
    .await
    .unwrap();
    assert_eq!(crash(&sup, "b").await.unwrap(), "root/b");
    until(|| b.load(Ordering::SeqCst) == 2 && c.load(Ordering::SeqCst) == 2).await;
    assert_eq!(a.load(Ordering::SeqCst), 1);
    let described = tree(&sup).await;
    let names: Vec<_> = described.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(described.children.iter().all(|c| c.state == "running"));
    sup.stop(None);
}

#[tokio::test]
async fn restart_types_decide_which_exits_are_restarted() {
    let (t, p, tmp) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::OneForOne,
            vec![
                counted("transient", &t).with_restart(Restart::Transient),
                counted("permanent", &p),
                counted("temporary", &tmp).with_restart(Restart::Temporary),
            ],
            10,
        ),
    )
    .await
    .unwrap();
    // A transient child that crashes is restarted; one that stops normally is not.
    crash(&sup, "transient").await.unwrap();
    until(|| t.load(Ordering::SeqCst) == 2).await;
    child(&sup, "transient")
        .await
        .cast(TestMessage::Stop)
        .unwrap();
    // A permanent child is restarted even after a normal stop.
    child(&sup, "permanent")
        .await
        .cast(TestMessage::Stop)
        .unwrap();
    until(|| p.load(Ordering::SeqCst) == 2).await;
    // A temporary child is never restarted.
    crash(&sup, "temporary").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names: Vec<String> = tree(&sup)
            .await
            .children
            .into_iter()
            .map(|c| c.name)
            .collect();
        if names == ["permanent"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "left: {names:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(t.load(Ordering::SeqCst), 2);
    assert_eq!(tmp.load(Ordering::SeqCst), 1);
    sup.stop(None);
}

#[tokio::test]
async fn children_are_added_removed_and_crashed_through_nested_supervisors() {
    let inner_starts = Arc::new(AtomicUsize::new(0));
    let (sup, _) = Actor::spawn(
        None,
        Supervisor,
        args(
            Strategy::OneForOne,
            vec![ChildSpec::supervisor("inner", "dynamic children", || {
                Box::pin(async {
                    Ok(SupervisorArgs {
                        name: "inner".into(),
                        role: "dynamic children".into(),
                        strategy: Strategy::OneForOne,
                        children: Vec::new(),
                        max_restarts: 5,
                        within: Duration::from_secs(10),
                    })
                })
            })],
            5,
        ),
    )
    .await
    .unwrap();
    let inner: ActorRef<SupervisorMessage> = sup.get_children()[0].clone().into();
    ractor::call_t!(
        inner,
        SupervisorMessage::StartChild,
        2000,
        counted("x", &inner_starts)
    )
    .unwrap()
    .unwrap();
    let described = tree(&sup).await;
    assert_eq!(described.children[0].kind, "supervisor");
    assert_eq!(described.children[0].children[0].name, "x");
    assert_eq!(crash(&sup, "inner/x").await.unwrap(), "root/inner/x");
    until(|| inner_starts.load(Ordering::SeqCst) == 2).await;
    assert!(crash(&sup, "inner/nothing").await.is_err());
    assert!(crash(&sup, "x").await.is_err());
    assert!(ractor::call_t!(inner, SupervisorMessage::StopChild, 2000, "x".to_string()).unwrap());
    assert!(tree(&sup).await.children[0].children.is_empty());
    sup.stop(None);
}

#[tokio::test]
async fn a_service_restarts_when_its_task_fails_and_its_task_dies_with_it() {
    let runs = Arc::new(AtomicUsize::new(0));
    let alive = Arc::new(AtomicUsize::new(0));
    let (r, a) = (runs.clone(), alive.clone());
    let spec = service("loop", "test loop", move || {
        let (runs, alive) = (r.clone(), a.clone());
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                return Err("first run fails".to_string());
            }
            struct Alive(Arc<AtomicUsize>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            alive.fetch_add(1, Ordering::SeqCst);
            let _alive = Alive(alive);
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let (sup, _) = Actor::spawn(None, Supervisor, args(Strategy::OneForOne, vec![spec], 5))
        .await
        .unwrap();
    until(|| runs.load(Ordering::SeqCst) == 2 && alive.load(Ordering::SeqCst) == 1).await;
    assert_eq!(tree(&sup).await.children[0].restarts, 1);
    // Killing the service actor aborts its task (no task outlives its owner).
    crash(&sup, "loop").await.unwrap();
    until(|| runs.load(Ordering::SeqCst) == 3).await;
    until(|| alive.load(Ordering::SeqCst) == 1).await;
    sup.stop(None);
    until(|| alive.load(Ordering::SeqCst) == 0).await;
}

/// Records the thread each start ran on; panics on request.
struct Placed;

impl Actor for Placed {
    type Msg = TestMessage;
    type State = ();
    type Arguments = Arc<std::sync::Mutex<Vec<String>>>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        threads: Self::Arguments,
    ) -> Result<(), ActorProcessingErr> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        threads.lock().unwrap().push(name);
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TestMessage::Panic => panic!("crash on purpose"),
            TestMessage::Stop => Ok(()),
        }
    }
}

#[tokio::test]
async fn a_child_on_another_runtime_starts_and_restarts_there_under_its_supervisor() {
    let elsewhere = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("elsewhere")
        .enable_all()
        .build()
        .unwrap();
    let threads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let registered = format!("placed-{}", UNIQUE.fetch_add(1, Ordering::SeqCst));
    let spec = {
        let threads = threads.clone();
        ChildSpec::worker(
            "placed",
            "test child",
            Arc::new(move |parent| {
                let (threads, registered) = (threads.clone(), registered.clone());
                Box::pin(async move {
                    let (actor, _) =
                        Actor::spawn_linked(Some(registered), Placed, threads, parent).await?;
                    Ok(actor.get_cell())
                })
            }),
        )
        .on_runtime(elsewhere.handle().clone())
    };
    let (sup, _) = Actor::spawn(None, Supervisor, args(Strategy::OneForOne, vec![spec], 5))
        .await
        .unwrap();
    until(|| threads.lock().unwrap().len() == 1).await;
    // The supervisor restarts a crashed child on the child's runtime, not its own.
    child(&sup, "placed")
        .await
        .cast(TestMessage::Panic)
        .unwrap();
    until(|| threads.lock().unwrap().len() == 2).await;
    assert_eq!(*threads.lock().unwrap(), ["elsewhere", "elsewhere"]);
    assert_eq!(tree(&sup).await.children[0].restarts, 1);
    sup.stop(None);
    elsewhere.shutdown_background();
}
