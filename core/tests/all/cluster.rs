//! A Core and Workers as separate processes joined over ractor_cluster.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, example, wait_until};

fn invoke_hello(core: &Core, name: &str, who: &str) {
    let (status, body) = core.client().invoke("_", name, json!({"name": who}));
    assert_eq!(status, StatusCode::OK, "{name}: {body}");
    assert_eq!(body, json!({"data": {"payload": format!("Hello {who}!")}}));
}

#[test]
fn one_core_two_workers_both_abis_and_either_worker_stopped() {
    let core = Core::start(CoreOptions::default());
    let mut w1 = Worker::start("w1", &core);
    let mut w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);

    let user = core.client();
    for (name, wasm) in [("hello_fl", "hello_fl"), ("hello_wasi", "hello_wasi")] {
        let (status, body) = user.upload("_", name, example(wasm), false);
        assert_eq!(status, StatusCode::CREATED, "{body}");
        // Both workers compiled the code before the answer.
        assert_eq!(
            body["data"]["workers"]["cached"],
            json!(["w1", "w2"]),
            "{body}"
        );
        assert_eq!(body["data"]["workers"]["failed"], json!([]));
    }
    for i in 0..5 {
        invoke_hello(&core, "hello_fl", &format!("fl{i}"));
        invoke_hello(&core, "hello_wasi", &format!("wasi{i}"));
    }

    // Stop w1: the Core sees it leave and everything runs on w2.
    w1.process.kill();
    core.wait_for_workers(&["w2"]);
    invoke_hello(&core, "hello_fl", "only w2");
    invoke_hello(&core, "hello_wasi", "only w2");

    // Restart w1 (empty cache), stop w2: w1 gets the code through the "no code" path.
    w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1", "w2"]);
    w2.process.kill();
    core.wait_for_workers(&["w1"]);
    invoke_hello(&core, "hello_fl", "only w1");
    invoke_hello(&core, "hello_wasi", "only w1");
    assert!(w1.process.running());
}

#[test]
fn worker_with_wrong_cookie_never_joins() {
    let core = Core::start(CoreOptions::default());
    let intruder = Worker::start_with_cookie("intruder", &core, "not-the-cookie");
    wait_until(Duration::from_secs(20), "the refusal in both logs", || {
        intruder.process.logs.contains("failed authentication")
            && core.process.logs.contains("failed authentication")
    });
    // It keeps trying, and keeps being refused; the Core keeps serving.
    std::thread::sleep(Duration::from_secs(1));
    assert!(core.worker_names().is_empty());
    let (status, _) = core.client().get("/v1/fn");
    assert_eq!(status, StatusCode::OK);
    // A worker with the right cookie still joins.
    let _good = Worker::start("good", &core);
    core.wait_for_workers(&["good"]);
}

#[test]
fn a_worker_can_read_the_cookie_from_a_file() {
    let core = Core::start(CoreOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cookie");
    std::fs::write(&file, format!("{}\n", core.cookie)).unwrap();
    let _w = Worker::start_with("filed", &core, &["--cookie-file", file.to_str().unwrap()]);
    core.wait_for_workers(&["filed"]);
}
