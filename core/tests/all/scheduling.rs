//! Placement through real processes: the memory filter's 503 and APP scripts choosing workers
//! by name and tag, with invalidation and followup.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, detail, example};

#[test]
fn a_need_no_worker_can_cover_is_503_with_the_reason() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let huge: u64 = 1 << 50;
    let (status, body) = user.upload_with(
        "_",
        "huge",
        example("hello_fl"),
        json!({ "capacity": huge }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = user.get("/v1/fn/_/huge");
    assert_eq!(
        body["data"]["metadata"]["capacity"], huge,
        "{status} {body}"
    );
    let (status, body) = user.invoke("_", "huge", json!({}));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let why = detail(&body);
    assert!(
        why.contains(&format!("needs {huge} bytes")) && why.contains("most free"),
        "{why}"
    );
}

const SCRIPT: &str = r#"
- edge:
    - workers: [edge]
  followup: fail
- spill:
    - workers: [w1]
      invalidate:
        capacity_used: 0%
  followup: default
- gpu:
    - workers: [gpu-box]
      strategy: random
  followup: fail
- default:
    - workers: [w2, w1]
      strategy: best-first
"#;

#[test]
fn app_scripts_place_by_tag_with_invalidation_and_followup() {
    let core = Core::start(CoreOptions::default());
    let w1 = Worker::start_with("w1", &core, &["--tag", "edge"]);
    let w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let (user, admin) = (core.client(), core.admin());

    // Scripts are checked at upload; any subject may create one (as in FunLess), only the
    // admin deletes.
    let (status, body) = admin.post_form(
        "/v1/scripts/app",
        &[("name", "bad"), ("file", "- t:\n    - strategy: fastest\n")],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("tag 't', block 1"), "{body}");
    let (status, created) =
        user.post_form("/v1/scripts/app", &[("name", "site"), ("file", SCRIPT)]);
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = user.delete("/v1/scripts/app/site");
    assert_eq!(status, StatusCode::FORBIDDEN);
    // FunLess's answer: id, name and the parsed script; the YAML as uploaded besides.
    let (status, body) = user.get("/v1/scripts/app/site");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["id"], created["data"]["id"], "{body}");
    assert!(body["data"]["id"].is_i64(), "{body}");
    assert_eq!(body["data"]["name"], "site");
    assert_eq!(body["data"]["source"], SCRIPT);
    assert_eq!(
        body["data"]["script"]["tags"]["spill"],
        json!({
            "followup": "default",
            "blocks": [{
                "workers": ["w1"],
                "strategy": "best-first",
                "affinity": { "affinity": [], "antiaffinity": [] },
                "invalidate": { "capacity_used": 0.0, "max_concurrent_invocations": "infinity" },
            }],
        }),
        "{body}"
    );
    let (_, body) = user.get("/v1/scripts/app");
    assert_eq!(body["data"], json!([{ "name": "site" }]));

    for (name, tag) in [
        ("on_edge", Some("edge")),
        ("spill", Some("spill")),
        ("gpu", Some("gpu")),
        ("plain", None),
    ] {
        let metadata = match tag {
            Some(tag) => json!({ "tag": tag }),
            None => json!({}),
        };
        let (status, body) = user.upload_with("_", name, example("hello_fl"), metadata);
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let invoke = |name: &str, script: &str| {
        user.post_json(
            &format!("/v1/fn/_/{name}"),
            &json!({ "args": {}, "scheduling": { "language": "app", "script": script } }),
        )
    };
    let counts = || (w1.invocations_ok(), w2.invocations_ok());

    // "edge" names w1 by its tag.
    let before = counts();
    for _ in 0..3 {
        let (status, body) = invoke("on_edge", "site");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(counts(), (before.0 + 3.0, before.1));

    // "spill": w1 is invalidated (0 % capacity), the followup falls back to the default tag,
    // whose best-first order puts w2 first.
    let before = counts();
    let (status, body) = invoke("spill", "site");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(counts(), (before.0, before.1 + 1.0));

    // An untagged function uses the default tag.
    let (status, _) = invoke("plain", "site");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(counts(), (before.0, before.1 + 2.0));

    // "gpu" names no connected worker and its followup is fail: 503 saying so.
    let (status, body) = invoke("gpu", "site");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        detail(&body).contains("tag 'gpu'") && detail(&body).contains("followup 'fail'"),
        "{body}"
    );

    // Unknown scripts and a missing script name are the caller's errors.
    let (status, body) = invoke("plain", "nope");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = user.post_json(
        "/v1/fn/_/plain",
        &json!({ "scheduling": { "language": "app" } }),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Deleted, the script is gone for invocations too.
    let (status, _) = admin.delete("/v1/scripts/app/site");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = invoke("on_edge", "site");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Without a script the platform's policy places it anywhere.
    let (status, _) = user.invoke("_", "on_edge", json!({}));
    assert_eq!(status, StatusCode::OK);
}
