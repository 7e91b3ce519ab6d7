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
        let (status, body) = user.invoke("_", name, args);
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}: {body}");
        assert_eq!(body["errors"]["reason"], reason, "{name}: {body}");
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
