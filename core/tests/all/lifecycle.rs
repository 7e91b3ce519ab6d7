//! Code lifecycle across real processes: broadcast on create, update and delete; the "no code"
//! path; disk-warm restarts; the memory-bounded cache.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, bin, example, wait_until};

/// Code hashes each worker reports holding in memory, by worker name.
fn cached(core: &Core) -> Vec<(String, Vec<String>)> {
    let (status, body) = core.admin().get("/v1/workers");
    assert_eq!(status, StatusCode::OK);
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let hashes = w["cached"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap().to_string())
                .collect();
            (w["name"].as_str().unwrap().to_string(), hashes)
        })
        .collect()
}

fn hash_of(body: &Value) -> String {
    body["data"]["hash"].as_str().unwrap().to_string()
}

#[test]
fn create_update_delete_reach_every_worker() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    let _w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let user = core.client();

    let (status, body) = user.upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["workers"]["cached"], json!(["w1", "w2"]));
    let v1 = hash_of(&body);
    wait_until(Duration::from_secs(5), "both workers to report v1", || {
        cached(&core).iter().all(|(_, h)| h == &vec![v1.clone()])
    });
    let (status, body) = user.invoke("_", "f", json!({"name": "v1"}));
    assert_eq!(
        (status, body["data"]["payload"].clone()),
        (StatusCode::OK, json!("Hello v1!"))
    );

    // Update to other code: every worker compiles v2 before the answer and keeps v1 (a kept
    // version: a rollback to it is warm) until its cache needs the room.
    let (status, body) = user.upload("_", "f", example("matrix_mult_fl"), true);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["workers"]["cached"], json!(["w1", "w2"]));
    let v2 = hash_of(&body);
    assert_ne!(v1, v2);
    wait_until(
        Duration::from_secs(5),
        "both workers to hold v1 and v2",
        || {
            cached(&core).iter().all(|(_, h)| {
                let mut h = h.clone();
                h.sort();
                let mut both = vec![v1.clone(), v2.clone()];
                both.sort();
                h == both
            })
        },
    );
    for _ in 0..6 {
        let (status, body) = user.invoke("_", "f", json!({"n": 3}));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["n"], 3, "old code answered: {body}");
    }

    // Delete: every version's code is gone from every worker's cache.
    let (status, _) = user.delete("/v1/fn/_/f");
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(5), "both caches to be empty", || {
        cached(&core).iter().all(|(_, h)| h.is_empty())
    });
}

