//! What the Core itself connects to for users: sinks and connectors reach no loopback,
//! private or link-local address unless the operator allows it, and sink queues are bounded
//! in bytes.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::memory_of;
use crate::harness::{Core, CoreOptions, Worker, detail, example, wait_until};

/// A listener on 127.0.0.1 that counts the connections it gets.
fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (port, seen)
}

#[test]
fn sinks_and_connectors_reach_no_private_address_unless_allowed() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        strict_egress: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let (port, seen) = counting_listener();
    for (url, kind) in [
        (format!("http://127.0.0.1:{port}/hook"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://[::1]/x".to_string(), "loopback"),
        ("http://10.1.2.3/x".to_string(), "private"),
    ] {
        let sinks = json!([{ "type": "webhook", "params": { "url": url } }]);
        let (status, body) = user.upload_with_sinks("_", "s", example("hello_fl"), sinks);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert!(detail(&body).contains(kind), "{url}: {body}");
    }
    for (kind, host) in [("mqtt", "127.0.0.1"), ("nats", "169.254.169.254")] {
        let events =
            json!([{ "type": kind, "params": { "host": host, "topic": "t", "subject": "t" } }]);
        let (status, body) = user.upload_with_events("_", "e", example("hello_fl"), events);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{kind} {host}: {body}");
    }
    // `localhost` is known to be loopback at once; another name is checked when it is
    // resolved, on each delivery (`localhost.` resolves to loopback too).
    let sinks = json!([{ "type": "webhook", "params": { "url": format!("http://localhost:{port}/hook") } }]);
    let (status, body) = user.upload_with_sinks("_", "named", example("hello_fl"), sinks);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let sinks = json!([{ "type": "webhook", "params": { "url": format!("http://localhost.:{port}/hook") } }]);
    let (status, body) = user.upload_with_sinks("_", "named", example("hello_fl"), sinks);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.invoke("_", "named", json!({ "name": "x" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut error = String::new();
    wait_until(
        Duration::from_secs(10),
        "the delivery to be refused",
        || {
            let (_, body) = user.get("/v1/fn/_/named");
            error = body["data"]["sinks"][0]["last_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            !error.is_empty()
        },
    );
    assert!(error.contains("localhost"), "{error}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the Core connected to loopback"
    );
}

#[test]
fn sink_queues_are_bounded_in_bytes() {
    let core = Core::start(CoreOptions {
        extra: vec!["--activation-max-mb".into(), "4".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    // A result of 1 MB: a JSON string of 999,998 letters.
    let big = wat::parse_str(
        r#"(module
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 17)
  (func (export "__invoke") (param i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 34))
    (memory.fill (i32.const 1) (i32.const 97) (i32.const 999998))
    (i32.store8 (i32.const 999999) (i32.const 34))
    (call $resp (i32.const 0) (i32.const 1000000))
    (i32.const 0)))"#,
    )
    .unwrap();
    // A sink nobody listens on: every result stays queued.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sinks =
        json!([{ "type": "webhook", "params": { "url": format!("http://127.0.0.1:{port}/") } }]);
    let (status, body) = user.upload_with_sinks("_", "big", big, sinks);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let user = user.clone();
            std::thread::spawn(move || {
                for _ in 0..150 {
                    let (status, body) = user.invoke("_", "big", json!({}));
                    assert_eq!(status, StatusCode::OK, "{body}");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    let (peak, _) = memory_of(core.process.pid());
    assert!(peak < 100 << 20, "core peak RSS {} MB", peak >> 20);
    let (_, body) = user.get("/v1/fn/_/big");
    let sink = &body["data"]["sinks"][0];
    // 16 MiB of 1 MB results are queued; the rest are dropped, counted and said so.
    assert!(sink["dropped"].as_u64().unwrap() >= 580, "{sink}");
    assert!(
        sink["last_error"].as_str().unwrap().contains("dropped")
            || sink["last_error"]
                .as_str()
                .unwrap()
                .contains("cannot reach"),
        "{sink}"
    );
}
