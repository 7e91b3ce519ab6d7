//! Long-running services with real processes: replicas placed on workers, kept alive by their
//! child spec, moved off a killed worker, failed past their intensity, stopped on delete, and
//! adopted (not restarted) by a restarted Core. Output is observed through the logs API: the
//! example service writes numbered lines on stdout.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Worker, example, wait_until};

mod bridge;
mod changes;
mod javascript;
mod several_cores;

/// The Core's heartbeat time-out in these tests, milliseconds.
const HEARTBEAT_MS: u64 = 2000;

fn core() -> Core {
    Core::start(CoreOptions {
        extra: vec!["--heartbeat-timeout-ms".into(), HEARTBEAT_MS.to_string()],
        ..CoreOptions::default()
    })
}

/// A Core and these workers (by name), all joined.
fn cluster(names: &[&str]) -> (Core, Vec<Worker>) {
    let core = core();
    let workers = names
        .iter()
        .map(|name| Worker::start(name, &core))
        .collect();
    core.wait_for_workers(names);
    (core, workers)
}

/// `POST /v1/svc/{name}`: the example service with this spec.
fn create(client: &Client, name: &str, spec: Value) -> (StatusCode, Value) {
    create_with(client, name, &example("ticker_service"), spec)
}

/// `POST /v1/svc/{name}`: this program with this spec.
fn create_with(client: &Client, name: &str, code: &[u8], spec: Value) -> (StatusCode, Value) {
    let boundary = "funless-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"code\"; filename=\"s.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(code);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    client.send(
        reqwest::Method::POST,
        &format!("/v1/svc/{name}"),
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
}

