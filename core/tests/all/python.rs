//! Python functions through Core and Worker processes, built by `fl` with componentize-py
//! (CPython and the function in one WASI 0.2 component, ~18 MB): a function made with
//! `fl fn new -l python` and `fl fn create`, one `.py` file uploaded with `fl fn upload` whose
//! exception is the caller's 422 with its message and its traceback in the activation's logs,
//! and the examples of examples/python (hello, sleep, matrix_mult, network_benchmark through
//! wasi:http and the allow-list).
//!
//! Without componentize-py these tests say so and pass, unless FUNLESS_REQUIRE_PYTHON=1 (CI),
//! where they fail.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use funless_testkit::Servers;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Worker, bin, detail, example, example_path};

/// Runs `fl` against `core` with the caller's environment (componentize-py and pip are found on
/// its PATH) but none of its `fl` settings.
fn fl(core: &Core, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin("fl"))
        .args(args)
        .env_remove("FL_HOST")
        .env_remove("FL_TOKEN")
        .env("FL_CONFIG", core.fl_config())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The newest activation record of a function.
fn last_activation(user: &Client, function: &str) -> Value {
    let (status, records) = user.get(&format!("/v1/fn/_/{function}/activations?limit=1"));
    assert_eq!(status, StatusCode::OK, "{records}");
    records["data"][0].clone()
}

#[test]
fn python_functions_from_fl_and_the_examples_run_through_core_and_worker() {
    if !funless_testkit::python_available() {
        return;
    }
    let core = Core::start(CoreOptions::default());
    let _worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();

    // The examples are built (by examples/build.sh, through `fl fn build`) and uploaded over
    // HTTP while fl builds the others: the worker compiles each (~25 s) before the upload
    // answers.
    let uploads = std::thread::spawn({
        let user = user.clone();
        move || {
            for name in ["hello", "sleep", "matrix_mult"] {
                let started = Instant::now();
                let code = example(&format!("{name}_py"));
                let (status, body) = user.upload("_", &format!("{name}_py"), code.clone(), false);
                assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
                eprintln!(
                    "{name}_py: {} bytes, uploaded and compiled in {:?}",
                    code.len(),
                    started.elapsed()
                );
            }
        }
    });

    // A new function from the template, built and uploaded by fl.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = fl(&core, &["fn", "new", "greet", "-l", "python", "-o", out]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let source = dir.path().join("greet");
    let started = Instant::now();
    let (code, stdout, stderr) = fl(&core, &["fn", "create", "greet", source.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    eprintln!("greet: built and created by fl in {:?}", started.elapsed());
    let (status, body) = user.get("/v1/fn/_/greet");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["abi"], "wasi_component", "{body}");
    let (status, body) = user.invoke("_", "greet", json!({ "name": "Edge" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "payload": "Hello Edge!" }));
    assert_eq!(
        last_activation(&user, "greet")["logs"],
        json!(["greeting Edge"])
    );

    // One .py file, uploaded as it is: its exception is the caller's 422 with the message,
    // and the traceback is in the activation's logs.
    let fail = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/fail.py");
    let (code, stdout, stderr) = fl(&core, &["fn", "upload", "fail", fail.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (status, body, reason) =
        user.invoke_with_reason("_", "fail", json!({ "reason": "on purpose" }));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(reason.as_deref(), Some("function_error"), "{body}");
    // The exception alone is the message; its traceback is in the logs (below).
    assert_eq!(detail(&body), "ValueError: failed on purpose", "{body}");
    let record = last_activation(&user, "fail");
    assert_eq!(record["status"], "error", "{record}");
    let logs: Vec<&str> = record["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(logs.first(), Some(&"about to fail: on purpose"), "{record}");
    assert!(
        logs.contains(&"Traceback (most recent call last):")
            && logs.iter().any(|l| l.contains("in check"))
            && logs.last() == Some(&"ValueError: failed on purpose"),
        "{record}"
    );

    uploads.join().unwrap();
    let (status, body) = user.invoke("_", "hello_py", json!({ "name": "Python" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "payload": "Hello Python!" }));
    assert_eq!(
        last_activation(&user, "hello_py")["logs"],
        json!(["hello called with name=Python"])
    );
    let (status, body) = user.invoke("_", "hello_py", json!({ "name": 7 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello World!");
    // Warm calls, for the record.
    let mut times: Vec<Duration> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let (status, _) = user.invoke("_", "hello_py", json!({}));
            assert_eq!(status, StatusCode::OK);
            started.elapsed()
        })
        .collect();
    times.sort();
    eprintln!("hello_py warm: median {:?} over 20 calls", times[10]);

    let started = Instant::now();
    let (status, body) = user.invoke("_", "sleep_py", json!({ "ms": 1200 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Slept for 1200 ms");
    assert!(started.elapsed() >= Duration::from_millis(1200));

    let (status, body) = user.invoke("_", "matrix_mult_py", json!({ "n": 100 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["n"], 100, "{body}");
    assert_eq!(body["data"]["checksum"], 11998200.0, "{body}");
    eprintln!("matrix_mult_py n=100: {} ms", body["data"]["elapsed_ms"]);
    let (status, body) = user.invoke("_", "matrix_mult_py", json!({ "n": 501 }));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        detail(&body),
        "ValueError: `n` must be between 1 and 500, got 501",
        "{body}"
    );
}

#[test]
fn python_network_benchmark_reaches_only_allowed_hosts() {
    if !funless_testkit::python_available() {
        return;
    }
    let core = Core::start(CoreOptions::default());
    let _worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let servers = Servers::start();
    let code = std::fs::read(example_path("network_benchmark_py")).unwrap();

    let (status, body) = user.upload_with(
        "_",
        "netbench",
        code.clone(),
        json!({ "allow_hosts": [servers.http.to_string()] }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let args = json!({
        "server": servers.reply_url(),
        "bucket": servers.bucket_url("python"),
        "n": 4,
    });
    let (status, body) = user.invoke("_", "netbench", args.clone());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["times_ms"].as_array().unwrap().len(),
        4,
        "{body}"
    );
    assert_eq!(body["data"]["bucket_status"], 200, "{body}");
    assert_eq!(servers.http_requests(), 5);
    let stored: Value = serde_json::from_slice(&servers.object("python").unwrap()).unwrap();
    assert_eq!(stored["times_ms"], body["data"]["times_ms"]);

    // The same code without the allow-list: refused before anything leaves the worker.
    let (status, body) = user.upload("_", "netbench_closed", code, false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.invoke("_", "netbench_closed", args);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("HttpRequestDenied"), "{body}");
    assert_eq!(servers.http_requests(), 5, "nothing reached the server");
}
