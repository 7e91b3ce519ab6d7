//! Data sinks: every result reaches a local HTTP collector (as a webhook and as CouchDB with
//! Basic auth); while the collector is down results wait and are retried, invocations still
//! answer at once, and everything arrives, in order, once it is back. Results waiting for a
//! sink outlive the Core that queued them: killed with `kill -9`, it or another Core sharing
//! its store delivers them.

use std::time::{Duration, Instant};

use funless_testkit::{Collector, Received};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, TempDatabase, Worker, detail, example, wait_until};

#[test]
fn results_reach_the_sinks_and_wait_while_a_sink_is_down() {
    let received = Received::default();
    let collector = Collector::start(0, received.clone());
    let port = collector.port;
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let sinks = json!([
        { "type": "webhook", "params": { "url": format!("http://127.0.0.1:{port}/hook") } },
        { "type": "couchdb", "params": {
            "url": format!("http://127.0.0.1:{port}/results"), "username": "edge", "password": "s3cret" } },
    ]);
    let (status, body) = user.upload_with_sinks("_", "hello", example("hello_fl"), sinks);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for i in 0..3 {
        let (status, _) = user.invoke("_", "hello", json!({ "name": format!("up{i}") }));
        assert_eq!(status, StatusCode::OK);
    }
    wait_until(Duration::from_secs(10), "6 deliveries", || {
        received.lock().unwrap().len() == 6
    });
    let first: Value = serde_json::from_slice(&collector.bodies()[0]).unwrap();
    assert!(
        first["payload"].as_str().unwrap().starts_with("Hello up"),
        "{first}"
    );
    let with_auth = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(auth, _)| auth.as_deref() == Some("Basic ZWRnZTpzM2NyZXQ="))
        .count();
    assert_eq!(with_auth, 3, "the couchdb sink authenticates");

    // The collector goes down: invocations answer as fast as before; results wait.
    drop(collector);
    let mut slowest = Duration::ZERO;
    for i in 0..4 {
        let started = Instant::now();
        let (status, _) = user.invoke("_", "hello", json!({ "name": format!("down{i}") }));
        assert_eq!(status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    wait_until(Duration::from_secs(10), "failed attempts to show", || {
        let (_, body) = user.get("/v1/fn/_/hello");
        body["data"]["sinks"][0]["failed_attempts"].as_u64() > Some(0)
    });
    let (_, body) = user.get("/v1/fn/_/hello");
    assert_eq!(body["data"]["sinks"][0]["pending"], 4, "{body}");
    assert!(body["data"]["sinks"][0]["last_error"].is_string(), "{body}");

    // Back on the same port: everything arrives, in order.
    let collector = Collector::start(port, received.clone());
    wait_until(Duration::from_secs(40), "the waiting results", || {
        received.lock().unwrap().len() == 14
    });
    let webhook: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(auth, _)| auth.is_none())
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["payload"].to_string())
        .collect();
    assert_eq!(
        webhook[3..],
        [
            "\"Hello down0!\"",
            "\"Hello down1!\"",
            "\"Hello down2!\"",
            "\"Hello down3!\""
        ]
    );
    let (_, body) = user.get("/v1/fn/_/hello");
    assert_eq!(body["data"]["sinks"][0]["delivered"], 7, "{body}");
    assert_eq!(body["data"]["sinks"][0]["pending"], 0, "{body}");
    drop(collector);

    // A bad sink is refused at upload.
    let bad = json!([{ "type": "s3", "params": {} }]);
    let (status, body) = user.upload_with_sinks("_", "bad", example("hello_fl"), bad);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("unknown sink type"), "{body}");
}

