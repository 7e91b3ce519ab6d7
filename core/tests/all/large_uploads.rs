//! Large functions (a Python function is ~20 MB): uploads up to the Core's `max-upload-bytes`
//! (64 MiB by default) reach the store and every worker in chunks, on upload and on the
//! no-code path, without the Core holding more than about two copies at once.

use reqwest::StatusCode;
use serde_json::json;

use crate::abuse::memory_of;
use crate::harness::{Core, CoreOptions, Worker, example};

/// `hello_fl` grown to `total` bytes by a custom section, which Wasm ignores: the function
/// still runs, and compiling it stays quick, so the test measures the transfer alone.
fn padded_hello(total: usize, fill: u8) -> Vec<u8> {
    let mut code = example("hello_fl");
    let name = b"funless-padding";
    let payload = total - code.len() - 1 - 5 - 1 - name.len();
    let section_len = 1 + name.len() + payload;
    code.push(0); // custom section id
    let mut len = section_len as u32;
    // The section's length as a 5-byte LEB128 (padded), so `total` comes out exact.
    for i in 0..5 {
        let more = if i < 4 { 0x80 } else { 0 };
        code.push((len & 0x7f) as u8 | more);
        len >>= 7;
    }
    code.push(name.len() as u8);
    code.extend_from_slice(name);
    code.resize(code.len() + payload, fill);
    assert_eq!(code.len(), total);
    code
}

#[test]
fn a_60_mib_function_reaches_every_worker_and_costs_the_core_at_most_two_copies() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    let _w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let user = core.client();
    // Warm the Core's paths with a small upload first, so the peak below is the large one's.
    let (status, body) = user.upload("_", "small", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let size = 60 << 20;
    let code = padded_hello(size, 0x5a);
    let before = memory_of(core.process.pid()).0;
    let (status, body) = user.upload("_", "big", code, false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let after = memory_of(core.process.pid()).0;
    assert_eq!(
        body["data"]["workers"]["cached"],
        json!(["w1", "w2"]),
        "both workers hold the 60 MiB function: {body}"
    );
    let rise = after.saturating_sub(before);
    eprintln!(
        "core peak RSS {:.1} MiB -> {:.1} MiB for a {} MiB upload to two workers: +{:.2}x its size",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        size >> 20,
        rise as f64 / size as f64
    );
    assert!(
        rise <= size as u64 * 9 / 4,
        "the Core's peak rose by {rise} bytes for a {size}-byte upload"
    );
    for _ in 0..4 {
        let (status, body) = user.invoke("_", "big", json!({ "name": "Large" }));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["payload"], "Hello Large!", "{body}");
    }
    let (status, body) = user.get("/v1/fn/_/big");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["size"], json!(size), "{body}");
}

#[test]
fn a_worker_that_joins_after_a_large_upload_gets_the_code_in_chunks_when_first_invoked() {
    let core = Core::start(CoreOptions::default());
    let user = core.client();
    // 20 MiB: twenty chunks, a Python function's size.
    let (status, body) = user.upload("_", "late", padded_hello(20 << 20, 0xa5), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["workers"]["cached"], json!([]), "{body}");

    let w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let (status, body) = user.invoke("_", "late", json!({ "name": "Late" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello Late!", "{body}");
    // The worker compiled what the Core sent after its "no code" (it had nothing on disk).
    assert_eq!(w1.metric("funless_worker_compilations_total"), 1.0);
    let (status, body) = user.invoke("_", "late", json!({ "name": "Again" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello Again!", "{body}");
}
