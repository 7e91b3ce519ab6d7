//! Several Cores over one PostgreSQL database: what is changed through one is served by the
//! others at once, because each drops its in-memory copies when another tells it (PostgreSQL
//! `LISTEN`/`NOTIFY`, `core/src/peers.rs`), and exactly one of them runs the event connectors.
//! Each Core here has its own worker; `failover.rs` has two Cores sharing two workers through
//! the death of one.

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
