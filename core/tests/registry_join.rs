//! A worker whose first status exchange fails is asked again until it is `ready`: the Core's
//! registry does not leave it `joining` (and then `lost`) forever. In one process, with a
//! stand-in gateway that ignores its first status request.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use funless_actors::protocol::{CacheReport, WorkerMessage, WorkerStatus};
use funless_actors::{WORKER_GROUP, Wire};
use funless_core::CoreHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// Answers status requests from the second one on.
struct ShyGateway;

impl Actor for ShyGateway {
    type Msg = WorkerMessage;
    type State = Arc<AtomicUsize>;
    type Arguments = Arc<AtomicUsize>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        asked: Arc<AtomicUsize>,
    ) -> Result<Self::State, ActorProcessingErr> {
        ractor::pg::join(WORKER_GROUP.to_string(), vec![myself.get_cell()]);
        Ok(asked)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        asked: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let WorkerMessage::Status(reply) = message
            && asked.fetch_add(1, Ordering::SeqCst) > 0
        {
            let _ = reply.send(Wire::new(WorkerStatus {
                name: "shy".into(),
                memory_total: 1 << 30,
                memory_free: 1 << 29,
                in_flight: 0,
                slots_total: 0,
                slots_free: 0,
                cached: Vec::new(),
                cache: CacheReport::default(),
                allocator: "on-demand".into(),
                tags: Vec::new(),
                cpus: 1,
                cpu_load_permille: 0,
            }));
        }
        // The first request is dropped unanswered: the registry's call times out.
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_first_status_request_fails_is_asked_again_until_ready() {
    let dir = tempfile::tempdir().unwrap();
    // Long, so the worker is not declared lost while it is still joining.
    let core: CoreHandle = funless_core::start(common::config(
        dir.path(),
        "registry-join-test",
        Duration::from_secs(30),
    ))
    .await
    .unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let (_gateway, _) = Actor::spawn(None, ShyGateway, asked.clone()).await.unwrap();

    let state = || {
        core.workers
            .all()
            .first()
            .map(|e| e.state().to_string())
            .unwrap_or_default()
    };
    // The first request went unanswered: still joining.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while asked.load(Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never asked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state(), "joining");
    // The registry asks again and the worker becomes ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while state() != "ready" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {} after {} requests",
            state(),
            asked.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(asked.load(Ordering::SeqCst) >= 2);
    assert_eq!(core.workers.ready_count(), 1);
}
