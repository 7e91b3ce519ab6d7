//! The Core's registry (its one supervised, long-running actor) crashing in a live Core: the
//! supervisor restarts it, the new registry follows the workers' group again (a worker joining
//! afterwards is admitted) and invocations go on. In one process, with in-process workers.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use funless_actors::CORE_GROUP;
use funless_api::types::FunctionMetadata;
use funless_api::{Backend, FunctionUpload};
use funless_core::CoreHandle;
use funless_worker::RuntimeConfig;

const ECHO: &str = r#"(module
  (import "fl_imps" "__get_input_data" (func $get (param i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__invoke") (param $len i32) (result i32)
    (call $get (i32.const 0))
    (call $resp (i32.const 0) (local.get $len))
    (i32.const 0)))"#;

async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn registry_ids() -> Vec<ractor::ActorId> {
    ractor::pg::get_members(&CORE_GROUP.to_string())
        .iter()
        .map(|cell| cell.get_id())
        .collect()
}

async fn worker(name: &str) -> funless_worker::WorkerHandle {
    funless_worker::start(
        RuntimeConfig {
            name: name.into(),
            ..RuntimeConfig::default()
        },
        Duration::from_millis(100),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_registry_is_restarted_and_the_core_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let core: CoreHandle = funless_core::start(common::config(
        dir.path(),
        "registry-test",
        Duration::from_secs(3),
    ))
    .await
    .unwrap();
    let _w1 = worker("w1").await;
    until("w1 ready", || core.workers.ready_count() == 1).await;

    let config = std::fs::read_to_string(dir.path().join("fl-config.toml")).unwrap();
    let token = config
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let who = core.platform.authenticate(&token).await.unwrap();
    let upload = FunctionUpload {
        language: None,
        name: "echo".into(),
        code: wat::parse_str(ECHO).unwrap().into(),
        metadata: FunctionMetadata::default(),
        events: None,
        sinks: None,
        wait_for_workers: true,
        canary: None,
    };
    core.platform
        .create_function(&who, "_", upload)
        .await
        .unwrap();

    // Crash the registry.
    let before = registry_ids();
    assert_eq!(before.len(), 1);
    ractor::pg::get_members(&CORE_GROUP.to_string())[0].kill();
    until("a new registry", || {
        let now = registry_ids();
        now.len() == 1 && now != before
    })
    .await;

    // The new one follows the group: a worker joining now is admitted and gets a status.
    let _w2 = worker("w2").await;
    until("w2 ready", || core.workers.ready_count() == 2).await;
    for _ in 0..4 {
        let ran = core
            .platform
            .invoke(&who, "_", "echo", None, r#"{"n":1}"#.into(), None)
            .await
            .unwrap();
        assert_eq!(ran.output_json.as_str(), r#"{"n":1}"#);
    }
    assert!(!core.supervisor_done.is_finished());
}
