//! Function versions and configuration across real processes: every update keeps the
//! previous version, a pinned invocation runs a kept one, a rollback is a new version with old
//! code (warm on a worker that still holds it), only the newest `--keep-versions` are kept;
//! configuration reaches every function form as its environment, and a change of it is a
//! version. `fl` drives it all.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example, js_example, wait_until};

/// The version numbers listed, newest first, and which one is current.
fn versions(core: &Core) -> (Vec<u64>, u64) {
    let (status, body) = core.client().get("/v1/fn/_/f/versions");
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["data"].as_array().unwrap();
    let numbers = list
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    let current: Vec<u64> = list
        .iter()
        .filter(|v| v["current"] == json!(true))
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(current.len(), 1, "one current version: {body}");
    (numbers, current[0])
}

/// Code hashes the worker reports holding in memory.
fn cached(core: &Core) -> Vec<String> {
    let (_, body) = core.admin().get("/v1/workers");
    body["data"][0]["cached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

fn hash_of(body: &Value) -> String {
    body["data"]["hash"].as_str().unwrap().to_string()
}

#[test]
fn update_twice_pin_roll_back_and_prune() {
    let core = Core::start(CoreOptions {
        extra: vec!["--keep-versions".into(), "3".into()],
        ..CoreOptions::default()
    });
    let w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();

    let (status, body) = user.upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["version"], 1);
    let hello = hash_of(&body);
    let (status, body) = user.upload("_", "f", example("matrix_mult_fl"), true);
    assert_eq!(
        (status, &body["data"]["version"]),
        (StatusCode::OK, &json!(2))
    );
    let matrix = hash_of(&body);
    let (status, body) = user.upload("_", "f", example("regex_fl"), true);
    assert_eq!(
        (status, &body["data"]["version"]),
        (StatusCode::OK, &json!(3))
    );
    let regex = hash_of(&body);
    assert_eq!(versions(&core), (vec![3, 2, 1], 3));
    let (_, body) = user.get("/v1/fn/_/f");
    assert_eq!(body["data"]["version"], 3);
    let (_, body) = user.get("/v1/fn/_/f/versions/1");
    assert_eq!(body["data"]["hash"].as_str(), Some(hello.as_str()));
    assert_eq!(body["data"]["created_by"], "default", "{body}");

    // The previous versions' code stays on the worker, so pinned calls and rollbacks are warm.
    wait_until(
        Duration::from_secs(5),
        "the worker to hold all three",
        || {
            let held = cached(&core);
            [&hello, &matrix, &regex].iter().all(|h| held.contains(h))
        },
    );
    let (status, body) = user.post_json("/v1/fn/_/f/versions/1", &json!({"args": {"name": "v1"}}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello v1!")),
        "{body}"
    );
    let (status, body) = user.post_json("/v1/fn/_/f/versions/2", &json!({"args": {"n": 3}}));
    assert_eq!(
        (status, &body["data"]["n"]),
        (StatusCode::OK, &json!(3)),
        "{body}"
    );
    let (status, body) = user.post_json("/v1/fn/_/f/versions/9", &json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(detail(&body), "function '_/f' has no version 9");
    let (status, body) = user.post_json("/v1/fn/_/f/versions/x", &json!({}));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A pinned call in the background records its activation as any other.
    let (status, body) = user.post_json(
        "/v1/fn/_/f/versions/1?blocking=false",
        &json!({"args": {"name": "async"}}),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["data"]["activation_id"].as_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(10),
        "the pinned activation to finish",
        || {
            let (_, body) = user.get(&format!("/v1/activations/{id}"));
            body["data"]["status"] == "success"
        },
    );

    // Roll back to version 1: a new version 4 with its code, and only 3 kept (1 goes, its
    // code stays: version 4 holds it). No compilation: the worker still had the code.
    let compiled = w1.metric("funless_worker_compilations_total");
    assert!(
        compiled >= 3.0,
        "the three uploads were compiled: {compiled}"
    );
    let (status, body) = user.post_json("/v1/fn/_/f/rollback", &json!({"version": 1}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 4);
    assert_eq!(hash_of(&body), hello);
    assert_eq!(body["data"]["workers"]["cached"], json!(["w1"]));
    assert_eq!(versions(&core), (vec![4, 3, 2], 4));
    let (_, body) = user.get("/v1/fn/_/f/versions/4");
    assert_eq!(body["data"]["rollback_of"], 1, "{body}");
    let (status, body) = user.invoke("_", "f", json!({"name": "back"}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello back!"))
    );
    assert_eq!(w1.metric("funless_worker_compilations_total"), compiled);
    let (status, body) = user.post_json("/v1/fn/_/f/versions/1", &json!({}));
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "version 1 was pruned: {body}"
    );
    let (status, body) = user.post_json("/v1/fn/_/f/rollback", &json!({"version": 1}));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = user.post_json("/v1/fn/_/f/rollback", &json!({"version": 0}));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        versions(&core),
        (vec![4, 3, 2], 4),
        "refused rollbacks change nothing"
    );

    // Deleting: not the current version; an old one goes, and its code leaves the worker.
    let (status, body) = user.delete("/v1/fn/_/f/versions/4");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = user.delete("/v1/fn/_/f/versions/2");
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(versions(&core), (vec![4, 3], 4));
    wait_until(
        Duration::from_secs(5),
        "the worker to drop version 2's code",
        || !cached(&core).contains(&matrix),
    );

    // The same through fl.
    let (code, out, err) = core.fl(&["fn", "versions", "f"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].trim_start().starts_with("4* "), "{out}");
    assert!(lines[0].ends_with("by default (rollback to 1)"), "{out}");
    let (code, out, err) = core.fl(&["fn", "rollback", "f", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("rolled back function _/f\nversion: 5\n"),
        "{out}"
    );
    let (code, out, err) = core.fl(&["fn", "invoke", "f", "--version", "4", "-a", "name=fl"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Hello fl!"), "{out}");
    let (code, out, err) = core.fl(&["fn", "delete", "f", "--version", "4"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "deleted version 4 of function _/f\n");
    assert_eq!(versions(&core), (vec![5, 3], 5));
    let (code, _, err) = core.fl(&["fn", "delete", "f", "--version", "5"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("current version"), "{err}");

    // Deleting the function drops every kept version's code from the worker.
    let (status, _) = user.delete("/v1/fn/_/f");
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until(
        Duration::from_secs(5),
        "the worker's cache to be empty",
        || cached(&core).is_empty(),
    );
    let (status, _) = user.get("/v1/fn/_/f/versions");
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// What a function answers about its environment (the `env_*` examples).
fn env_of(core: &Core, name: &str) -> Value {
    let (status, body) = core.client().invoke("_", name, json!({}));
    assert_eq!(status, StatusCode::OK, "{name}: {body}");
    body["data"]["env"].clone()
}

#[test]
fn configuration_reaches_every_form_as_its_environment() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let forms = [
        ("efl", example("env_fl")),
        ("ewasi", example("env_wasi")),
        ("ep2", example("env_p2")),
        ("ejs", js_example("env")),
    ];
    for (name, code) in forms.clone() {
        let (status, body) = user.upload("_", name, code, false);
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        // Nothing is set: the environment is empty (nothing of the worker's leaks in).
        assert_eq!(env_of(&core, name), json!({}), "{name}");
    }

    // The module's settings reach every function; a function's own win over them.
    let (status, body) = user.put_json(
        "/v1/config/_",
        &json!({"set": {"REGION": "edge-1", "LEVEL": "info"}}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["effective"],
        json!({"LEVEL": "info", "REGION": "edge-1"})
    );
    let (status, body) = user.put_json(
        "/v1/config/_/efl",
        &json!({"set": {"LEVEL": "debug", "DB_URL": "postgres://db/x?a=b c"}}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["version"], 2,
        "a configuration change is a version: {body}"
    );
    let expected = json!({"DB_URL": "postgres://db/x?a=b c", "LEVEL": "debug", "REGION": "edge-1"});
    assert_eq!(body["data"]["effective"], expected);
    assert_eq!(env_of(&core, "efl"), expected);
    for name in ["ewasi", "ep2", "ejs"] {
        assert_eq!(
            env_of(&core, name),
            json!({"LEVEL": "info", "REGION": "edge-1"}),
            "{name}"
        );
    }
    let (_, body) = user.invoke("_", "ejs", json!({}));
    assert_eq!(body["data"]["frozen"], true, "{body}");

    // The same change on the other forms, through fl.
    for name in ["ewasi", "ep2", "ejs"] {
        let (code, out, err) = core.fl(&[
            "fn",
            "config",
            "set",
            name,
            "LEVEL=debug",
            "DB_URL=postgres://db/x?a=b c",
        ]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            out,
            "version: 2\nDB_URL=postgres://db/x?a=b c\nLEVEL=debug\nREGION=edge-1 (from the module)\n"
        );
        assert_eq!(env_of(&core, name), expected, "{name}");
    }

    // Unsetting, and rolling back to the version without settings.
    let (code, _, err) = core.fl(&["fn", "config", "unset", "efl", "DB_URL"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        env_of(&core, "efl"),
        json!({"LEVEL": "debug", "REGION": "edge-1"})
    );
    let (status, body) = user.post_json("/v1/fn/_/efl/rollback", &json!({"version": 1}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        env_of(&core, "efl"),
        json!({"LEVEL": "info", "REGION": "edge-1"})
    );
    // A pinned invocation runs with its version's settings.
    let (status, body) = user.post_json("/v1/fn/_/efl/versions/2", &json!({}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["env"], expected);
    // New code keeps the function's settings.
    let (status, body) = user.upload("_", "ewasi", example("env_wasi"), true);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(env_of(&core, "ewasi"), expected);

    // Bad changes are refused and change nothing.
    for bad in [
        json!({}),
        json!({"set": {"1BAD": "x"}}),
        json!({"set": {"A-B": "x"}}),
        json!({"set": {"A": "x"}, "unset": ["A"]}),
        json!({"set": {"A": "x".repeat(4097)}}),
        json!({"set": {"A": 1}}),
        json!({"other": {}}),
    ] {
        let (status, body) = user.put_json("/v1/config/_/ewasi", &bad);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = user.put_json("/v1/config/_/nope", &json!({"set": {"A": "x"}}));
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, body) = user.get("/v1/config/_/ewasi");
    assert_eq!(body["data"]["version"], 3, "{body}");
    assert_eq!(env_of(&core, "ewasi"), expected);

    // The module's change reaches cached functions at once; fl shows it.
    let (code, out, err) = core.fl(&["mod", "config", "unset", "_", "REGION"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "LEVEL=info\n");
    assert_eq!(
        env_of(&core, "ejs"),
        json!({"DB_URL": "postgres://db/x?a=b c", "LEVEL": "debug"})
    );
}