fn service(client: &Client, name: &str) -> Value {
    let (status, body) = client.get(&format!("/v1/svc/{name}"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

fn logs(client: &Client, name: &str) -> Vec<Value> {
    let (status, body) = client.get(&format!("/v1/svc/{name}/logs?lines=1000"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].as_array().unwrap().clone()
}

/// Replica `index`'s state and worker.
fn replica(info: &Value, index: usize) -> (String, String) {
    let r = &info["replicas"][index];
    (
        r["state"].as_str().unwrap_or_default().to_string(),
        r["worker"].as_str().unwrap_or_default().to_string(),
    )
}

fn both_running_apart(info: &Value) -> bool {
    let (a, wa) = replica(info, 0);
    let (b, wb) = replica(info, 1);
    a == "running" && b == "running" && wa != wb
}

/// The tick numbers replica `index` wrote on `worker`.
fn ticks(lines: &[Value], index: u64, worker: &str) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l["replica"] == index && l["worker"] == worker && l["stream"] == "stdout")
        .filter_map(|l| {
            l["line"]
                .as_str()?
                .strip_prefix("tick ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The replicas under a worker's `services` supervisor in the live tree.
fn tree_replicas(core: &Core, worker: &str) -> Vec<Value> {
    let (status, body) = core.admin().get("/v1/admin/tree");
    assert_eq!(status, StatusCode::OK, "{body}");
    let tree = body["data"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == worker)
        .map(|w| w["tree"].clone())
        .unwrap_or(Value::Null);
    tree["children"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "services")
        .and_then(|s| s["children"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_permanent_service_runs_on_two_workers_and_moves_off_a_killed_one() {
    let core = core();
    let mut w1 = Worker::start("w1", &core);
    let mut w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "ticker",
        json!({ "replicas": 2, "env": { "TICK_MS": "100" }, "max_restarts": 5 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["spec"]["restart"], "permanent", "{body}");
    wait_until(
        Duration::from_secs(30),
        "two replicas on two workers",
        || both_running_apart(&service(&client, "ticker")),
    );
    // The live tree shows each replica under its worker's services supervisor.
    for worker in ["w1", "w2"] {
        let replicas = tree_replicas(&core, worker);
        assert_eq!(replicas.len(), 1, "{worker}: {replicas:?}");
        assert!(
            replicas[0]["name"].as_str().unwrap().starts_with("ticker"),
            "{replicas:?}"
        );
        assert_eq!(replicas[0]["restart"], "temporary");
    }
    // Both write their lines, read through the logs API.
    wait_until(Duration::from_secs(10), "output of both replicas", || {
        let lines = logs(&client, "ticker");
        let info = service(&client, "ticker");
        let (_, w0) = replica(&info, 0);
        let (_, w1_) = replica(&info, 1);
        ticks(&lines, 0, &w0).len() >= 3 && ticks(&lines, 1, &w1_).len() >= 3
    });

    // kill -9 the worker of replica 0: it runs again on the other one.
    let (_, victim) = replica(&service(&client, "ticker"), 0);
    let survivor = if victim == "w1" { "w2" } else { "w1" };
    let killed_at = Instant::now();
    let killed_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    if victim == "w1" {
        w1.process.kill();
    } else {
        w2.process.kill();
    }
    wait_until(
        Duration::from_millis(HEARTBEAT_MS + 5000),
        "replica 0 on the surviving worker",
        || replica(&service(&client, "ticker"), 0) == ("running".into(), survivor.into()),
    );
    let moved = killed_at.elapsed();
    eprintln!("replica 0 ran again on {survivor} {moved:?} after kill -9 of {victim}");
    assert!(
        moved <= Duration::from_millis(HEARTBEAT_MS + 1000),
        "replica 0 took {moved:?} to run again (heartbeat time-out {HEARTBEAT_MS} ms)"
    );
    // Its output continues, from the surviving worker.
    wait_until(
        Duration::from_secs(5),
        "replica 0's output after the move",
        || {
            logs(&client, "ticker").iter().any(|l| {
                l["replica"] == 0
                    && l["worker"] == survivor
                    && l["at_ms"].as_u64().unwrap() > killed_ms
            })
        },
    );
    let info = service(&client, "ticker");
    assert_eq!(info["replicas"][0]["restarts"], 1, "{info}");
    assert!(
        info["replicas"][0]["last_exit"]
            .as_str()
            .unwrap()
            .contains(&victim),
        "{info}"
    );
    assert_eq!(info["state"], "running");
    assert_eq!(tree_replicas(&core, survivor).len(), 2);
}

#[test]
fn a_service_failing_on_start_is_restarted_with_backoff_until_it_fails() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "crasher",
        json!({
            "env": { "EXIT_CODE": "1" },
            "max_restarts": 3,
            "period_ms": 20000,
            "backoff_ms": 150,
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "the service failed", || {
        service(&client, "crasher")["state"] == "failed"
    });
    let info = service(&client, "crasher");
    let reason = info["reason"].as_str().unwrap();
    assert!(
        reason.contains("restart intensity exceeded") && reason.contains("exit code 1"),
        "{info}"
    );
    assert_eq!(info["replicas"][0]["restarts"], 3, "{info}");
    assert_eq!(info["replicas"][0]["state"], "stopped", "{info}");
    // Four runs (the first and three restarts), each further apart: the back-off doubles.
    let starts: Vec<u64> = logs(&client, "crasher")
        .iter()
        .filter(|l| l["stream"] == "stderr")
        .map(|l| l["at_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.len(), 4, "{starts:?}");
    for (gap, least) in starts.windows(2).map(|w| w[1] - w[0]).zip([150, 300, 600]) {
        assert!(gap >= least - 20, "gaps {starts:?}: {gap} < {least}");
    }
    // The metrics count the restarts and the failure (the gauge follows within a tick).
    wait_until(Duration::from_secs(5), "the service metrics", || {
        let (_, metrics) = client.get("/metrics");
        let metrics = metrics.as_str().unwrap_or_default().to_string();
        metrics.contains("funless_service_failures_total 1")
            && metrics.contains("funless_service_restarts_total 3")
            && metrics.contains("funless_service_replicas{state=\"stopped\"} 1")
    });
    // The failure is stored: the CLI shows it too.
    let (code, out, err) = core.fl(&["svc", "get", "crasher"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("state:    failed"), "{out}");
}

#[test]
fn replicas_run_only_on_workers_with_the_services_tag() {
    let core = core();
    let _w1 = Worker::start("w1", &core);
    let _w2 = Worker::start_with("w2", &core, &["--tag", "edge"]);
    core.wait_for_workers(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "tagged",
        json!({ "replicas": 2, "tag": "edge", "env": { "TICK_MS": "100" } }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "both replicas running", || {
        let info = service(&client, "tagged");
        replica(&info, 0).0 == "running" && replica(&info, 1).0 == "running"
    });
    let info = service(&client, "tagged");
    assert_eq!(replica(&info, 0).1, "w2", "{info}");
    assert_eq!(replica(&info, 1).1, "w2", "{info}");
    assert!(tree_replicas(&core, "w1").is_empty());
}

#[test]
fn a_transient_service_that_exits_0_is_not_restarted() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "oneshot",
        json!({ "restart": "transient", "env": { "TICKS": "2", "TICK_MS": "50" } }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // It ran (its two lines) and ended normally.
    wait_until(Duration::from_secs(30), "the replica exited", || {
        service(&client, "oneshot")["replicas"][0]["state"] == "exited"
    });
    let info = service(&client, "oneshot");
    assert_eq!(info["replicas"][0]["last_exit"], "exit code 0", "{info}");
    assert_eq!(info["state"], "exited", "{info}");
    assert_eq!(ticks(&logs(&client, "oneshot"), 0, "w1"), [1, 2]);
    // And stays ended: no restart within several back-offs (200 ms each by default).
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let info = service(&client, "oneshot");
        assert_eq!(info["replicas"][0]["restarts"], 0, "{info}");
        assert_eq!(info["replicas"][0]["state"], "exited", "{info}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ticks(&logs(&client, "oneshot"), 0, "w1"), [1, 2]);
    let (code, out, err) = core.fl(&["svc", "logs", "oneshot"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "[w1.0 stdout] tick 1 from oneshot.0",
            "[w1.0 stdout] tick 2 from oneshot.0"
        ],
        "{out}"
    );
}

#[test]
fn delete_stops_every_replica_within_the_grace_period() {
    let (core, _workers) = cluster(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "doomed",
        json!({ "replicas": 2, "env": { "TICK_MS": "100" } }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "two replicas running", || {
        both_running_apart(&service(&client, "doomed"))
    });
    assert_eq!(
        tree_replicas(&core, "w1").len() + tree_replicas(&core, "w2").len(),
        2
    );
    let started = Instant::now();
    let (status, body) = client.delete("/v1/svc/doomed");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // The grace period of a stop is 10 s; the answer comes once every replica stopped.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(tree_replicas(&core, "w1").is_empty());
    assert!(tree_replicas(&core, "w2").is_empty());
    let (status, _) = client.get("/v1/svc/doomed");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = client.get("/v1/svc");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!([]));
}

#[test]
fn a_restarted_core_adopts_running_replicas_instead_of_restarting_them() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    // A service with a history: two restarts, then failed.
    let (status, body) = create(
        &client,
        "crashy",
        json!({ "env": { "TICKS": "1", "EXIT_CODE": "3" }, "max_restarts": 2, "period_ms": 60000, "backoff_ms": 100 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(
        Duration::from_secs(30),
        "the crashing service failed",
        || service(&client, "crashy")["state"] == "failed",
    );
    let crashy = service(&client, "crashy")["replicas"][0].clone();
    assert_eq!(crashy["restarts"], 2, "{crashy}");
    assert_eq!(crashy["last_exit"], "exit code 3", "{crashy}");
    let (status, body) = create(&client, "steady", json!({ "env": { "TICK_MS": "100" } }));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "the replica running", || {
        replica(&service(&client, "steady"), 0).0 == "running"
    });
    let before = tree_replicas(&core, "w1");
    assert_eq!(before.len(), 1, "{before:?}");
    let token = client.token.clone().unwrap();

    let restarted_at = Instant::now();
    let core = core.restart(CoreOptions {
        extra: vec!["--heartbeat-timeout-ms".into(), HEARTBEAT_MS.to_string()],
        ..CoreOptions::default()
    });
    let client = core.client().with_token(&token);
    core.wait_for_workers(&["w1"]);
    wait_until(Duration::from_secs(30), "the replica adopted", || {
        replica(&service(&client, "steady"), 0) == ("running".into(), "w1".into())
    });
    // The history outlives the Core (stored within a tick of each exit, long before this).
    let after = service(&client, "crashy");
    assert_eq!(after["state"], "failed", "{after}");
    assert_eq!(after["replicas"][0]["restarts"], 2, "{after}");
    assert_eq!(after["replicas"][0]["last_exit"], "exit code 3", "{after}");
    let info = service(&client, "steady");
    // The same run: no restart, and it has been up since before the Core's restart.
    assert_eq!(info["replicas"][0]["restarts"], 0, "{info}");
    let uptime = info["replicas"][0]["uptime_ms"].as_u64().unwrap();
    assert!(
        uptime > restarted_at.elapsed().as_millis() as u64,
        "up {uptime} ms: {info}"
    );
    let after = tree_replicas(&core, "w1");
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        after[0]["uptime_ms"].as_u64() > before[0]["uptime_ms"].as_u64(),
        "{before:?} {after:?}"
    );
    // Its counter never started again from 1.
    let lines = logs(&client, "steady");
    let ticks = ticks(&lines, 0, "w1");
    assert_eq!(ticks.iter().filter(|t| **t == 1).count(), 1, "{ticks:?}");
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{ticks:?}");
}

#[test]
fn bad_services_are_refused_with_clear_errors() {
    let core = core();
    let client = core.client();
    let (status, body) = create(&client, "x", json!({ "restart": "sometimes" }));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        crate::harness::detail(&body).contains("restart must be"),
        "{body}"
    );
    let (status, body) = create(&client, "x", json!({ "replicas": 99 }));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = create(&client, "x", json!({ "colour": "red" }));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A FunLess-ABI function is not a program that runs until it exits.
    let (status, body) = client.send(
        reqwest::Method::POST,
        "/v1/svc/y",
        "multipart/form-data; boundary=b",
        [
            &b"--b\r\nContent-Disposition: form-data; name=\"code\"; filename=\"f.wasm\"\r\n\r\n"[..],
            example("hello_fl").as_slice(),
            &b"\r\n--b--\r\n"[..],
        ]
        .concat(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        crate::harness::detail(&body).contains("WASI command"),
        "{body}"
    );
    let (status, body) = create(&client, "dup", json!({}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = create(&client, "dup", json!({}));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Another subject neither sees it nor may delete it.
    let other = core.subject("other");
    let (status, _) = other.get("/v1/svc/dup");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = other.delete("/v1/svc/dup");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = other.get("/v1/svc");
    assert_eq!((status, body["data"].clone()), (StatusCode::OK, json!([])));
    let (status, _) = client.get("/v1/svc/dup/logs?lines=0");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (code, out, err) = core.fl(&["svc", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("dup  running  0/1 running"), "{out}");
    let (code, _, err) = core.fl(&["svc", "delete", "dup"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_killed_replica_is_restarted_by_its_spec_and_the_tree_shows_it() {
    let core = Core::start(CoreOptions {
        extra: vec!["--fault-injection".into()],
        ..CoreOptions::default()
    });
    let _w1 = Worker::start_with("w1", &core, &["--fault-injection"]);
    core.wait_for_workers(&["w1"]);
    let admin = core.admin();
    let (status, body) = create(&admin, "kept", json!({ "env": { "TICK_MS": "100" } }));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "the replica running", || {
        replica(&service(&admin, "kept"), 0).0 == "running"
    });
    let replicas = tree_replicas(&core, "w1");
    assert_eq!(replicas.len(), 1, "{replicas:?}");
    assert_eq!(replicas[0]["name"], "kept.0");
    assert!(
        replicas[0]["role"]
            .as_str()
            .unwrap()
            .contains("permanent, 0 restarts"),
        "{replicas:?}"
    );
    let (status, body) = admin.post_json(
        "/v1/admin/crash",
        &json!({ "node": "w1", "actor": "services/kept.0" }),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(Duration::from_secs(10), "the replica restarted", || {
        let info = service(&admin, "kept");
        info["replicas"][0]["restarts"] == 1 && replica(&info, 0).0 == "running"
    });
    let info = service(&admin, "kept");
    assert_eq!(
        info["replicas"][0]["last_exit"], "the replica was stopped or killed",
        "{info}"
    );
    wait_until(
        Duration::from_secs(5),
        "the new replica in the tree",
        || {
            tree_replicas(&core, "w1").iter().any(|r| {
                r["name"] == "kept.0"
                    && r["role"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("permanent, 1 restarts")
            })
        },
    );
}