/// The payloads the collector received, in order (a result may arrive twice: at least once).
fn payloads(received: &Received) -> Vec<String> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            let value: Value = serde_json::from_slice(body).unwrap();
            value["payload"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// A port nothing listens on, for a sink that is down until a collector starts on it.
fn down_sink(received: &Received) -> u16 {
    Collector::start(0, received.clone()).port
}

/// On SQLite (one Core): results queued while their sink is down are in the store, so a Core
/// killed with `kill -9` and started again on its data delivers them once the sink is back.
#[test]
fn results_waiting_for_a_sink_outlive_a_killed_core() {
    let received = Received::default();
    let port = down_sink(&received);
    let options = || CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    };
    let core = Core::start(options());
    core.wait_for_workers(&["embedded"]);
    let sinks = json!([{ "type": "webhook", "params": { "url": format!("http://127.0.0.1:{port}/hook") } }]);
    let (status, body) = core
        .client()
        .upload_with_sinks("_", "hello", example("hello_fl"), sinks);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for i in 0..3 {
        let (status, _) = core
            .client()
            .invoke("_", "hello", json!({ "name": format!("k{i}") }));
        assert_eq!(status, StatusCode::OK);
    }
    wait_until(Duration::from_secs(10), "3 results pending", || {
        let (_, body) = core.client().get("/v1/fn/_/hello");
        body["data"]["sinks"][0]["pending"] == 3
            && body["data"]["sinks"][0]["failed_attempts"].as_u64() > Some(0)
    });

    let core = core.restart(options());
    core.wait_for_workers(&["embedded"]);
    let _collector = Collector::start(port, received.clone());
    let restarted = Instant::now();
    wait_until(Duration::from_secs(60), "the killed Core's results", || {
        payloads(&received).len() >= 3
    });
    eprintln!(
        "the killed Core's 3 results reached the sink {} ms after its restart",
        restarted.elapsed().as_millis()
    );
    assert_eq!(payloads(&received), ["Hello k0!", "Hello k1!", "Hello k2!"]);
    // Delivered by the restarted Core, which counts them.
    wait_until(
        Duration::from_secs(10),
        "the delivery to be counted",
        || {
            let (_, body) = core.client().get("/v1/fn/_/hello");
            body["data"]["sinks"][0]["delivered"] == 3 && body["data"]["sinks"][0]["pending"] == 0
        },
    );
}

/// Two Cores over one PostgreSQL: a sink set through A runs on B too (B hears of the change),
/// and the results A queued while the sink was down are delivered through B after A is
/// killed with `kill -9`, with those B queued itself: every one arrives.
#[test]
fn results_a_dead_core_queued_reach_the_sink_through_another() {
    let received = Received::default();
    let port = down_sink(&received);
    let db = TempDatabase::create();
    let options = |name: &str| CoreOptions {
        database_url: Some(db.url.clone()),
        extra: vec!["--node-name".into(), name.into()],
        ..CoreOptions::default()
    };
    let a = Core::start(options("core-a"));
    let b = Core::start_beside(&a, options("core-b"));
    let both = format!("{},{}", a.cluster, b.cluster);
    let _w = Worker::start_finding("w", &a, &["--core", &both], &[]);
    a.wait_for_workers(&["w"]);
    b.wait_for_workers(&["w"]);
    let sinks = json!([{ "type": "webhook", "params": { "url": format!("http://127.0.0.1:{port}/hook") } }]);
    let (status, body) = a
        .client()
        .upload_with_sinks("_", "hello", example("hello_fl"), sinks);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(10), "B to run the sink", || {
        let (_, body) = b.client().get("/v1/fn/_/hello");
        body["data"]["sinks"][0]["url"].is_string()
    });

    let mut expected = Vec::new();
    for (core, name) in [(&a, "a0"), (&a, "a1"), (&b, "b0"), (&a, "a2"), (&b, "b1")] {
        let (status, body) = core.client().invoke("_", "hello", json!({ "name": name }));
        assert_eq!(status, StatusCode::OK, "{body}");
        expected.push(format!("Hello {name}!"));
    }
    wait_until(Duration::from_secs(10), "A's 3 results pending", || {
        let (_, body) = a.client().get("/v1/fn/_/hello");
        body["data"]["sinks"][0]["pending"] == 3
    });
    let (_, body) = b.client().get("/v1/fn/_/hello");
    assert_eq!(body["data"]["sinks"][0]["pending"], 2, "{body}");

    let mut a = a;
    a.process.kill();
    let killed = Instant::now();
    let _collector = Collector::start(port, received.clone());
    wait_until(Duration::from_secs(60), "every result", || {
        let got = payloads(&received);
        expected.iter().all(|e| got.contains(e))
    });
    eprintln!(
        "every result reached the sink {} ms after Core A was killed",
        killed.elapsed().as_millis()
    );
    // A's results came in A's order (B queued them behind its own, in their order).
    let got = payloads(&received);
    let from_a: Vec<&String> = got.iter().filter(|p| p.contains(" a")).collect();
    assert_eq!(from_a, ["Hello a0!", "Hello a1!", "Hello a2!"]);
    wait_until(Duration::from_secs(10), "B to count 5 deliveries", || {
        let (_, body) = b.client().get("/v1/fn/_/hello");
        body["data"]["sinks"][0]["delivered"] == 5 && body["data"]["sinks"][0]["pending"] == 0
    });
}
