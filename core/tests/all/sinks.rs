//! Data sinks: every result reaches a local HTTP collector (as a webhook and as CouchDB with
//! Basic auth); while the collector is down results wait and are retried, invocations still
//! answer at once, and everything arrives, in order, once it is back.

use std::time::{Duration, Instant};

use funless_testkit::{Collector, Received};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, detail, example, wait_until};

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
