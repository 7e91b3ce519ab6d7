//! Canaries across real processes: an update staged as a canary gets its share of 1,000
//! invocations (within statistical bounds), every answer, activation record and `/metrics`
//! says which version ran, and a promote makes it current with no compilation; a failing
//! canary's failures are counted against its version, and an abort (through `fl`) sends every
//! call back to the current version.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, Worker, detail, example, wait_until};

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// The Core's count of canary invocations of function `f` (of any module: a subject's `_` is
/// stored as `_~<id>`) with these labels, 0 when absent.
fn canary_metric(core: &Core, version: u64, track: &str) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", core.url))
        .unwrap()
        .text()
        .unwrap();
    let labels = format!(r#",function="f",version="{version}",track="{track}",outcome="ok"}} "#);
    text.lines()
        .find(|l| l.starts_with("funless_canary_invocations_total{") && l.contains(&labels))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// Each version's invocations by outcome, as `GET .../canary` reports them.
fn tallies(body: &Value) -> Vec<(u64, String, u64, Value)> {
    body["data"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["version"].as_u64().unwrap(),
                t["track"].as_str().unwrap().to_string(),
                t["invocations"].as_u64().unwrap(),
                t["outcomes"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_ten_percent_canary_splits_a_thousand_calls_and_promotes() {
    let core = Core::start(CoreOptions::default());
    let w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();

    let (status, body) = user.upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // New code staged as a 10% canary: version 2 exists, version 1 stays current, and the
    // worker already holds version 2's code.
    let (status, body) = user.update_fields("_", "f", example("regex_fl"), &[("canary", "10")]);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 2, "{body}");
    assert_eq!(body["data"]["canary"], json!({"version": 2, "percent": 10}));
    assert_eq!(body["data"]["workers"]["cached"], json!(["w1"]), "{body}");
    let (_, body) = user.get("/v1/fn/_/f");
    assert_eq!(body["data"]["version"], 1, "{body}");
    assert_eq!(body["data"]["canary"], json!({"version": 2, "percent": 10}));
    let (_, body) = user.get("/v1/fn/_/f/versions");
    let listed: Vec<(u64, bool)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["current"] == json!(true)))
        .collect();
    assert_eq!(listed, [(2, false), (1, true)], "{body}");
    let compiled = w1.metric("funless_worker_compilations_total");

    // 1,000 calls from four clients. Each answer names its version and side, and its output
    // is that version's.
    let calls: Vec<(u64, String)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let user = user.clone();
                scope.spawn(move || {
                    (0..250)
                        .map(|_| {
                            let (status, body, headers) = user
                                .post_with_headers("/v1/fn/_/f", &json!({"args": {"name": "c"}}));
                            assert_eq!(status, StatusCode::OK, "{body}");
                            let version: u64 = header(&headers, "x-funless-version")
                                .unwrap()
                                .parse()
                                .unwrap();
                            let track = header(&headers, "x-funless-track").unwrap();
                            match version {
                                1 => assert_eq!(body["data"]["payload"], "Hello c!", "{body}"),
                                2 => assert_eq!(
                                    body["data"]["matches"],
                                    json!(["Hello", "bench"]),
                                    "{body}"
                                ),
                                other => panic!("version {other} ran"),
                            }
                            assert_eq!(track, if version == 2 { "canary" } else { "stable" });
                            (version, track)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    assert_eq!(calls.len(), 1000);
    let canary = calls.iter().filter(|(v, _)| *v == 2).count() as u64;
    // Binomial(1000, 0.1): mean 100, standard deviation 9.5. 60..=140 is more than four of
    // them either side: a correct split fails it about once in 30,000 runs, while a split
    // that ignored the percentage (0, 50 or 100%) cannot pass.
    assert!(
        (60..=140).contains(&canary),
        "{canary} of 1,000 calls ran the 10% canary"
    );

    // The same counts in the canary's report, in /metrics and in the activation records.
    let (status, body) = user.get("/v1/fn/_/f/canary");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            &body["data"]["version"],
            &body["data"]["percent"],
            &body["data"]["current"]
        ),
        (&json!(2), &json!(10), &json!(1))
    );
    assert_eq!(
        tallies(&body),
        [
            (
                1,
                "stable".into(),
                1000 - canary,
                json!({"ok": 1000 - canary})
            ),
            (2, "canary".into(), canary, json!({"ok": canary})),
        ],
        "{body}"
    );
    assert_eq!(canary_metric(&core, 2, "canary"), canary as f64);
    assert_eq!(canary_metric(&core, 1, "stable"), (1000 - canary) as f64);
    let (_, records) = user.get("/v1/fn/_/f/activations?limit=200");
    let records = records["data"].as_array().unwrap();
    assert_eq!(records.len(), 200);
    for record in records {
        let version = record["version"].as_u64().unwrap();
        let expected = if version == 2 { "canary" } else { "stable" };
        assert_eq!(record["track"], expected, "{record}");
    }
    // An asynchronous call takes the split too, and its record says where it went.
    let (status, body) = user.post_json(
        "/v1/fn/_/f?blocking=false",
        &json!({"args": {"name": "async"}}),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["data"]["activation_id"].as_str().unwrap().to_string();
    wait_until(
        Duration::from_secs(10),
        "the async activation to finish",
        || {
            let (_, body) = user.get(&format!("/v1/activations/{id}"));
            body["data"]["status"] == "success"
        },
    );
    let (_, body) = user.get(&format!("/v1/activations/{id}"));
    assert!(
        matches!(body["data"]["version"].as_u64(), Some(1 | 2)),
        "{body}"
    );
    assert!(body["data"]["track"].is_string(), "{body}");
    // A pinned call is outside the split.
    let (status, _, headers) =
        user.post_with_headers("/v1/fn/_/f/versions/1", &json!({"args": {"name": "p"}}));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-funless-version").as_deref(), Some("1"));
    assert_eq!(header(&headers, "x-funless-track"), None);
    // The canary's version cannot be deleted while it runs.
    let (status, body) = user.delete("/v1/fn/_/f/versions/2");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(detail(&body).contains("canary"), "{body}");

    // Promote: version 2 itself becomes current, the canary ends, nothing is compiled.
    let (status, body) = user.post_json("/v1/fn/_/f/canary/promote", &json!({}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 2, "{body}");
    let (_, body) = user.get("/v1/fn/_/f");
    assert_eq!(body["data"]["version"], 2, "{body}");
    assert!(body["data"].get("canary").is_none(), "{body}");
    let (status, body) = user.get("/v1/fn/_/f/canary");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(detail(&body), "function '_/f' has no canary");
    for _ in 0..20 {
        let (status, body, headers) =
            user.post_with_headers("/v1/fn/_/f", &json!({"args": {"name": "c"}}));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["matches"], json!(["Hello", "bench"]));
        assert_eq!(header(&headers, "x-funless-version").as_deref(), Some("2"));
        assert_eq!(header(&headers, "x-funless-track"), None);
    }
    assert_eq!(w1.metric("funless_worker_compilations_total"), compiled);
    let (status, body) = user.post_json("/v1/fn/_/f/canary/promote", &json!({}));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(detail(&body), "function '_/f' has no canary to promote");
    // The next update is version 3: numbers are never reused.
    let (status, body) = user.upload("_", "f", example("hello_fl"), true);
    assert_eq!(
        (status, &body["data"]["version"]),
        (StatusCode::OK, &json!(3))
    );
}

#[test]
fn a_failing_canary_is_counted_then_aborted_through_fl() {
    let core = Core::start(CoreOptions::default());
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let (status, body) = user.upload("_", "g", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Refused: a canary on create, with a rename, or with a share out of range.
    let (status, body) =
        user.upload_fields("_", "h", example("hello_fl"), &[("canary", json!(10))]);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        detail(&body).starts_with("a new function has no current version"),
        "{body}"
    );
    for percent in ["0", "100", "ten"] {
        let (status, body) =
            user.update_fields("_", "g", example("fail_fl"), &[("canary", percent)]);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{percent}: {body}");
        assert!(
            detail(&body).starts_with("canary must be a percentage"),
            "{body}"
        );
    }
    let (status, body) = user.update_fields(
        "_",
        "g",
        example("fail_fl"),
        &[("canary", "10"), ("name", "other")],
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = user.get("/v1/fn/_/g/versions");
    assert_eq!(
        body["data"].as_array().unwrap().len(),
        1,
        "refused canaries stored nothing: {body}"
    );

    // A canary that always fails, at 50%, through fl.
    let fail = crate::harness::example_path("fail_fl");
    let (code, out, err) = core.fl(&[
        "fn",
        "update",
        "g",
        fail.to_str().unwrap(),
        "--canary",
        "50",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(
            "updated function _/g\ncanary: version 2 gets 50% of invocations (the current version the rest)\n"
        ),
        "{out}"
    );
    let mut failed = 0;
    for _ in 0..40 {
        let (status, body, headers) =
            user.post_with_headers("/v1/fn/_/g", &json!({"args": {"name": "x"}}));
        let version = header(&headers, "x-funless-version");
        match status {
            StatusCode::OK => {
                assert_eq!(version.as_deref(), Some("1"));
                assert_eq!(body["data"]["payload"], "Hello x!");
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                // A failure names the version that failed.
                assert_eq!(version.as_deref(), Some("2"), "{body}");
                assert_eq!(
                    header(&headers, "x-funless-error-reason").as_deref(),
                    Some("function_error")
                );
                failed += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // Binomial(40, 0.5): 1..=39 fails once in 5·10^11 runs.
    assert!((1..40).contains(&failed), "{failed} of 40 failed");
    let (_, body) = user.get("/v1/fn/_/g/canary");
    assert_eq!(
        tallies(&body),
        [
            (1, "stable".into(), 40 - failed, json!({"ok": 40 - failed})),
            (
                2,
                "canary".into(),
                failed,
                json!({"function_error": failed})
            ),
        ],
        "{body}"
    );
    let (code, out, err) = core.fl(&["fn", "canary", "status", "g"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!(
            "   2 canary {failed} invocations: function_error {failed}\n"
        )),
        "{out}"
    );

    // Changing the share keeps the counts; bad changes are refused and change nothing.
    let (status, body) = user.put_json("/v1/fn/_/g/canary", &json!({"version": 2, "percent": 20}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["percent"], 20);
    assert_eq!(tallies(&body).len(), 2, "{body}");
    for (bad, expected) in [
        (json!({"version": 1, "percent": 20}), StatusCode::CONFLICT),
        (json!({"version": 9, "percent": 20}), StatusCode::NOT_FOUND),
        (json!({"version": 2, "percent": 0}), StatusCode::BAD_REQUEST),
        (
            json!({"version": 2, "percent": 100}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"version": 2}), StatusCode::BAD_REQUEST),
        (
            json!({"version": 2, "percent": 5, "x": 1}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, body) = user.put_json("/v1/fn/_/g/canary", &bad);
        assert_eq!(status, expected, "{bad}: {body}");
    }
    let (_, body) = user.get("/v1/fn/_/g");
    assert_eq!(body["data"]["canary"], json!({"version": 2, "percent": 20}));

    // Abort through fl: every call runs version 1 again.
    let (code, out, err) = core.fl(&["fn", "canary", "abort", "g"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("ended the canary of function _/g\ncanary: version 2 gets 20%"),
        "{out}"
    );
    for _ in 0..20 {
        let (status, body, headers) =
            user.post_with_headers("/v1/fn/_/g", &json!({"args": {"name": "y"}}));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "x-funless-version").as_deref(), Some("1"));
        assert_eq!(header(&headers, "x-funless-track"), None);
    }
    let (code, _, err) = core.fl(&["fn", "canary", "status", "g"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("has no canary"), "{err}");
    // An ended canary's version is an ordinary kept version: fl starts a canary of it again.
    let (code, out, err) = core.fl(&["fn", "canary", "start", "g", "2", "--percent", "5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("canary: version 2 gets 5% (current: version 1)"),
        "{out}"
    );

    // The canary is stored: a restarted Core still has it (its counts start again).
    let core = core.restart(CoreOptions::default());
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    let (status, body) = user.get("/v1/fn/_/g/canary");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["percent"], 5, "{body}");
    assert_eq!(tallies(&body), [], "{body}");
    let (status, body) = user.delete("/v1/fn/_/g/canary");
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = user.delete("/v1/fn/_/g/versions/2");
    assert_eq!(status, StatusCode::NO_CONTENT);
}