#[test]
fn late_worker_gets_code_on_first_use_and_restarts_disk_warm() {
    let core = Core::start(CoreOptions::default());
    let mut w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let (status, body) = user.upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // w2 joins after the create and is the only worker left.
    let w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    w1.process.kill();
    core.wait_for_workers(&["w2"]);
    let (status, body) = user.invoke("_", "hello", json!({"name": "late"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        w2.metric(r#"funless_worker_invocations_total{source="compiled",outcome="ok"}"#),
        1.0
    );
    assert_eq!(w2.metric("funless_worker_compilations_total"), 1.0);

    // Restarted with its disk cache, w2 answers its first invocation without compiling.
    let w2 = w2.restart(&core);
    core.wait_for_workers(&["w2"]);
    let (status, body) = user.invoke("_", "hello", json!({"name": "again"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello again!");
    assert_eq!(w2.metric("funless_worker_compilations_total"), 0.0);
    assert_eq!(w2.metric("funless_worker_disk_loads_total"), 1.0);
    assert_eq!(
        w2.metric(r#"funless_worker_invocations_total{source="disk",outcome="ok"}"#),
        1.0
    );
    // And the second one is warm.
    let (status, _) = user.invoke("_", "hello", json!({}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        w2.metric(r#"funless_worker_invocations_total{source="memory",outcome="ok"}"#),
        1.0
    );
}

#[test]
fn cache_evicts_least_recently_used_under_its_threshold() {
    let core = Core::start(CoreOptions::default());
    // 1 MiB of compiled code, no disk cache: evicted code must come back through the Core.
    let w = Worker::start_with("small", &core, &["--cache-mb", "1", "--no-disk-cache"]);
    core.wait_for_workers(&["small"]);
    let user = core.client();

    let names = [
        "hello_fl",
        "hello_wasi",
        "sleep_fl",
        "sleep_wasi",
        "matrix_mult_fl",
        "matrix_mult_wasi",
        "fail_fl",
        "fail_wasi",
    ];
    let mut hashes = Vec::new();
    for name in names {
        let (status, body) = user.upload("_", name, example(name), false);
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hashes.push(hash_of(&body));
        // Keep hello_fl the most recently used.
        let (status, _) = user.invoke("_", "hello_fl", json!({}));
        assert_eq!(status, StatusCode::OK);
    }
    assert!(w.metric("funless_worker_cache_evictions_total") > 0.0);
    assert!(
        w.metric("funless_worker_cache_bytes") <= w.metric("funless_worker_cache_capacity_bytes")
    );
    wait_until(Duration::from_secs(5), "a fresh status", || {
        let held = &cached(&core)[0].1;
        held.first() == Some(&hashes[0]) || held.get(1) == Some(&hashes[0])
    });
    let held = cached(&core)[0].1.clone();
    assert!(
        held.contains(&hashes[0]),
        "the hot function was evicted: {held:?}"
    );
    assert!(
        !held.contains(&hashes[1]),
        "the least recently used was kept: {held:?}"
    );

    // The evicted function still runs: the worker answers "no code" and the Core sends it.
    let (status, body) = user.invoke("_", "hello_wasi", json!({"name": "back"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello back!");
}

/// SQLite keeps one Core's state: a second Core on the same store is refused with a clear
/// message while the first runs (which goes on serving), and starts once the first is gone.
#[test]
fn a_second_core_on_one_sqlite_store_is_refused() {
    let core = Core::start(CoreOptions::default());
    let mut command = std::process::Command::new(crate::harness::bin("funless-core"));
    command
        .arg("--data-dir")
        .arg(core.data_dir())
        .args(["--listen", "127.0.0.1:0", "--cluster-listen", "127.0.0.1"])
        .args(["--cluster-port", &crate::harness::free_port().to_string()])
        .args(["--cookie", &core.cookie]);
    let mut second = crate::harness::Process::spawn("second core", command);
    let exit = second.wait_exit(Duration::from_secs(30));
    assert!(
        matches!(exit, Some(code) if code != 0),
        "the second Core must exit with an error, not run or succeed: {exit:?}"
    );
    let logs = second.logs.text();
    assert!(
        logs.contains("another Core already runs on the SQLite store")
            && logs.contains("run several Cores over PostgreSQL"),
        "{logs}"
    );
    let (status, _) = core.client().get("/v1/fn");
    assert_eq!(status, StatusCode::OK, "the first Core still serves");
    // Killed (no clean shutdown), the first Core's claim goes with it.
    let core = core.restart(CoreOptions::default());
    let (status, _) = core.client().get("/v1/fn");
    assert_eq!(status, StatusCode::OK);
}

/// `fl` given several Cores goes to the next on a connection error: plain requests retry
/// there, uploads (whose body cannot be sent twice) go to the first Core that takes a
/// connection; with no Core reachable the error says so.
#[test]
fn fl_tries_the_next_core_on_a_connection_error() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    // A port nothing listens on: bound, then released.
    let dead = format!("http://127.0.0.1:{}", crate::harness::free_port());
    let hosts = format!("{dead},{}", core.url);
    let wasm = crate::harness::example_path("hello_fl");
    let (code, _, err) = core.fl(&[
        "--host",
        &hosts,
        "fn",
        "upload",
        "hello",
        wasm.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("fl: cannot reach {dead}")), "{err}");
    let (code, out, err) = core.fl(&["--host", &hosts, "fn", "invoke", "hello", "-a", "name=next"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Hello next!"), "{out}");
    assert!(
        err.contains(&format!("fl: cannot reach {dead}; trying {}", core.url)),
        "{err}"
    );
    let (code, _, err) = core.fl(&["--host", &format!("{dead},{dead}"), "fn", "list"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot reach FunLess at"), "{err}");
}

/// SQLite commits with `synchronous=NORMAL` unless told otherwise; a value that is neither
/// `normal` nor `full` stops the Core before it opens anything, naming the two.
#[test]
fn sqlite_sync_defaults_to_normal_and_refuses_other_values() {
    let out = std::process::Command::new(bin("funless-core"))
        .args(["--print-config", "--cookie", "c"])
        .env_remove("FUNLESS_SQLITE_SYNC")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sqlite-sync = \"normal\"  # default"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("funless-core"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--sqlite-sync", "always"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("possible values: normal, full"), "{err}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing was created"
    );
}
