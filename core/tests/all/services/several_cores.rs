//! Services under two Cores over one PostgreSQL: one Core (the lease holder, `core/src/lease.rs`)
//! manages them, the other watches; the watcher takes over when the manager dies, adopting the
//! replicas that run instead of starting them again.

use super::changes::update_spec;
use super::*;
use crate::harness::TempDatabase;

#[test]
fn one_core_manages_the_services_and_another_adopts_them_when_it_dies() {
    let db = TempDatabase::create();
    let options = |name: &str| CoreOptions {
        database_url: Some(db.url.clone()),
        extra: vec![
            "--node-name".into(),
            name.into(),
            "--heartbeat-timeout-ms".into(),
            HEARTBEAT_MS.to_string(),
        ],
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
    let _w = Worker::start_finding("w", &a, &["--core", &both], &[]);
    a.wait_for_workers(&["w"]);
    b.wait_for_workers(&["w"]);
    let (through_a, through_b) = (a.client(), b.client());

    // Created through B, which only watches: A starts it, once; both show it running.
    let (status, body) = create(
        &through_b,
        "steady",
        json!({ "env": { "TICK_MS": "100", "LABEL": "v1" } }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for client in [&through_a, &through_b] {
        // A hears of the service from B's notification: 404 until then.
        wait_until(Duration::from_secs(30), "the replica running on w", || {
            let (status, body) = client.get("/v1/svc/steady");
            status == StatusCode::OK && replica(&body["data"], 0) == ("running".into(), "w".into())
        });
    }
    wait_until(Duration::from_secs(10), "20 ticks", || {
        ticks(&logs(&through_b, "steady"), 0, "w").len() >= 20
    });
    let before = tree_replicas(&b, "w");
    assert_eq!(before.len(), 1, "one replica, not one per Core: {before:?}");
    assert!(!b.process.logs.contains("this Core manages the services"));

    // A dies: B takes over and adopts the replica that runs.
    let mut a = a;
    a.process.kill();
    wait_until(Duration::from_secs(15), "B to manage the services", || {
        b.process.logs.contains("this Core manages the services")
    });
    // Past the adoption's grace (twice the heartbeat time-out, 6 s at least): the same run.
    let taken_over = Instant::now();
    wait_until(Duration::from_secs(30), "the grace to pass", || {
        taken_over.elapsed() > Duration::from_secs(8)
            && replica(&service(&through_b, "steady"), 0) == ("running".into(), "w".into())
    });
    let after = tree_replicas(&b, "w");
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        after[0]["uptime_ms"].as_u64() > before[0]["uptime_ms"].as_u64(),
        "restarted, not adopted: {before:?} {after:?}"
    );
    let info = service(&through_b, "steady");
    assert_eq!(info["replicas"][0]["restarts"], 0, "{info}");
    let counted = ticks(&logs(&through_b, "steady"), 0, "w");
    assert_eq!(
        counted.iter().filter(|t| **t == 1).count(),
        1,
        "{counted:?}"
    );

    // B acts on the services now: an update through it replaces the replica.
    let (status, body) = update_spec(
        &through_b,
        "steady",
        json!({ "env": { "TICK_MS": "100", "LABEL": "v2" } }),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(Duration::from_secs(20), "the replica on v2", || {
        let newest = logs(&through_b, "steady")
            .iter()
            .rev()
            .find(|l| l["stream"] == "stdout")
            .and_then(|l| l["line"].as_str().map(str::to_string))
            .unwrap_or_default();
        newest.ends_with(" v2") && replica(&service(&through_b, "steady"), 0).0 == "running"
    });
}
