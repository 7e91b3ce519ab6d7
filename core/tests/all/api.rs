//! The REST API's behaviour, status codes and error bodies, through a real Core process.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, detail, example};

fn embedded() -> Core {
    Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    })
}

#[test]
fn status_codes_and_error_bodies() {
    let core = embedded();
    let user = core.client();
    core.wait_for_workers(&["embedded"]);

    // 401: no token, wrong token.
    let (status, body) = user.without_token().get("/v1/fn");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(detail(&body), "missing Authorization header");
    let (status, body) = user.with_token("fl_nope").get("/v1/fn");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(detail(&body), "invalid token");
    // 403: a user token on an admin endpoint.
    let (status, body) = user.get("/v1/admin/subjects");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(detail(&body), "this endpoint needs an admin token");

    // Modules: 201, 409, 400, 404.
    let (status, body) = user.post_json("/v1/fn", &json!({"module": {"name": "m1"}}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.post_json("/v1/fn", &json!({"module": {"name": "m1"}}));
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(detail(&body), "module 'm1' already exists");
    let (status, body) = user.post_json("/v1/fn", &json!({"module": {"name": "bad-name"}}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&body).contains("only letters, digits and '_'"),
        "{body}"
    );
    let (status, body) = user.post_json("/v1/fn", &json!({"modul": {"name": "x"}}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&body).starts_with("invalid module request"),
        "{body}"
    );
    let (status, body) = user.get("/v1/fn/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(detail(&body), "module 'nope' not found");
    let (status, body) = user.delete("/v1/fn/_");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("default module"), "{body}");

    // Functions: bad name, not Wasm, created, duplicate.
    let (status, body) = user.upload("m1", "bad name", example("hello_fl"), false);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("function name"), "{body}");
    let (status, body) = user.upload("m1", "notwasm", b"#!/bin/sh\necho hi\n".to_vec(), false);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail(&body).contains("not a WebAssembly module"), "{body}");
    let (status, body) = user.upload("nope", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = user.upload("m1", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["abi"], "funless");
    assert_eq!(body["data"]["workers"]["cached"], json!(["embedded"]));
    let (status, body) = user.upload("m1", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(detail(&body), "function 'm1/hello' already exists");

    // Invoke: ok, unknown (404), failing function (422), malformed body (400).
    let (status, body) = user.invoke("m1", "hello", json!({"name": "x"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"data": {"payload": "Hello x!"}}));
    let (status, body) = user.invoke("m1", "nope", json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(detail(&body), "function 'm1/nope' not found");
    let (status, _) = user.upload("m1", "fail", example("fail_fl"), false);
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = user.invoke("m1", "fail", json!({"a": 1}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail(&body).contains("intentional failure"), "{body}");
    let (status, body) = user.post_raw("/v1/fn/m1/hello", "{not json");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        detail(&body).starts_with("invalid invoke request"),
        "{body}"
    );
    let (status, body) = user.post_json("/v1/fn/m1/hello", &json!({"args": [1, 2]}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(detail(&body), "args must be a JSON object");

    // Read, list, rename, delete.
    let (status, body) = user.get("/v1/fn/m1/hello");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["name"], "hello");
    assert_eq!(body["data"]["hash"].as_str().unwrap().len(), 64);
    let (status, body) = user.get("/v1/fn/m1");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["functions"],
        json!([{"name": "fail"}, {"name": "hello"}])
    );
    let (status, _) = user.put_json("/v1/fn/m1", &json!({"module": {"name": "m2"}}));
    assert_eq!(status, StatusCode::OK);
    let (status, body) = user.invoke("m2", "hello", json!({"name": "y"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = user.delete("/v1/fn/m2/hello");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = user.invoke("m2", "hello", json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = user.delete("/v1/fn/m2");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = user.get("/v1/fn/m2");
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Subjects: the admin creates one; its token works at once; tokens are never listed.
    let admin = core.admin();
    let (status, body) =
        admin.post_json("/v1/admin/subjects", &json!({"subject": {"name": "alice"}}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_string();
    let (status, _) = user.with_token(&token).get("/v1/fn");
    assert_eq!(status, StatusCode::OK);
    let (status, body) = admin.get("/v1/admin/subjects");
    assert_eq!(status, StatusCode::OK);
    assert!(!body.to_string().contains(&token));
    assert!(body.to_string().contains("alice"));
    let (status, _) = admin.post_json("/v1/admin/subjects", &json!({"subject": {"name": "alice"}}));
    assert_eq!(status, StatusCode::CONFLICT);

    // Metrics count invocations per function and outcome.
    let metrics = reqwest::blocking::get(format!("{}/metrics", core.url))
        .unwrap()
        .text()
        .unwrap();
    // Modules are labelled by stored name (a subject's `m1` is `m1~<id>`): one series per
    // module even when two subjects use one name.
    assert!(
        metrics.lines().any(
            |l| l.starts_with(r#"funless_invocations_total{module="m1~"#)
                && l.ends_with(r#",function="hello",outcome="ok"} 1"#)
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"outcome="function_error""#), "{metrics}");
    assert!(metrics.contains("funless_invocation_duration_seconds_bucket"));
}

#[test]
fn invoke_with_no_worker_is_503() {
    let core = Core::start(CoreOptions::default());
    let user = core.client();
    let (status, body) = user.upload("_", "hello", example("hello_wasi"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["workers"]["cached"], json!([]));
    let (status, body) = user.invoke("_", "hello", json!({"name": "x"}));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        detail(&body),
        "no worker can run the function: no worker is connected"
    );
    // The Core keeps serving.
    let (status, _) = user.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn wasi_command_functions_run_and_fail_cleanly() {
    let core = embedded();
    let user = core.client();
    core.wait_for_workers(&["embedded"]);
    let (status, body) = user.upload("_", "hello", example("hello_wasi"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["abi"], "wasi_command");
    let (status, body) = user.invoke("_", "hello", json!({"name": "wasi"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"data": {"payload": "Hello wasi!"}}));
    let (status, _) = user.upload("_", "fail", example("fail_wasi"), false);
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = user.invoke("_", "fail", json!({}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail(&body).contains("exit code 3"), "{body}");
    let (status, _) = user.upload("_", "mm", example("matrix_mult_wasi"), false);
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = user.invoke("_", "mm", json!({"n": 20}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["n"], 20);
}

/// A Core with its embedded worker on a fresh PostgreSQL database, with module `pg` holding
/// `hello` (the database lives as long as the value returned with it).
fn postgres_core_with_hello() -> (crate::harness::TempDatabase, Core) {
    let db = crate::harness::TempDatabase::create();
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        database_url: Some(db.url.clone()),
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let (status, _) = user.post_json("/v1/fn", &json!({"module": {"name": "pg"}}));
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = user.upload("pg", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (db, core)
}

#[test]
fn postgres_store_serves_the_same_api() {
    let (_db, core) = postgres_core_with_hello();
    assert!(
        core.process.logs.contains("backend=\"postgres\"")
            || core.process.logs.contains("backend=postgres")
    );
    let user = core.client();
    let (status, body) = user.invoke("pg", "hello", json!({"name": "pg"}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"data": {"payload": "Hello pg!"}}));
    let (status, _) = user.upload("pg", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CONFLICT);
    drop(core);
}

/// A warm invocation reads nothing from the store: with the functions and modules tables
/// locked by another session, a store read blocks (proved first with a lookup that must read
/// the store), yet the function answers. Once unlocked, an update is seen by the very next
/// invocation: the in-memory metadata is dropped on every change.
#[test]
fn warm_invocations_read_no_store_row() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;

    let (db, core) = postgres_core_with_hello();
    let user = core.client();
    let (status, body) = user.invoke("pg", "hello", json!({"name": "warm"}));
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another session takes both tables and keeps them until its stdin closes.
    let mut psql = std::process::Command::new("psql")
        .arg(&db.url)
        .args(["-q", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running psql");
    let mut stdin = psql.stdin.take().unwrap();
    writeln!(
        stdin,
        "BEGIN; LOCK TABLE functions, modules IN ACCESS EXCLUSIVE MODE; SELECT 'tables-locked';"
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    let mut stdout = BufReader::new(psql.stdout.take().unwrap());
    while !line.contains("tables-locked") {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "psql ended before locking"
        );
    }

    let quick = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let token = user.token.clone().unwrap();
    // The lock holds: reading the function's row (GET) waits for it.
    let blocked = quick
        .get(format!("{}/v1/fn/pg/hello", user.base))
        .bearer_auth(&token)
        .send();
    assert!(
        blocked.is_err_and(|e| e.is_timeout()),
        "a store read was not blocked by the lock"
    );
    // The invocation is not.
    let started = std::time::Instant::now();
    let answer = quick
        .post(format!("{}/v1/fn/pg/hello", user.base))
        .bearer_auth(&token)
        .json(&json!({"args": {"name": "locked"}}))
        .send()
        .expect("the warm invocation waited for the store");
    assert_eq!(answer.status(), StatusCode::OK);
    let body: serde_json::Value = answer.json().unwrap();
    assert_eq!(body, json!({"data": {"payload": "Hello locked!"}}));
    assert!(started.elapsed() < Duration::from_secs(1));

    drop(stdin);
    let _ = psql.wait();
    // An update is visible at once.
    let (status, body) = user.upload("pg", "hello", example("fail_fl"), true);
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = user.invoke("pg", "hello", json!({"name": "after"}));
    assert_ne!(
        status,
        StatusCode::OK,
        "the old code still answered: {body}"
    );
    let (status, _) = user.delete("/v1/fn/pg/hello");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = user.invoke("pg", "hello", json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn quick_start_with_fl() {
    let core = embedded();
    core.wait_for_workers(&["embedded"]);
    let wasm = crate::harness::example_path("hello_fl");
    let fl = |args: &[&str]| core.fl(args);
    let (code, stdout, stderr) = fl(&["fn", "upload", "hello", wasm.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("embedded"), "{stdout}");
    let (code, stdout, stderr) = fl(&["fn", "invoke", "hello", "-a", "name=Edge"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output, json!({"payload": "Hello Edge!"}));
    let (code, _, stderr) = fl(&["fn", "invoke", "nope"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("function '_/nope' not found"), "{stderr}");
    let (code, stdout, _) = fl(&["admin", "user", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("admin") && stdout.contains("default"),
        "{stdout}"
    );
}

#[test]
fn settings_come_from_a_config_file_under_flags_and_print_config_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("core.toml");
    std::fs::write(
        &file,
        "max-timeout-ms = 1234\nheartbeat_timeout_ms = 4000\ncookie = \"from-file\"\n",
    )
    .unwrap();
    // A running Core obeys the file (its cookie is overridden by the harness's flag).
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        extra: vec!["--config".into(), file.to_str().unwrap().into()],
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let (status, body) = user.upload_with(
        "_",
        "slow",
        example("sleep_fl"),
        json!({ "timeout_ms": 2000 }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("between 1 and 1234"), "{body}");

    let out = std::process::Command::new(crate::harness::bin("funless-core"))
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .args(["--listen", "127.0.0.1:1"])
        .env_remove("FUNLESS_MAX_TIMEOUT_MS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("max-timeout-ms = 1234  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("heartbeat-timeout-ms = 4000  # file"),
        "{printed}"
    );
    assert!(
        printed.contains("listen = \"127.0.0.1:1\"  # flag"),
        "{printed}"
    );
    assert!(
        printed.contains("cluster-port = 4001  # default"),
        "{printed}"
    );
    assert!(
        !printed.contains("from-file"),
        "the cookie is printed: {printed}"
    );

    std::fs::write(&file, "max-timeout = 5\n").unwrap();
    let out = std::process::Command::new(crate::harness::bin("funless-core"))
        .args(["--config", file.to_str().unwrap(), "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown setting \"max-timeout\""),
        "{stderr}"
    );
}
