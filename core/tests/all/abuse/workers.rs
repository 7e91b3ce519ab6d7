//! Workers under abuse: calls past every free instance slot, uploads while a worker is frozen,
//! bursts of cold uploads against the compiler cap, and retries when many workers die at once.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example, wait_until};

/// `code` with a custom section holding `n`: a new code hash, the same behaviour.
fn variant(code: &[u8], n: u32) -> Vec<u8> {
    let name = b"variant";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = code.to_vec();
    out.push(0);
    out.push(u8::try_from(size).unwrap());
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn calls_past_every_free_instance_slot_are_503_never_a_trap() {
    // One subject fills every slot here: its own quota of calls in flight is lifted.
    let core = Core::start(CoreOptions {
        extra: vec![
            "--max-timeout-ms".into(),
            "60000".into(),
            "--quota-concurrent-invocations".into(),
            "0".into(),
        ],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start_with("w1", &core, &["--pool-slots", "1000"]);
    let _w2 = Worker::start_with("w2", &core, &["--pool-slots", "1000"]);
    core.wait_for_workers(&["w1", "w2"]);
    let (_, listed) = core.admin().get("/v1/workers");
    for worker in listed["data"].as_array().unwrap() {
        assert_eq!(worker["allocator"], "pooling (1000 slots)", "{listed}");
    }
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "timeout_ms": 30000 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // 2,000 asynchronous sleeps fill both workers' 1,000 slots.
    let started = Instant::now();
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| {
                        let (status, body) = user.post_json(
                            "/v1/fn/_/sleep?blocking=false",
                            &json!({ "args": { "ms": 10000 } }),
                        );
                        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
                        body["data"]["activation_id"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<String>>()
            })
        })
        .collect();
    let ids: Vec<String> = senders
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    assert_eq!(ids.len(), 2000);
    // Wait for all of them to be running (the Core has sent them all).
    wait_until(Duration::from_secs(20), "2,000 calls in flight", || {
        let (_, body) = core.admin().get("/v1/workers");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["in_flight"].as_u64().unwrap())
            .sum::<u64>()
            == 2000
    });
    // While they sleep, every further call is a 503 that says why.
    for _ in 0..20 {
        let (status, body) = user.invoke("_", "sleep", json!({ "ms": 1 }));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(detail(&body).contains("instance slot"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleeps ended before the check ({:?}): the test proves nothing",
        started.elapsed()
    );
    // And every one of the 2,000 ran to its end: none was refused as a trap.
    let mut outcomes: Vec<Value> = Vec::new();
    wait_until(Duration::from_secs(60), "the sleeps to end", || {
        outcomes = ids
            .iter()
            .map(|id| user.get(&format!("/v1/activations/{id}")).1["data"].clone())
            .collect();
        outcomes.iter().all(|a| a["status"] != "running")
    });
    let failed: Vec<&Value> = outcomes
        .iter()
        .filter(|a| a["status"] != "success")
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {}",
        failed.len(),
        failed[0]
    );
}

#[test]
fn an_upload_with_a_frozen_worker_answers_within_the_heartbeat_timeout() {
    let core = Core::start(CoreOptions {
        extra: vec!["--heartbeat-timeout-ms".into(), "2000".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start("w1", &core);
    let w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    w2.process.signal("STOP");
    let started = Instant::now();
    let (status, body) = core
        .client()
        .upload("_", "hello", example("hello_fl"), false);
    let took = started.elapsed();
    w2.process.signal("CONT");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    let report = &body["data"]["workers"];
    assert_eq!(report["cached"], json!(["w1"]), "{body}");
    assert_eq!(report["failed"][0]["worker"], "w2", "{body}");
    assert_eq!(report["failed"][0]["reason"], "worker lost", "{body}");
}

/// Compiler children of a process running now.
fn compiler_children(parent: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let path = e.path();
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(parent)
                && std::fs::read(path.join("cmdline"))
                    .unwrap_or_default()
                    .windows(9)
                    .any(|w| w == b"__compile")
        })
        .count()
}

#[test]
fn a_burst_of_cold_uploads_runs_at_most_the_capped_compilers() {
    let core = Core::start(CoreOptions::default());
    let worker = Worker::start_with("w1", &core, &["--compile-concurrency", "2"]);
    core.wait_for_workers(&["w1"]);
    let pid = worker.process.pid();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(compiler_children(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            most
        })
    };
    let code = example("hello_fl");
    let uploads: Vec<_> = (0..10)
        .map(|i| {
            let (user, code) = (core.client(), variant(&code, i));
            std::thread::spawn(move || user.upload("_", &format!("hello{i}"), code, false))
        })
        .collect();
    for upload in uploads {
        let (status, body) = upload.join().unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["data"]["workers"]["cached"], json!(["w1"]), "{body}");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.join().unwrap();
    assert!((1..=2).contains(&most), "{most} compilers at once");
}

#[test]
fn a_retryable_call_survives_losing_several_workers_at_once() {
    let core = Core::start(CoreOptions::default());
    let mut doomed: Vec<Worker> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| Worker::start(name, &core))
        .collect();
    core.wait_for_workers(&["w1", "w2", "w3"]);
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "retryable": true, "timeout_ms": 20000 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Calls are under way on all three; then two of them die at once, and a fresh worker
    // joins. Retries go on (to the other dead one, if its loss is not known yet, then on).
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || user.invoke("_", "sleep", json!({ "ms": 1500 })))
        })
        .collect();
    wait_until(Duration::from_secs(10), "calls on every worker", || {
        doomed
            .iter()
            .all(|w| w.metric("funless_worker_in_flight") >= 1.0)
    });
    let _w4 = Worker::start("w4", &core);
    for worker in doomed.iter_mut().take(2) {
        worker.process.kill();
    }
    for call in calls {
        let (status, body) = call.join().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
