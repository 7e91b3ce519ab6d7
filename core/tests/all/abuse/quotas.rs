//! Per-subject quotas: modules, functions, stored code bytes, sinks, event connectors and
//! invocations in flight. Each is filled, the next attempt is a 429 that names the quota, its
//! limit and what to do, nothing is stored, a delete (or the end of a call) frees the slot, and
//! other subjects and the admin are not held.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, detail, example, wait_until};

fn module(name: &str) -> Value {
    json!({ "module": { "name": name } })
}

/// The names a subject's module listing (`GET /v1/fn`) shows.
fn modules_of(client: &Client) -> Vec<String> {
    let (status, body) = client.get("/v1/fn");
    assert_eq!(status, StatusCode::OK, "{body}");
    names(&body["data"])
}

/// The function names of one of a subject's modules.
fn functions_of(client: &Client, module: &str) -> Vec<String> {
    let (status, body) = client.get(&format!("/v1/fn/{module}"));
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut names = names(&body["data"]["functions"]);
    names.sort();
    names
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["name"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts a 429 whose detail names `quota` and says `what to do`.
fn assert_refused(answer: (StatusCode, Value), quota: &str, what_to_do: &str) -> String {
    let (status, body) = answer;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let text = detail(&body).to_string();
    assert!(
        text.contains(&format!("quota exceeded ({quota})")),
        "{text}"
    );
    assert!(text.contains(what_to_do), "{text}");
    text
}

/// The count of quota refusals of `quota` in the Core's metrics.
fn refusals(core: &Core, quota: &str) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", core.url))
        .unwrap()
        .text()
        .unwrap();
    let series = format!("funless_quota_refusals_total{{quota=\"{quota}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// `code` with a custom section of `extra` bytes: the same function, larger.
fn padded(code: &[u8], extra: usize) -> Vec<u8> {
    let name = b"pad";
    let mut out = code.to_vec();
    out.push(0);
    let mut size = 1 + name.len() + extra;
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + extra, 0);
    out
}

#[test]
fn modules_and_functions_past_their_quota_are_429_and_nothing_is_stored() {
    let core = Core::start(CoreOptions {
        extra: vec![
            "--quota-modules".into(),
            "2".into(),
            "--quota-functions".into(),
            "2".into(),
        ],
        ..CoreOptions::default()
    });
    let admin = core.admin();
    let alice = core.subject("alice");
    let bob = core.subject("bob");
    let hello = example("hello_fl");

    // Modules: two besides `_`, then a 429 that names the quota and stores nothing.
    for name in ["m1", "m2"] {
        let (status, body) = alice.post_json("/v1/fn", &module(name));
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let text = assert_refused(
        alice.post_json("/v1/fn", &module("m3")),
        "quota-modules",
        "delete one first",
    );
    assert!(text.contains("at most 2 modules"), "{text}");
    assert_eq!(modules_of(&alice), ["_", "m1", "m2"]);
    assert_eq!(alice.get("/v1/fn/m3").0, StatusCode::NOT_FOUND);
    // A name it has already is still a conflict, quota or not.
    assert_eq!(
        alice.post_json("/v1/fn", &module("m1")).0,
        StatusCode::CONFLICT
    );
    // Another subject and the admin are not held by Alice's count.
    for name in ["m1", "m2"] {
        assert_eq!(
            bob.post_json("/v1/fn", &module(name)).0,
            StatusCode::CREATED
        );
    }
    for name in ["a1", "a2", "a3"] {
        assert_eq!(
            admin.post_json("/v1/fn", &module(name)).0,
            StatusCode::CREATED
        );
    }
    // A delete frees the slot.
    assert_eq!(alice.delete("/v1/fn/m2").0, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.post_json("/v1/fn", &module("m3")).0,
        StatusCode::CREATED
    );
    assert_eq!(modules_of(&alice), ["_", "m1", "m3"]);

    // Functions: two over all of Alice's modules, then a 429.
    assert_eq!(
        alice.upload("_", "f1", hello.clone(), false).0,
        StatusCode::CREATED
    );
    assert_eq!(
        alice.upload("m1", "f2", hello.clone(), false).0,
        StatusCode::CREATED
    );
    let text = assert_refused(
        alice.upload("_", "f3", hello.clone(), false),
        "quota-functions",
        "delete one first",
    );
    assert!(text.contains("at most 2 functions"), "{text}");
    assert_eq!(functions_of(&alice, "_"), ["f1"]);
    assert_eq!(alice.get("/v1/fn/_/f3").0, StatusCode::NOT_FOUND);
    // An update is no new function.
    assert_eq!(
        alice.upload("_", "f1", hello.clone(), true).0,
        StatusCode::OK
    );
    // Bob and the admin upload on.
    for name in ["f1", "f2"] {
        assert_eq!(
            bob.upload("_", name, hello.clone(), false).0,
            StatusCode::CREATED
        );
    }
    for name in ["f1", "f2", "f3"] {
        assert_eq!(
            admin.upload("_", name, hello.clone(), false).0,
            StatusCode::CREATED
        );
    }
    assert_eq!(alice.delete("/v1/fn/_/f1").0, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.upload("_", "f3", hello.clone(), false).0,
        StatusCode::CREATED
    );
    assert_eq!(functions_of(&alice, "_"), ["f3"]);

    // Racing creates for the last slots: exactly the quota's worth succeed.
    let carol = core.subject("carol");
    let modules: Vec<_> = (0..8)
        .map(|i| {
            let carol = carol.clone();
            std::thread::spawn(move || carol.post_json("/v1/fn", &module(&format!("r{i}"))).0)
        })
        .collect();
    let statuses: Vec<StatusCode> = modules.into_iter().map(|t| t.join().unwrap()).collect();
    let (created, refused) = created_and_refused(&statuses);
    assert_eq!((created, refused), (2, 6), "{statuses:?}");
    assert_eq!(modules_of(&carol).len(), 3);
    let uploads: Vec<_> = (0..8)
        .map(|i| {
            let (carol, hello) = (carol.clone(), hello.clone());
            std::thread::spawn(move || carol.upload("_", &format!("g{i}"), hello, false).0)
        })
        .collect();
    let statuses: Vec<StatusCode> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2, "{statuses:?}");
    assert_eq!(functions_of(&carol, "_").len(), 2);

    // Every refusal is counted by quota.
    assert_eq!(refusals(&core, "modules"), 7);
    assert_eq!(refusals(&core, "functions"), 7);
}

#[test]
fn stored_bytes_sinks_and_connectors_past_their_quota_are_429() {
    let hello = example("hello_fl");
    let size = hello.len();
    // Two copies of hello fit, a third does not.
    let limit = 2 * size + size / 2;
    let core = Core::start(CoreOptions {
        extra: vec![
            "--quota-stored-bytes".into(),
            limit.to_string(),
            "--quota-sinks".into(),
            "2".into(),
            "--quota-connectors".into(),
            "2".into(),
        ],
        ..CoreOptions::default()
    });
    let admin = core.admin();

    // Stored bytes.
    let alice = core.subject("alice");
    for name in ["a", "b"] {
        assert_eq!(
            alice.upload("_", name, hello.clone(), false).0,
            StatusCode::CREATED
        );
    }
    let text = assert_refused(
        alice.upload("_", "c", hello.clone(), false),
        "quota-stored-bytes",
        "delete or shrink a function first",
    );
    assert!(text.contains(&format!("at most {limit} bytes")), "{text}");
    assert_eq!(functions_of(&alice, "_"), ["a", "b"]);
    // An update counts its growth: too much is refused and leaves the old version...
    assert_refused(
        alice.upload("_", "a", padded(&hello, size), true),
        "quota-stored-bytes",
        "delete or shrink",
    );
    let (_, body) = alice.get("/v1/fn/_/a");
    assert_eq!(body["data"]["size"], json!(size), "{body}");
    // ...while one that fits, or does not grow, passes.
    assert_eq!(
        alice.upload("_", "a", padded(&hello, size / 4), true).0,
        StatusCode::OK
    );
    assert_eq!(
        alice.upload("_", "a", hello.clone(), true).0,
        StatusCode::OK
    );
    for name in ["a", "b", "c"] {
        assert_eq!(
            admin.upload("_", name, hello.clone(), false).0,
            StatusCode::CREATED
        );
    }
    assert_eq!(alice.delete("/v1/fn/_/b").0, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.upload("_", "c", hello.clone(), false).0,
        StatusCode::CREATED
    );

    // Sinks, over all of a subject's functions.
    let bob = core.subject("bob");
    let sink = json!({ "type": "webhook", "params": { "url": "http://127.0.0.1:9/hook" } });
    let (status, body) = bob.upload_with_sinks(
        "_",
        "s1",
        hello.clone(),
        json!([sink.clone(), sink.clone()]),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let text = assert_refused(
        bob.upload_with_sinks("_", "s2", hello.clone(), json!([sink.clone()])),
        "quota-sinks",
        "remove one first",
    );
    assert!(text.contains("at most 2 sinks"), "{text}");
    assert_eq!(functions_of(&bob, "_"), ["s1"]);
    // A function without sinks is not held by it.
    assert_eq!(
        bob.upload("_", "plain", hello.clone(), false).0,
        StatusCode::CREATED
    );
    assert_eq!(bob.delete("/v1/fn/_/s1").0, StatusCode::NO_CONTENT);
    let (status, body) = bob.upload_with_sinks("_", "s2", hello.clone(), json!([sink.clone()]));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let three = json!([sink.clone(), sink.clone(), sink]);
    let (status, body) = admin.upload_with_sinks("_", "s9", hello.clone(), three);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Event connectors, over all of a subject's functions (a yearly schedule: never fires).
    let carol = core.subject("carol");
    let cron = json!({ "type": "cron", "params": { "schedule": "0 0 1 1 *" } });
    let (status, body) = carol.upload_with_events(
        "_",
        "e1",
        hello.clone(),
        json!([cron.clone(), cron.clone()]),
    );
    assert!(status.is_success(), "{body}");
    let text = assert_refused(
        carol.upload_with_events("_", "e2", hello.clone(), json!([cron.clone()])),
        "quota-connectors",
        "remove one first",
    );
    assert!(text.contains("at most 2 event connectors"), "{text}");
    assert_eq!(carol.get("/v1/fn/_/e2").0, StatusCode::NOT_FOUND);
    let (_, body) = carol.get("/v1/fn/_/e1");
    assert_eq!(
        body["data"]["connectors"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert_eq!(carol.delete("/v1/fn/_/e1").0, StatusCode::NO_CONTENT);
    let (status, body) = carol.upload_with_events("_", "e2", hello.clone(), json!([cron]));
    assert!(status.is_success(), "{body}");

    assert_eq!(refusals(&core, "stored_bytes"), 2);
    assert_eq!(refusals(&core, "sinks"), 1);
    assert_eq!(refusals(&core, "connectors"), 1);
}

#[test]
fn concurrent_invocations_past_the_quota_are_429_while_the_others_run() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        extra: vec!["--quota-concurrent-invocations".into(), "2".into()],
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let admin = core.admin();
    let alice = core.subject("alice");
    let bob = core.subject("bob");
    let (status, body) = alice.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "timeout_ms": 30000 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for who in [&bob, &admin] {
        let (status, body) = who.upload("_", "hello", example("hello_fl"), false);
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let in_flight = || -> u64 {
        let (_, body) = admin.get("/v1/workers");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["in_flight"].as_u64().unwrap())
            .sum()
    };

    // Two calls sleep; a third, while they run, is a 429.
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let alice = alice.clone();
            std::thread::spawn(move || {
                let answer = alice.invoke("_", "sleep", json!({ "ms": 4000 }));
                (answer, Instant::now())
            })
        })
        .collect();
    wait_until(Duration::from_secs(10), "two sleeps in flight", || {
        in_flight() == 2
    });
    let text = assert_refused(
        alice.invoke("_", "sleep", json!({ "ms": 1 })),
        "quota-concurrent-invocations",
        "retry when some finish",
    );
    let refused_at = Instant::now();
    assert!(text.contains("at most 2 invocations in flight"), "{text}");
    // Another subject and the admin are not held.
    for who in [&bob, &admin] {
        let (status, body) = who.invoke("_", "hello", json!({ "name": "x" }));
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for sleeper in sleepers {
        let ((status, body), ended) = sleeper.join().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["payload"], "Slept for 4000 ms", "{body}");
        assert!(ended > refused_at, "a sleep ended before the refusal");
    }
    // Their slots are back.
    let (status, body) = alice.invoke("_", "sleep", json!({ "ms": 1 }));
    assert_eq!(status, StatusCode::OK, "{body}");

    // Asynchronous calls hold a slot until their run ends.
    for _ in 0..2 {
        let (status, body) = alice.post_json(
            "/v1/fn/_/sleep?blocking=false",
            &json!({ "args": { "ms": 2000 } }),
        );
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_refused(
        alice.invoke("_", "sleep", json!({ "ms": 1 })),
        "quota-concurrent-invocations",
        "retry when some finish",
    );
    wait_until(Duration::from_secs(20), "the async sleeps to end", || {
        alice.invoke("_", "sleep", json!({ "ms": 1 })).0 == StatusCode::OK
    });

    // Errors give their slot back: a missing function, a function error, a time-out.
    let (status, body) = alice.upload_with(
        "_",
        "short",
        example("sleep_fl"),
        json!({ "timeout_ms": 300 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for _ in 0..3 {
        assert_eq!(
            alice.invoke("_", "missing", json!({})).0,
            StatusCode::NOT_FOUND
        );
        let (status, body) = alice.invoke("_", "sleep", json!({ "ms": "soon" }));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body, reason) = alice.invoke_with_reason("_", "short", json!({ "ms": 2000 }));
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(reason.as_deref(), Some("timeout"), "{body}");
    }

    // Callers that go away give their slot back without waiting for the run's end.
    let impatient = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for _ in 0..2 {
        let gone = impatient
            .post(format!("{}/v1/fn/_/sleep", core.url))
            .bearer_auth(alice.token.as_deref().unwrap())
            .json(&json!({ "args": { "ms": 20000 } }))
            .send();
        assert!(gone.is_err(), "the call answered before the client gave up");
    }
    // Their runs go on for 20 s on the worker; their slots come back well before.
    wait_until(
        Duration::from_secs(10),
        "the abandoned calls' slots",
        || alice.invoke("_", "sleep", json!({ "ms": 1 })).0 == StatusCode::OK,
    );
    let both: Vec<_> = (0..2)
        .map(|_| {
            let alice = alice.clone();
            std::thread::spawn(move || alice.invoke("_", "sleep", json!({ "ms": 500 })))
        })
        .collect();
    for call in both {
        let (status, body) = call.join().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(refusals(&core, "concurrent_invocations") >= 2);
}

/// `POST /v1/svc/{name}`: the ticker service example, no spec.
fn create_service(client: &Client, name: &str) -> (StatusCode, Value) {
    let boundary = "quota-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"s.wasm\"\r\n\
         Content-Type: application/wasm\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&example("ticker_service"));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    client.send(
        reqwest::Method::POST,
        &format!("/v1/svc/{name}"),
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

fn services_of(client: &Client) -> Vec<String> {
    let (status, body) = client.get("/v1/svc");
    assert_eq!(status, StatusCode::OK, "{body}");
    names(&body["data"])
}

#[test]
fn services_past_their_quota_are_429_and_nothing_is_stored() {
    // No worker: a service is stored and waits for one, which is all a quota counts.
    let core = Core::start(CoreOptions {
        extra: vec!["--quota-services".into(), "2".into()],
        ..CoreOptions::default()
    });
    let user = core.subject("svc_user");
    // Racing creates for the two slots: exactly two are stored.
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let user = user.clone();
            std::thread::spawn(move || create_service(&user, &format!("s{i}")).0)
        })
        .collect();
    let statuses: Vec<StatusCode> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    let (created, refused) = created_and_refused(&statuses);
    assert_eq!((created, refused), (2, 2), "{statuses:?}");
    let mut stored = services_of(&user);
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_refused(
        create_service(&user, "one_more"),
        "quota-services",
        "delete one first",
    );
    assert_eq!(services_of(&user).len(), 2);
    assert_eq!(refusals(&core, "services"), 3);
    // Another subject and the admin are not held by this one's services.
    let other = core.subject("svc_other");
    assert_eq!(create_service(&other, "mine").0, StatusCode::CREATED);
    assert_eq!(create_service(&core.admin(), "ops").0, StatusCode::CREATED);
    // A delete frees a slot.
    stored.sort();
    let (status, body) = user.delete(&format!("/v1/svc/{}", stored[0]));
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(create_service(&user, "one_more").0, StatusCode::CREATED);
}

/// How many of racing requests were answered 201, and how many 429.
fn created_and_refused(statuses: &[StatusCode]) -> (usize, usize) {
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    (
        count(StatusCode::CREATED),
        count(StatusCode::TOO_MANY_REQUESTS),
    )
}
