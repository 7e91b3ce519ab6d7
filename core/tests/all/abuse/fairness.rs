//! CPU fairness: busy guests do not starve another user's short call. Four CPU-bound
//! JavaScript loops hold a worker's two runtime threads; a hello from another subject, timed
//! beside them, must still answer within a bound set from `bench/fairness.sh`
//! (docs/BENCHMARKS.md): a yielding guest lets its thread run what is ready and poll for
//! network events before its next turn, so a call's hops wait at most a slice each.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, example, wait_until};

/// A loop that computes for `ms` milliseconds.
const BUSY_JS: &str = "function fl_main(input) {\n\
     const end = Date.now() + input.ms;\n\
     let n = 0;\n\
     while (Date.now() < end) { n++; }\n\
     return { n };\n\
     }\n";

#[test]
fn busy_guests_do_not_starve_another_users_hello() {
    let core = Core::start(CoreOptions::default());
    let _worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let busy_user = core.subject("busy");
    let other = core.subject("other");
    let (status, body) = busy_user.upload("_", "busy", BUSY_JS.as_bytes().to_vec(), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = other.upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let time_hellos = |n: usize| -> Vec<Duration> {
        let mut times: Vec<Duration> = (0..n)
            .map(|_| {
                let started = Instant::now();
                let (status, body) = other.invoke("_", "hello", json!({ "name": "x" }));
                assert_eq!(status, StatusCode::OK, "{body}");
                started.elapsed()
            })
            .collect();
        times.sort();
        times
    };
    let alone = time_hellos(20);

    // Four loops of 8 s: two per runtime thread of the worker.
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let busy_user = busy_user.clone();
            std::thread::spawn(move || busy_user.invoke("_", "busy", json!({ "ms": 8000 })))
        })
        .collect();
    let admin = core.admin();
    wait_until(Duration::from_secs(10), "four loops in flight", || {
        let (_, workers) = admin.get("/v1/workers");
        workers["data"][0]["in_flight"].as_u64() >= Some(4)
    });
    let beside = time_hellos(30);
    // The loops were running all along (a hello may be counted too): they end after the
    // hellos, having computed.
    let (_, workers) = admin.get("/v1/workers");
    let in_flight = workers["data"][0]["in_flight"].as_u64().unwrap_or(0);
    assert!(in_flight >= 4, "{workers}");
    for l in loops {
        let (status, body) = l.join().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["data"]["n"].as_u64().unwrap() > 0, "{body}");
    }
    let p90 = beside[beside.len() * 9 / 10];
    eprintln!(
        "hello alone p50 {:?}; beside 4 busy loops p50 {:?}, p90 {p90:?}, max {:?}",
        alone[alone.len() / 2],
        beside[beside.len() / 2],
        beside[beside.len() - 1]
    );
    assert!(
        p90 < Duration::from_millis(150),
        "hello's p90 beside busy loops is {p90:?}: {beside:?}"
    );
}
