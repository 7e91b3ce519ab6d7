//! Node failures: a worker killed or frozen under load, and a Core restarted under a worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Worker, detail, example, wait_until};

/// One answered request: when it was sent relative to the fault, and its outcome.
#[derive(Debug)]
struct Answer {
    sent: Instant,
    took: Duration,
    status: StatusCode,
    body: Value,
}

/// `threads` clients invoking `sleep` (`ms` each) back to back until `stop` is set.
fn load(
    client: &Client,
    threads: usize,
    ms: u64,
    stop: &Arc<AtomicBool>,
) -> (Vec<thread::JoinHandle<()>>, Arc<Mutex<Vec<Answer>>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let handles = (0..threads)
        .map(|_| {
            let (client, stop, answers) = (client.clone(), stop.clone(), answers.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (status, body) = client.invoke("_", "sleep", json!({ "ms": ms }));
                    let took = sent.elapsed();
                    answers.lock().unwrap().push(Answer {
                        sent,
                        took,
                        status,
                        body,
                    });
                }
            })
        })
        .collect();
    (handles, answers)
}

fn finish(handles: Vec<thread::JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().unwrap();
    }
}

fn two_workers_with_sleep() -> (Core, Worker, Worker) {
    let core = Core::start(CoreOptions::default());
    let w1 = Worker::start("w1", &core);
    let w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let (status, body) = core
        .client()
        .upload("_", "sleep", example("sleep_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["workers"]["cached"],
        json!(["w1", "w2"]),
        "{body}"
    );
    (core, w1, w2)
}

#[test]
fn worker_killed_under_load_every_request_answered_and_it_rejoins() {
    let (core, mut w1, w2) = two_workers_with_sleep();
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, answers) = load(&core.client(), 6, 300, &stop);
    // Both workers busy before the fault.
    wait_until(Duration::from_secs(20), "load on both workers", || {
        w1.invocations_ok() >= 2.0 && w2.invocations_ok() >= 2.0
    });
    let killed_at = Instant::now();
    w1.process.kill();
    thread::sleep(Duration::from_secs(2));
    finish(handles, &stop);

    // Every request was answered (the client would have failed on a time-out); those sent
    // after the kill all succeeded on the survivor; those in flight were retried or got a
    // 503 saying the worker was lost.
    let answers = answers.lock().unwrap();
    let after: Vec<&Answer> = answers.iter().filter(|a| a.sent > killed_at).collect();
    assert!(
        after.len() >= 6,
        "too few requests after the kill: {}",
        after.len()
    );
    for a in &after {
        assert_eq!(a.status, StatusCode::OK, "sent after the kill: {}", a.body);
    }
    for a in answers.iter().filter(|a| a.sent <= killed_at) {
        assert!(
            a.status == StatusCode::OK
                || (a.status == StatusCode::SERVICE_UNAVAILABLE
                    && detail(&a.body).contains("lost")),
            "in flight at the kill: {} {}",
            a.status,
            a.body
        );
    }
    drop(answers);
    core.wait_for_workers(&["w2"]);

    // Restarted, w1 rejoins (warm from its disk cache) and gets work again.
    let w1 = w1.restart(&core);
    core.wait_for_workers(&["w1", "w2"]);
    let client = core.client();
    for _ in 0..6 {
        let (status, body) = client.invoke("_", "sleep", json!({ "ms": 1 }));
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        w1.invocations_ok() >= 1.0,
        "the restarted worker got no work"
    );
}

#[test]
fn frozen_worker_is_declared_lost_its_calls_answered_and_it_comes_back() {
    let (core, w1, w2) = two_workers_with_sleep();
    let stop = Arc::new(AtomicBool::new(false));
    let (handles, answers) = load(&core.client(), 4, 1500, &stop);
    wait_until(Duration::from_secs(20), "load on w1", || {
        w1.metric("funless_worker_in_flight") >= 1.0
    });
    let frozen_at = Instant::now();
    w1.process.signal("STOP");
    wait_until(Duration::from_secs(5), "w1 declared lost", || {
        core.worker_states()
            .contains(&("w1".to_string(), "lost".to_string()))
    });
    let noticed = frozen_at.elapsed();
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    // Load goes on, on w2 only, for a while.
    thread::sleep(Duration::from_secs(3));
    finish(handles, &stop);
    let answers = answers.lock().unwrap();
    assert!(!answers.is_empty());
    for a in answers.iter() {
        assert!(
            a.status == StatusCode::OK
                || (a.status == StatusCode::SERVICE_UNAVAILABLE
                    && detail(&a.body).contains("lost")),
            "{} {}",
            a.status,
            a.body
        );
        // Nothing waited for the frozen worker beyond the heartbeat time-out plus a retry.
        assert!(
            a.took < Duration::from_secs(8),
            "an answer took {:?}",
            a.took
        );
    }
    assert!(answers.iter().any(|a| a.status == StatusCode::OK));
    drop(answers);
    assert!(
        core.process
            .logs
            .contains("worker lost: no status within the heartbeat time-out")
    );

    // Thawed, it reports again, is ready again and gets work.
    w1.process.signal("CONT");
    core.wait_for_workers_within(&["w1", "w2"], Duration::from_secs(10));
    let before = w1.invocations_ok();
    let client = core.client();
    for _ in 0..6 {
        let (status, body) = client.invoke("_", "sleep", json!({ "ms": 1 }));
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        w1.invocations_ok() > before,
        "the thawed worker got no work"
    );
    drop(w2);
}

#[test]
fn restarted_core_is_rejoined_by_its_worker_and_serves_its_functions() {
    let core = Core::start(CoreOptions::default());
    let w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let (status, body) = core
        .client()
        .upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let core = core.restart(CoreOptions::default());
    let restarted = Instant::now();
    core.wait_for_workers_within(&["w1"], Duration::from_secs(5));
    let rejoined = restarted.elapsed();
    let (status, body) = core
        .client()
        .invoke("_", "hello", json!({ "name": "again" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello again!");
    // The worker still had the code: no compilation after the restart.
    assert_eq!(w1.metric("funless_worker_compilations_total"), 1.0);
    eprintln!("worker rejoined the restarted core after {rejoined:?}");
}

#[test]
fn a_function_marked_not_retryable_is_not_run_twice() {
    let core = Core::start(CoreOptions::default());
    let mut workers = [Worker::start("w1", &core), Worker::start("w2", &core)];
    core.wait_for_workers(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = client.upload_with(
        "_",
        "once",
        example("sleep_fl"),
        json!({ "retryable": false }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = client.get("/v1/fn/_/once");
    assert_eq!(body["data"]["metadata"]["retryable"], false);

    let call = {
        let client = client.clone();
        thread::spawn(move || client.invoke("_", "once", json!({ "ms": 5000 })))
    };
    let mut busy = None;
    wait_until(Duration::from_secs(20), "the call in flight", || {
        busy = workers
            .iter()
            .position(|w| w.metric("funless_worker_in_flight") >= 1.0);
        busy.is_some()
    });
    let started = Instant::now();
    workers[busy.unwrap()].process.kill();
    let (status, body) = call.join().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(detail(&body).contains("not retryable"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        started.elapsed()
    );
    // The survivor never ran it.
    let survivor = &workers[1 - busy.unwrap()];
    assert_eq!(survivor.invocations_ok(), 0.0);
}
