//! Per-function limits through Core and Worker processes: each breach is a 422 with its
//! reason, the limits show in the function's metadata, and the worker goes on serving.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, detail, example};

fn fl_module(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__invoke") (param i32) (result i32) {body} (i32.const 0)))"#
    ))
    .unwrap()
}

#[test]
fn each_limit_breached_is_a_422_with_its_reason_and_the_worker_goes_on() {
    let core = Core::start(CoreOptions {
        extra: vec!["--max-timeout-ms".into(), "10000".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();

    let uploads = [
        ("slow", example("sleep_fl"), json!({ "timeout_ms": 300 })),
        (
            "greedy",
            fl_module(
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            ),
            json!({ "capacity": 4 << 20 }),
        ),
        (
            "chatty",
            fl_module("(call $resp (i32.const 0) (i32.const 9000000))"),
            json!({}),
        ),
        ("crash", fl_module("unreachable"), json!({})),
    ];
    for (name, code, metadata) in uploads {
        let (status, body) = user.upload_with("_", name, code, metadata);
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }
    let (_, body) = user.get("/v1/fn/_/slow");
    assert_eq!(body["data"]["metadata"]["timeout_ms"], 300, "{body}");
    let (_, body) = user.get("/v1/fn/_/greedy");
    assert_eq!(body["data"]["metadata"]["capacity"], 4 << 20, "{body}");

    for (name, args, reason) in [
        ("slow", json!({ "ms": 5000 }), "timeout"),
        ("greedy", json!({}), "memory_limit"),
        ("chatty", json!({}), "output_too_large"),
        ("crash", json!({}), "trap"),
    ] {
        let (status, body, got) = user.invoke_with_reason("_", name, args);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(got.as_deref(), Some(reason), "{name}: {body}");
        let (status, body) = user.invoke("_", "slow", json!({ "ms": 1 }));
        assert_eq!(status, StatusCode::OK, "after {name}: {body}");
    }

    // The operator's cap on time limits.
    let (status, body) = user.upload_with(
        "_",
        "forever",
        example("sleep_fl"),
        json!({ "timeout_ms": 20000 }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("10000"), "{body}");
}

/// A one-route HTTP server on 127.0.0.1 answering "hi there" to every request.
fn tiny_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nhi there",
            );
        }
    });
    addr
}

fn http_get_module(uri: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "fl_imps" "__http_request" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
  (import "fl_imps" "__insert_response" (func $resp (param i32 i32)))
  (import "fl_imps" "__insert_error" (func $err (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "{uri}")
  (data (i32.const 40) "no answer")
  (func (export "__invoke") (param i32) (result i32)
    (i32.store (i32.const 16) (i32.const 64))
    (call $http (i32.const 1024) (i32.const 16) (i32.const 20) (i32.const 0)
      (i32.const 100) (i32.const {len}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (if (i32.ne (i32.load16_u (i32.const 20)) (i32.const 200))
      (then (call $err (i32.const 40) (i32.const 9)) (return (i32.const 1))))
    (call $resp (i32.const 1024) (i32.load (i32.const 16)))
    (i32.const 0)))"#,
        len = uri.len()
    ))
    .unwrap()
}

#[test]
fn functions_reach_only_the_hosts_on_their_allow_list() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let server = tiny_server();
    let code = http_get_module(&format!("http://{server}/x"));

    let (status, body) = user.upload_with(
        "_",
        "allowed",
        code.clone(),
        json!({ "allow_hosts": [server.to_string()] }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = user.get("/v1/fn/_/allowed");
    assert_eq!(
        body["data"]["metadata"]["allow_hosts"],
        json!([server.to_string()])
    );
    let (status, body) = user.upload_with("_", "fenced", code, json!({}));
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = user.invoke("_", "allowed", json!({}));
    assert_eq!(
        (status, &body["data"]),
        (StatusCode::OK, &json!("hi there")),
        "{body}"
    );
    let (status, body) = user.invoke("_", "fenced", json!({}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(detail(&body), "no answer");

    let (status, body) = user.upload_with(
        "_",
        "bad",
        example("hello_fl"),
        json!({ "allow_hosts": ["http://evil/"] }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}
