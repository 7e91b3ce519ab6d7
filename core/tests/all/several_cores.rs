//! Several Cores over one PostgreSQL database: what is changed through one is served by the
//! others at once, because each drops its in-memory copies when another tells it (PostgreSQL
//! `LISTEN`/`NOTIFY`, `core/src/peers.rs`). Each Core here has its own worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, TempDatabase, Worker, example, wait_until};

#[test]
fn a_change_through_one_core_is_served_by_another_at_once() {
    let db = TempDatabase::create();
    let options = || CoreOptions {
        database_url: Some(db.url.clone()),
        ..CoreOptions::default()
    };
    let a = Core::start(options());
    let b = Core::start_beside(&a, options());
    let _wa = Worker::start("wa", &a);
    a.wait_for_workers(&["wa"]);
    let _wb = Worker::start("wb", &b);
    b.wait_for_workers(&["wb"]);
    let (through_a, through_b) = (a.client(), b.client());

    // Uploaded through A, invoked through B (whose worker gets the code from B's store), so
    // B now holds the function in memory.
    let (status, body) = through_a.upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = through_b.invoke("_", "f", json!({"name": "b"}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello b!"))
    );

    // Updated through A: B runs the new code (its worker compiles it on first use) without
    // being told by anyone but A. Without the notification B would serve its copy of
    // version 1 for as long as it runs.
    let (status, body) = through_a.upload("_", "f", example("regex_fl"), true);
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(Duration::from_secs(10), "B to run version 2", || {
        let (status, body) = through_b.invoke("_", "f", json!({"name": "b"}));
        status == StatusCode::OK && body["data"]["matches"] == json!(["Hello", "bench"])
    });

    // A configuration change through A reaches B's invocations' environment.
    let (status, body) = through_a.upload("_", "env", example("env_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = through_b.invoke("_", "env", json!({}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["env"].get("GREETING"), None, "{body}");
    let (status, body) =
        through_a.put_json("/v1/config/_/env", &json!({"set": {"GREETING": "hi"}}));
    assert_eq!(status, StatusCode::OK, "{body}");
    // The code is warm on B's worker: what this measures is the notification's way.
    let changed = Instant::now();
    let mut calls = 0;
    wait_until(Duration::from_secs(10), "B to pass the new setting", || {
        calls += 1;
        let (_, body) = through_b.invoke("_", "env", json!({}));
        body["data"]["env"]["GREETING"] == "hi"
    });
    eprintln!(
        "a configuration change through Core A reached Core B's invocations within {} ms \
         ({calls} calls through B)",
        changed.elapsed().as_millis()
    );

    // A subject revoked through A is refused by B, which had its session in memory.
    let (status, body) = a
        .admin()
        .post_json("/v1/admin/subjects", &json!({"subject": {"name": "carol"}}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let carol = through_b.with_token(body["data"]["token"].as_str().unwrap());
    let (status, _) = carol.get("/v1/fn");
    assert_eq!(status, StatusCode::OK, "B knows carol");
    let (status, _) = a.admin().delete("/v1/admin/subjects/carol");
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(10), "B to refuse carol", || {
        carol.get("/v1/fn").0 == StatusCode::UNAUTHORIZED
    });

    // Deleted through A: B answers 404.
    let (status, _) = through_a.delete("/v1/fn/_/f");
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(10), "B to forget f", || {
        through_b.invoke("_", "f", json!({})).0 == StatusCode::NOT_FOUND
    });
}

/// A cron schedule runs on exactly one of two Cores (the one holding the connectors' lease):
/// one invocation per tick, not one per Core; killed with `kill -9`, that Core's lease goes to
/// the other within seconds, and restarted, it does not take it back.
#[test]
fn event_connectors_run_on_one_core_and_move_when_it_dies() {
    let db = TempDatabase::create();
    let options = || CoreOptions {
        database_url: Some(db.url.clone()),
        ..CoreOptions::default()
    };
    let a = Core::start(options());
    let lease = "this Core holds the connectors' lease";
    wait_until(Duration::from_secs(10), "A to take the lease", || {
        a.process.logs.contains(lease)
    });
    let b = Core::start_beside(&a, options());
    let wa = Worker::start("wa", &a);
    a.wait_for_workers(&["wa"]);
    let wb = Worker::start("wb", &b);
    b.wait_for_workers(&["wb"]);

    // Created through B, which does not hold the lease: A hears of it and runs the schedule,
    // on its own worker.
    let every_second = json!([{ "type": "cron", "params": { "schedule": "* * * * * *" } }]);
    let (status, body) =
        b.client()
            .upload_with_events("_", "tick", example("hello_fl"), every_second);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(
        Duration::from_secs(10),
        "A's schedule to fire twice",
        || wa.invocations_ok() >= 2.0,
    );
    // Four more ticks take three seconds or more: fired by both Cores they would take two.
    let (from, started) = (wa.invocations_ok(), Instant::now());
    wait_until(Duration::from_secs(10), "four more ticks", || {
        wa.invocations_ok() + wb.invocations_ok() >= from + 4.0
    });
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "four ticks in {:?}: more than one per second",
        started.elapsed()
    );
    assert_eq!(
        wb.invocations_ok(),
        0.0,
        "B ran none while A held the lease"
    );
    assert!(!b.process.logs.contains(lease));

    // A dies without a word: B takes the lease and the schedule goes on, on B's worker.
    let mut a = a;
    a.process.kill();
    let killed = Instant::now();
    wait_until(Duration::from_secs(15), "B to fire the schedule", || {
        wb.invocations_ok() >= 1.0
    });
    eprintln!(
        "B ran the schedule {} ms after A was killed",
        killed.elapsed().as_millis()
    );
    assert!(b.process.logs.contains(lease));

    // A, restarted, rejoins as a Core of the pair but leaves the lease to B: the ticks stay
    // one per second, all on B's worker.
    let a = a.restart(options());
    a.wait_for_workers(&["wa"]);
    let (at_a, at_b, started) = (wa.invocations_ok(), wb.invocations_ok(), Instant::now());
    wait_until(Duration::from_secs(10), "four more ticks on B", || {
        wb.invocations_ok() >= at_b + 4.0
    });
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "four ticks in {:?}",
        started.elapsed()
    );
    assert_eq!(wa.invocations_ok(), at_a, "the restarted A fired nothing");
    let (status, _) = a.client().get("/v1/fn/_/tick");
    assert_eq!(status, StatusCode::OK, "the restarted A serves");
}

/// One worker joined to two Cores serves both: a function uploaded through A is invoked
/// through B at once, on that worker. Under a steady load from clients that go to B when A
/// refuses the connection, A is killed with `kill -9`: every request is answered but those
/// in flight on A when it died, which are counted (at most one per client); A, restarted,
/// rejoins and serves again.
#[test]
fn one_worker_serves_two_cores_and_clients_move_when_one_dies() {
    let db = TempDatabase::create();
    let options = |name: &str| CoreOptions {
        database_url: Some(db.url.clone()),
        extra: vec!["--node-name".into(), name.into()],
        ..CoreOptions::default()
    };
    let a = Core::start(options("core-a"));
    let b = Core::start_beside(&a, options("core-b"));
    let both = format!("{},{}", a.cluster, b.cluster);
    let _w = Worker::start_finding("w", &a, &["--core", &both], &[]);
    a.wait_for_workers(&["w"]);
    b.wait_for_workers(&["w"]);

    let (status, body) = a.client().upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body, headers) = b
        .client()
        .post_with_headers("/v1/fn/_/f", &json!({"args": {"name": "b"}}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello b!");
    assert_eq!(headers["x-funless-worker"], "w");
    // Each Core sees the worker's live status.
    for core in [&a, &b] {
        let (_, body) = core.admin().get("/v1/workers");
        assert_eq!(body["data"][0]["name"], "w", "{body}");
        assert!(
            body["data"][0]["memory_free"].as_u64().unwrap_or(0) > 0,
            "{body}"
        );
    }

    // Two clients invoke steadily, each through A until A refuses a connection, then B.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let urls = [a.url.clone(), b.url.clone()];
    let token = a.token.clone();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let (urls, token) = (urls.clone(), token.clone());
            std::thread::spawn(move || steady_client(&urls, &token, &stop, &answered))
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "50 calls answered through A",
        || answered.load(Ordering::SeqCst) >= 50,
    );
    let mut a = a;
    a.process.kill();
    let at_kill = answered.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "50 calls answered after the kill",
        || answered.load(Ordering::SeqCst) >= at_kill + 50,
    );
    stop.store(true, Ordering::SeqCst);
    let mut totals = Load::default();
    for client in clients {
        let load = client.join().unwrap();
        assert!(
            load.lost <= 1,
            "{load:?}: more than the one call in flight was lost"
        );
        assert!(load.through_b > 0, "{load:?}: the client never moved to B");
        totals.through_a += load.through_a;
        totals.through_b += load.through_b;
        totals.lost += load.lost;
    }
    assert!(totals.through_a > 0, "{totals:?}");
    eprintln!(
        "steady load across the kill: {} answered by A, {} by B, {} lost in flight on A",
        totals.through_a, totals.through_b, totals.lost
    );

    // A comes back on its data directory and serves again, on the same worker.
    let a = a.restart(options("core-a"));
    a.wait_for_workers(&["w"]);
    let (status, body) = a.client().invoke("_", "f", json!({"name": "again"}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello again!"))
    );
}

/// What a steady client's calls came to.
#[derive(Debug, Default)]
struct Load {
    through_a: u64,
    through_b: u64,
    /// Calls whose connection to A broke after the request was sent.
    lost: u64,
}

/// Invokes `f` in a loop until `stop`, through the first of `urls` that takes a connection;
/// every call must be answered 200 but those in flight when their Core died.
fn steady_client(urls: &[String; 2], token: &str, stop: &AtomicBool, answered: &AtomicU64) -> Load {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut load = Load::default();
    let mut at = 0;
    while !stop.load(Ordering::SeqCst) {
        let answer = http
            .post(format!("{}/v1/fn/_/f", urls[at]))
            .bearer_auth(token)
            .json(&json!({"args": {"name": "load"}}))
            .send();
        match answer {
            Ok(response) => {
                assert_eq!(response.status(), StatusCode::OK, "through {}", urls[at]);
                answered.fetch_add(1, Ordering::SeqCst);
                if at == 0 {
                    load.through_a += 1;
                } else {
                    load.through_b += 1;
                }
            }
            Err(e) if e.is_connect() && at == 0 => at = 1,
            Err(e) if at == 0 => {
                // Sent to A, which died before answering.
                load.lost += 1;
                eprintln!("a call in flight on A was lost: {e}");
                at = 1;
            }
            Err(e) => panic!("B failed a call: {e}"),
        }
    }
    load
}

/// Asynchronous invocations are stored before their 202: accepted by a Core killed with
/// `kill -9` before they finished, they all complete, taken over by the other Core (which
/// answers for them from the store); a function that is not retryable is not run again, and
/// its record says why.
#[test]
fn async_invocations_accepted_by_a_dead_core_complete_on_another() {
    let db = TempDatabase::create();
    let options = |name: &str| CoreOptions {
        database_url: Some(db.url.clone()),
        extra: vec!["--node-name".into(), name.into()],
        ..CoreOptions::default()
    };
    let a = Core::start(options("core-a"));
    let b = Core::start_beside(&a, options("core-b"));
    let both = format!("{},{}", a.cluster, b.cluster);
    let _w = Worker::start_finding("w", &a, &["--core", &both], &[]);
    a.wait_for_workers(&["w"]);
    b.wait_for_workers(&["w"]);
    let (through_a, through_b) = (a.client(), b.client());
    let (status, body) = through_a.upload("_", "sleep", example("sleep_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = through_a.upload_fields(
        "_",
        "once",
        example("sleep_fl"),
        &[("metadata", json!({"retryable": false}))],
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let accept = |function: &str| {
        let (status, body) = through_a.post_json(
            &format!("/v1/fn/_/{function}?blocking=false"),
            &json!({"args": {"ms": 2000}}),
        );
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["data"]["activation_id"].as_str().unwrap().to_string()
    };
    let retried: Vec<String> = (0..4).map(|_| accept("sleep")).collect();
    let lost = accept("once");
    // Stored before they were answered: B sees them running.
    for id in retried.iter().chain([&lost]) {
        let (status, body) = through_b.get(&format!("/v1/activations/{id}"));
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["status"], "running", "{body}");
    }
    let mut a = a;
    a.process.kill();
    let killed = Instant::now();

    let status_of = |id: &str| {
        let (_, body) = through_b.get(&format!("/v1/activations/{id}"));
        body["data"].clone()
    };
    wait_until(
        Duration::from_secs(60),
        "B to complete A's invocations",
        || {
            retried
                .iter()
                .all(|id| status_of(id)["status"] == "success")
                && status_of(&lost)["status"] == "error"
        },
    );
    eprintln!(
        "the asynchronous invocations A accepted were complete {} ms after A was killed",
        killed.elapsed().as_millis()
    );
    for id in &retried {
        assert_eq!(status_of(id)["result"]["payload"], "Slept for 2000 ms");
    }
    let record = status_of(&lost);
    assert_eq!(record["error"]["reason"], "core_lost", "{record}");
    assert!(
        record["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("not retryable"),
        "{record}"
    );
}
