//! Secrets across real processes: write-only through the API, sealed in the store, given to
//! an invocation only as its function's environment, rotated without a redeploy; their values
//! appear nowhere else (store file, logs, activation records, API answers, metrics), and a
//! Core without the key refuses to start while secrets are stored.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example, js_example};

const KEY: &str = "8f3c1a6b2d4e5f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

/// A JavaScript function that uses its TOKEN setting without showing it: its length and a
/// checksum, and a log line.
const USES_TOKEN: &str = "function fl_main(args, config) {\n\
    const v = config.TOKEN;\n\
    let sum = 0;\n\
    for (const c of v) sum = (sum * 31 + c.charCodeAt(0)) % 1000003;\n\
    console.log(`token of ${v.length} characters`);\n\
    return { length: v.length, sum };\n\
}\n";

fn checksum(value: &str) -> u64 {
    value
        .chars()
        .fold(0, |sum, c| (sum * 31 + c as u64) % 1_000_003)
}

fn with_key(dir: &std::path::Path) -> CoreOptions {
    let file = dir.join("secrets.key");
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    CoreOptions {
        extra: vec!["--secrets-key-file".into(), file.display().to_string()],
        ..CoreOptions::default()
    }
}

#[test]
fn secrets_reach_functions_only_and_are_sealed_everywhere_else() {
    let keys = tempfile::tempdir().unwrap();
    let core = Core::start(with_key(keys.path()));
    let w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    // Every answer the API gives in this test, to look for the hidden value in.
    let mut answers = String::new();
    let mut keep = |(status, body): (StatusCode, Value)| {
        answers.push_str(&body.to_string());
        (status, body)
    };

    // A secret shown on purpose (the env examples answer their whole environment), to see it
    // reach every form; and a hidden one, used without being shown.
    let shown = "shown-value-4b1f";
    let hidden = "hidden-7Qx9-secret-value";
    let rotated = "rotated-Zr8-secret-value-longer";
    let (status, body) = keep(user.put_json("/v1/secrets/shown", &json!({"value": shown})));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["name"], "shown");
    assert!(!body.to_string().contains(shown), "{body}");
    let (status, body) = keep(user.put_json("/v1/secrets/api_token", &json!({"value": hidden})));
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for (name, code) in [
        ("efl", example("env_fl")),
        ("ewasi", example("env_wasi")),
        ("ejs", js_example("env")),
    ] {
        let (status, body) = keep(user.upload("_", name, code, false));
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
        let (status, body) = keep(user.put_json(
            &format!("/v1/config/_/{name}"),
            &json!({"set": {"MODE": "prod"}, "secrets": {"PASSWORD": "shown"}}),
        ));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"]["secrets"],
            json!({"PASSWORD": "shown"}),
            "{body}"
        );
        assert_eq!(body["data"]["effective"], json!({"MODE": "prod"}), "{body}");
        let (status, body) = keep(user.invoke("_", name, json!({})));
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(
            body["data"]["env"],
            json!({"MODE": "prod", "PASSWORD": shown}),
            "{name}"
        );
    }

    // The hidden one, used by a function that never shows it.
    let (status, body) = keep(user.upload("_", "uses", USES_TOKEN.as_bytes().to_vec(), false));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (code, out, err) = core.fl(&["fn", "config", "set", "uses", "--secret", "TOKEN=api_token"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "version: 2\nTOKEN: secret api_token\n");
    let (status, body) = keep(user.invoke("_", "uses", json!({})));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"length": hidden.len(), "sum": checksum(hidden)})
    );

    // Rotation: the next invocation gets the new value, with no redeploy (same version).
    let (status, body) = keep(user.put_json("/v1/secrets/api_token", &json!({"value": rotated})));
    assert_eq!(status, StatusCode::OK, "rotated, not created: {body}");
    let (status, body) = keep(user.invoke("_", "uses", json!({})));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({"length": rotated.len(), "sum": checksum(rotated)})
    );
    let (_, body) = keep(user.get("/v1/config/_/uses"));
    assert_eq!(body["data"]["version"], 2, "{body}");

    // Listing shows names only; bad requests are refused; a setting may only name a secret
    // its writer holds.
    let (status, body) = keep(user.get("/v1/secrets"));
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api_token", "shown"]);
    for bad in [
        json!({}),
        json!({"value": 1}),
        json!({"value": "x", "other": 1}),
        json!({"value": "a\u{0}b"}),
    ] {
        let (status, body) = keep(user.put_json("/v1/secrets/x", &bad));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = keep(user.put_json("/v1/secrets/bad-name", &json!({"value": "x"})));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = keep(user.get("/v1/secrets"));
    assert_eq!(
        body["data"].as_array().map(Vec::len),
        Some(2),
        "refused writes stored nothing: {body}"
    );
    let (status, body) =
        keep(user.put_json("/v1/config/_/uses", &json!({"secrets": {"OTHER": "nope"}})));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("no secret 'nope'"), "{body}");
    let admin = core.admin();
    let (status, body) = keep(admin.upload("_", "adminf", example("env_fl"), false));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = keep(admin.put_json(
        "/v1/config/_/adminf",
        &json!({"secrets": {"T": "api_token"}}),
    ));
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "another subject's secret: {body}"
    );

    // A deleted secret: the functions using it are answered 409, saying which.
    let (status, _) = keep(user.delete("/v1/secrets/shown"));
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = keep(user.invoke("_", "efl", json!({})));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(detail(&body).contains("secret 'shown'"), "{body}");
    let (status, _) = keep(user.delete("/v1/secrets/shown"));
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The hidden values are nowhere: not in the store's file, the logs, the activation
    // records, the answers, the metrics.
    let (_, records) = keep(user.get("/v1/fn/_/uses/activations?limit=50"));
    assert!(
        records["data"].as_array().is_some_and(|r| r.len() >= 2),
        "{records}"
    );
    let core_metrics = reqwest::blocking::get(format!("{}/metrics", core.url))
        .unwrap()
        .text()
        .unwrap();
    let worker_metrics = reqwest::blocking::get(&w1.metrics_url)
        .unwrap()
        .text()
        .unwrap();
    let mut store_bytes = Vec::new();
    for entry in std::fs::read_dir(core.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("funless.db")
        {
            store_bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(store_bytes.len() > 4096, "the store was read");
    // The logs did record this test's work (the function's own log line included: the
    // harness logs `funless::function` at debug).
    let core_logs = core.process.logs.text();
    let worker_logs = w1.process.logs.text();
    assert!(core_logs.contains("token of"), "{core_logs}");
    assert!(core_logs.contains("secret stored"), "{core_logs}");
    for value in [hidden, rotated] {
        let haystacks: [(&str, &[u8]); 6] = [
            ("the store", &store_bytes),
            ("the core's logs", core_logs.as_bytes()),
            ("the worker's logs", worker_logs.as_bytes()),
            ("the answers and activation records", answers.as_bytes()),
            ("the core's metrics", core_metrics.as_bytes()),
            ("the worker's metrics", worker_metrics.as_bytes()),
        ];
        for (what, bytes) in haystacks {
            assert!(
                !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                "the secret's value is in {what}"
            );
        }
    }

    // Without the key the Core refuses to start while secrets are stored; with it, it serves
    // them again.
    let stopped = match core.try_restart(CoreOptions::default()) {
        Ok(_) => panic!("a Core without the key started with secrets stored"),
        Err(stopped) => stopped,
    };
    assert!(stopped.logs.contains("secrets key"), "{}", stopped.logs);
    let core = stopped.start(with_key(keys.path()));
    let _w1 = w1.restart(&core);
    core.wait_for_workers(&["w1"]);
    let (status, body) = core.client().invoke("_", "uses", json!({}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sum"], checksum(rotated));
}
