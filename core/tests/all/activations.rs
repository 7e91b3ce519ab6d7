//! Activations: every invocation leaves a record (result or error, timing, worker, logs);
//! asynchronous invocations answer 202 with its id at once; records are the caller's own and
//! expire.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, detail, example, example_path, wait_until};

fn core(extra: &[&str]) -> Core {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    core
}

fn invoke_async(user: &Client, name: &str, args: Value) -> String {
    let (status, body) = user.post_json(
        &format!("/v1/fn/_/{name}"),
        &json!({ "args": args, "blocking": false }),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["data"]["activation_id"].as_str().unwrap().to_string()
}

/// Polls an activation until it is no longer running.
fn finished(user: &Client, id: &str) -> Value {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(10), "the activation to finish", || {
        let (status, body) = user.get(&format!("/v1/activations/{id}"));
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["data"].clone();
        last["status"] != "running"
    });
    last
}

#[test]
fn sync_and_async_invocations_leave_records_with_result_logs_and_errors() {
    let core = core(&[]);
    let user = core.client();
    for (name, wasm) in [
        ("hello", "hello_fl"),
        ("sleep", "sleep_fl"),
        ("fail", "fail_wasi"),
    ] {
        let (status, body) = user.upload("_", name, example(wasm), false);
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // A synchronous call: its record is the newest of the function.
    let (status, _) = user.invoke("_", "hello", json!({ "name": "rec" }));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = user.get("/v1/fn/_/hello/activations");
    assert_eq!(status, StatusCode::OK, "{body}");
    let record = &body["data"][0];
    assert_eq!(record["status"], "success", "{body}");
    assert_eq!(record["module"], "_");
    assert_eq!(record["result"], json!({ "payload": "Hello rec!" }));
    assert_eq!(record["worker"], "embedded");
    assert!(record["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(
        record["logs"][0].as_str().unwrap().contains("name=rec"),
        "{body}"
    );

    // Asynchronous: 202 at once, running, then the result.
    let started = std::time::Instant::now();
    let id = invoke_async(&user, "sleep", json!({ "ms": 1000 }));
    assert!(started.elapsed() < Duration::from_millis(900));
    let (status, body) = user.get(&format!("/v1/activations/{id}"));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["status"], "running", "{body}");
    let done = finished(&user, &id);
    assert_eq!(done["status"], "success", "{done}");
    assert_eq!(done["result"]["payload"], "Slept for 1000 ms");

    // A failing function: the error the caller would have got, and stderr in the logs.
    let id = invoke_async(&user, "fail", json!({}));
    let done = finished(&user, &id);
    assert_eq!(done["status"], "error", "{done}");
    assert_eq!(done["error"]["reason"], "function_error", "{done}");
    assert!(
        done["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("intentional failure")),
        "{done}"
    );

    // What the caller gets wrong is answered at once, not recorded.
    let (status, body) = user.post_json("/v1/fn/_/nope", &json!({ "args": {}, "blocking": false }));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = user.post_json(
        "/v1/fn/_/hello?blocking=true",
        &json!({ "args": {}, "blocking": false }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("blocking"), "{body}");
    let (status, _) = user.get("/v1/fn/_/hello/activations?limit=0");
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Records are their caller's: another subject gets 404, the admin sees them.
    let bob = core.subject("bob");
    assert_eq!(
        bob.get(&format!("/v1/activations/{id}")).0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        core.admin().get(&format!("/v1/activations/{id}")).0,
        StatusCode::OK
    );
    assert_eq!(
        user.get("/v1/activations/0123456789abcdef0123456789abcdef")
            .0,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn activations_expire_and_fl_shows_them() {
    let core = core(&["--activation-ttl-secs", "2"]);
    let wasm = example_path("hello_fl");
    let fl = |args: &[&str]| {
        let (code, stdout, stderr) = core.fl(args);
        assert_eq!(code, Some(0), "fl {args:?}: {stdout}{stderr}");
        stdout
    };
    fl(&["fn", "upload", "hello", wasm.to_str().unwrap()]);
    let id = fl(&["fn", "invoke", "hello", "-a", "name=cli", "--async"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 32, "{id}");
    let user = core.client();
    finished(&user, &id);
    let shown = fl(&["activation", "get", &id]);
    assert!(shown.contains("status: success"), "{shown}");
    assert!(shown.contains("Hello cli!"), "{shown}");
    let logs = fl(&["activation", "logs", &id]);
    assert!(logs.contains("hello called with name=cli"), "{logs}");
    let list = fl(&["activation", "list", "hello"]);
    assert!(list.starts_with(&id), "{list}");

    // Events and sinks from the command line: a cron trigger and a webhook, shown by `fn get`.
    let created = fl(&[
        "fn",
        "upload",
        "tick",
        wasm.to_str().unwrap(),
        "--event",
        r#"{"type":"cron","params":{"schedule":"* * * * * *"}}"#,
        "--sink",
        r#"{"type":"webhook","params":{"url":"http://127.0.0.1:9/hook"}}"#,
    ]);
    assert!(
        created.contains("event: cron * * * * * *: connected"),
        "{created}"
    );
    let shown = fl(&["fn", "get", "tick"]);
    assert!(shown.contains("event: cron"), "{shown}");
    assert!(
        shown.contains("sink: webhook http://127.0.0.1:9/hook"),
        "{shown}"
    );

    std::thread::sleep(Duration::from_millis(2500));
    let (status, body) = user.get(&format!("/v1/activations/{id}"));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(detail(&body).contains("expired"), "{body}");
}
