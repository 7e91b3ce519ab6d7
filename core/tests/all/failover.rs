//! No single point of failure: two Cores over one PostgreSQL and two Workers joined to both
//! lose nothing but the calls in flight when one Core is killed with `kill -9`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use funless_testkit::{Collector, Received};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Core, CoreOptions, TempDatabase, Worker, example, wait_until};

/// A function uploaded through A is invoked through B at once; then, under a steady load
/// from clients that go to B when A refuses a connection, with asynchronous invocations
/// accepted by A still running and a cron schedule firing every second, A is killed:
/// every call is answered but those in flight on A (counted, at most one per client), every
/// asynchronous invocation completes through B (a non-retryable one is recorded as lost),
/// the schedule fires once per tick before and after the kill, and A, restarted, rejoins.
#[test]
fn two_cores_and_two_workers_lose_nothing_when_one_core_dies() {
    let db = TempDatabase::create();
    let options = |name: &str| CoreOptions {
        database_url: Some(db.url.clone()),
        extra: vec!["--node-name".into(), name.into()],
        ..CoreOptions::default()
    };
    let a = Core::start(options("core-a"));
    wait_until(Duration::from_secs(10), "A to take the lease", || {
        a.process
            .logs
            .contains("this Core holds the connectors' lease")
    });
    let b = Core::start_beside(&a, options("core-b"));
    let both = format!("{},{}", a.cluster, b.cluster);
    let _w1 = Worker::start_finding("w1", &a, &["--core", &both], &[]);
    let _w2 = Worker::start_finding("w2", &a, &["--core", &both], &[]);
    for core in [&a, &b] {
        core.wait_for_workers(&["w1", "w2"]);
    }
    let (through_a, through_b) = (a.client(), b.client());

    // Uploaded through A, invoked through B at once.
    let (status, body) = through_a.upload("_", "f", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = through_b.invoke("_", "f", json!({"name": "b"}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello b!"))
    );

    // A schedule every second whose function tells a collector which tick it ran for.
    let ticks = Received::default();
    let collector = Collector::start(0, ticks.clone());
    let tick = format!(
        "async function fl_main(input) {{\n  const r = await fetch(\"http://127.0.0.1:{}/tick\", \
         {{ method: \"POST\", body: JSON.stringify(input), headers: {{ \"content-type\": \"application/json\" }} }});\n  \
         return {{ status: r.status }};\n}}\n",
        collector.port
    );
    let (status, body) = through_a.upload_fields(
        "_",
        "tick",
        tick.into_bytes(),
        &[
            (
                "events",
                json!([{ "type": "cron", "params": { "schedule": "* * * * * *" } }]),
            ),
            (
                "metadata",
                json!({ "allow_hosts": [format!("127.0.0.1:{}", collector.port)] }),
            ),
        ],
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(15), "three ticks", || {
        scheduled(&ticks).len() >= 3
    });

    // The sleeps A accepts run across the kill.
    let (status, body) = through_a.upload("_", "sleep", example("sleep_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = through_a.upload_fields(
        "_",
        "once",
        example("sleep_fl"),
        &[("metadata", json!({"retryable": false}))],
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Two clients invoke steadily, each through A until A refuses a connection, then B.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let urls = [a.url.clone(), b.url.clone()];
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, answered) = (stop.clone(), answered.clone());
            let (urls, token) = (urls.clone(), a.token.clone());
            std::thread::spawn(move || steady_client(&urls, &token, &stop, &answered))
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "50 calls answered through A",
        || answered.load(Ordering::SeqCst) >= 50,
    );
    let accept = |function: &str| {
        let (status, body) = through_a.post_json(
            &format!("/v1/fn/_/{function}?blocking=false"),
            &json!({"args": {"ms": 3000}}),
        );
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["data"]["activation_id"].as_str().unwrap().to_string()
    };
    let retried: Vec<String> = (0..4).map(|_| accept("sleep")).collect();
    let lost = accept("once");

    let mut a = a;
    a.process.kill();
    let killed_at = unix_ms();
    let at_kill = answered.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(15),
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

    // Every asynchronous invocation A accepted completes through B.
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
    for id in &retried {
        assert_eq!(status_of(id)["result"]["payload"], "Slept for 3 seconds");
    }
    assert_eq!(status_of(&lost)["error"]["reason"], "core_lost");

    // The schedule goes on from B.
    wait_until(
        Duration::from_secs(20),
        "three ticks after the kill",
        || scheduled(&ticks).iter().filter(|&&t| t > killed_at).count() >= 3,
    );

    // A, restarted, rejoins: it sees both workers and serves.
    let a = a.restart(options("core-a"));
    a.wait_for_workers(&["w1", "w2"]);
    let (status, body) = a.client().invoke("_", "f", json!({"name": "again"}));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello again!"))
    );
    let restarted_at = unix_ms();
    wait_until(
        Duration::from_secs(15),
        "three ticks after the restart",
        || {
            scheduled(&ticks)
                .iter()
                .filter(|&&t| t > restarted_at)
                .count()
                >= 3
        },
    );

    // Once per tick: no tick ran twice, and ticks are a second apart but across the kill,
    // where the schedule waited for B to take the lease.
    let mut all = scheduled(&ticks);
    let count = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), count, "a tick ran twice: {all:?}");
    let mut gaps = Vec::new();
    for pair in all.windows(2) {
        let gap = pair[1] - pair[0];
        if pair[0] < killed_at && pair[1] > killed_at {
            eprintln!("the schedule skipped {gap} ms across the kill");
            assert!(gap <= 15_000, "{gap} ms without a tick across the kill");
        } else if gap != 1_000 {
            gaps.push((pair[0], gap));
        }
    }
    assert!(gaps.is_empty(), "ticks not a second apart: {gaps:?}");
    drop(collector);
}

/// The ticks the schedule ran for (`scheduled_at_ms`), in the order they arrived.
fn scheduled(ticks: &Received) -> Vec<i64> {
    let ticks = ticks.lock().unwrap();
    ticks
        .iter()
        .filter_map(|(_, body)| serde_json::from_slice::<Value>(body).ok())
        .filter_map(|tick| tick["scheduled_at_ms"].as_i64())
        .collect()
}

fn unix_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
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
