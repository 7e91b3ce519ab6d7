//! Services that change while they run: updates (rolling restarts), graceful stops, and a
//! component whose output goes to a local collector while its worker is killed.

use super::*;

/// `PUT /v1/svc/{name}` with a new spec only.
pub(super) fn update_spec(client: &Client, name: &str, spec: Value) -> (StatusCode, Value) {
    let boundary = "funless-test-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\n\r\n{spec}\r\n--{boundary}--\r\n"
    );
    client.send(
        reqwest::Method::PUT,
        &format!("/v1/svc/{name}"),
        &format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[test]
fn an_update_replaces_the_replicas_one_at_a_time_and_revives_a_failed_service() {
    let (core, _workers) = cluster(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = create(
        &client,
        "rolled",
        json!({ "replicas": 2, "env": { "TICK_MS": "100", "LABEL": "v1" } }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "two replicas running", || {
        both_running_apart(&service(&client, "rolled"))
    });
    let (status, body) = update_spec(
        &client,
        "rolled",
        json!({ "replicas": 2, "env": { "TICK_MS": "100", "LABEL": "v2" } }),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["spec"]["env"]["LABEL"], "v2", "{body}");
    // One at a time: while the update rolls, a replica always runs.
    let newest = |index: u64| {
        logs(&client, "rolled")
            .iter()
            .rev()
            .find(|l| l["replica"] == index && l["stream"] == "stdout")
            .and_then(|l| l["line"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(20), "both replicas on v2", || {
        let info = service(&client, "rolled");
        let running = (0..2).filter(|i| replica(&info, *i).0 == "running").count();
        assert!(running >= 1, "no replica running during the update: {info}");
        running == 2 && newest(0).ends_with(" v2") && newest(1).ends_with(" v2")
    });
    let info = service(&client, "rolled");
    for index in 0..2 {
        assert_eq!(info["replicas"][index]["restarts"], 1, "{info}");
        assert_eq!(
            info["replicas"][index]["last_exit"], "replaced by an update",
            "{info}"
        );
    }

    // A failed service runs again after an update that fixes it.
    let (status, body) = create(
        &client,
        "fixed",
        json!({ "env": { "EXIT_CODE": "3" }, "max_restarts": 0 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(20), "the service failed", || {
        service(&client, "fixed")["state"] == "failed"
    });
    let (status, body) = update_spec(&client, "fixed", json!({ "env": { "TICK_MS": "100" } }));
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(Duration::from_secs(20), "the fixed service running", || {
        let info = service(&client, "fixed");
        info["state"] == "running" && replica(&info, 0).0 == "running"
    });
    let (status, body) = client.send(
        reqwest::Method::PUT,
        "/v1/svc/fixed",
        "multipart/form-data; boundary=b",
        b"--b--\r\n".to_vec(),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[test]
fn a_stopping_replica_is_signalled_and_may_end_by_itself_within_its_grace() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    let spec = json!({ "env": { "STOP_ON_EOF": "1" }, "stop_grace_ms": 3000 });
    let (status, body) = create(&client, "polite", spec.clone());
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let said = |text: &str| {
        logs(&client, "polite")
            .iter()
            .filter(|l| l["line"].as_str().unwrap_or_default().ends_with(text))
            .count()
    };
    wait_until(Duration::from_secs(30), "the replica waiting", || {
        said("waiting for the stop signal") == 1
    });
    // An update replaces it: its stdin closes and it ends by itself, long before its grace
    // period would have it killed (a killed replica writes nothing more).
    let updated = Instant::now();
    let (status, body) = update_spec(&client, "polite", spec);
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_until(Duration::from_millis(2500), "the graceful stop", || {
        said("stopping gracefully") == 1
    });
    assert!(updated.elapsed() < Duration::from_secs(3));
    wait_until(Duration::from_secs(10), "the new replica waiting", || {
        said("waiting for the stop signal") == 2
            && replica(&service(&client, "polite"), 0).0 == "running"
    });
    // A delete answers as soon as the program ended, not after the grace period.
    let deleted = Instant::now();
    let (status, body) = client.delete("/v1/svc/polite");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        deleted.elapsed() < Duration::from_millis(2500),
        "{:?}",
        deleted.elapsed()
    );
}

#[test]
fn a_component_service_posts_to_a_local_collector_and_goes_on_after_its_worker_is_killed() {
    let servers = funless_testkit::Servers::start();
    let received = funless_testkit::Received::default();
    let collector = funless_testkit::Collector::start(0, received);
    let core = core();
    let mut w1 = Worker::start("w1", &core);
    let mut w2 = Worker::start("w2", &core);
    core.wait_for_workers(&["w1", "w2"]);
    let client = core.client();
    let (status, body) = create_with(
        &client,
        "poller",
        &example("poller_service_p2"),
        json!({
            "replicas": 2,
            "allow_hosts": [servers.http.to_string(), format!("127.0.0.1:{}", collector.port)],
            "env": {
                "POLL_URL": servers.bucket_url("status"),
                "WEBHOOK_URL": format!("http://127.0.0.1:{}/summaries", collector.port),
                "EVERY_MS": "100",
            },
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["abi"], "wasi_component", "{body}");
    wait_until(
        Duration::from_secs(30),
        "two replicas on two workers",
        || both_running_apart(&service(&client, "poller")),
    );
    // Summaries of polls, from each replica, arrive at the collector.
    let from = |replica: &str| {
        collector
            .bodies()
            .iter()
            .filter_map(|b| serde_json::from_slice::<Value>(b).ok())
            .filter(|s| s["from"] == replica && s["status"].as_u64().is_some_and(|c| c > 0))
            .count()
    };
    wait_until(
        Duration::from_secs(10),
        "summaries of both replicas",
        || from("poller.0") >= 3 && from("poller.1") >= 3,
    );
    let polls = servers.http_requests();
    assert!(polls >= 6, "{polls}");

    let (_, victim) = replica(&service(&client, "poller"), 0);
    let killed_at = Instant::now();
    if victim == "w1" {
        w1.process.kill();
    } else {
        w2.process.kill();
    }
    let before = from("poller.0");
    wait_until(
        Duration::from_millis(HEARTBEAT_MS + 5000),
        "replica 0's summaries after the kill",
        || from("poller.0") >= before + 3,
    );
    let resumed = killed_at.elapsed();
    eprintln!("replica 0 posted again {resumed:?} after kill -9 of {victim}");
    assert!(
        resumed <= Duration::from_millis(HEARTBEAT_MS + 1000) + Duration::from_millis(500),
        "replica 0 posted again only {resumed:?} after the kill"
    );
}
