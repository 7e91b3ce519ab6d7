//! A sleeping function holds no OS thread: 1,000 concurrent 3-second `sleep` invocations on one
//! worker all finish within 4 s of wall time.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, example};

#[test]
fn a_thousand_concurrent_sleeps_on_one_worker_finish_within_four_seconds() {
    // One subject makes all 1,000 calls: its quota of calls in flight is lifted.
    let core = Core::start(CoreOptions {
        extra: vec!["--quota-concurrent-invocations".into(), "0".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let client = core.client();
    // Tiny functions: 1,000 of them fit any worker's memory filter.
    let (status, body) = client.upload_with(
        "_",
        "sleep",
        example("sleep_fl"),
        json!({ "capacity": 4 << 20 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let n = 1000;
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (client, barrier) = (client.clone(), barrier.clone());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    let t = Instant::now();
                    let r = client.invoke("_", "sleep", json!({}));
                    (r, t.elapsed())
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    let mut times = Vec::new();
    for handle in handles {
        let ((status, body), t) = handle.join().unwrap();
        times.push(t);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["payload"], "Slept for 3 seconds");
    }
    let took = started.elapsed();
    times.sort();
    eprintln!(
        "per call: min {:?} median {:?} max {:?}",
        times[0],
        times[n / 2],
        times[n - 1]
    );
    assert!(took < Duration::from_secs(4), "1,000 sleeps took {took:?}");
    eprintln!("1,000 concurrent 3 s sleeps took {took:?}");
}
