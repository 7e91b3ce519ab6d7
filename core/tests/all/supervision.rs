//! The supervision trees, proven with fault injection (`--fault-injection`, `POST
//! /v1/admin/crash`): every actor of the Core's and a worker's tree is killed in turn under a
//! steady load and comes back with the tree's shape unchanged; a crashed invoker is answered
//! at once; a crashed connector and sink deliverer go on delivering, losing nothing; a
//! supervisor past its restart intensity takes the process down with a non-zero exit.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use funless_testkit::{Collector, Received};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Worker, detail, example, wait_until};

fn fault_injection() -> CoreOptions {
    CoreOptions {
        extra: vec!["--fault-injection".into()],
        ..CoreOptions::default()
    }
}

/// One answered invocation.
#[derive(Debug)]
struct Answer {
    answered: Instant,
    status: StatusCode,
    body: Value,
}

/// `threads` clients invoking `name` back to back until `stop` is set (a transport error is
/// recorded with status 599).
fn load(
    client: &Client,
    threads: usize,
    name: &'static str,
    args: Value,
    stop: &Arc<AtomicBool>,
) -> (Vec<thread::JoinHandle<()>>, Arc<Mutex<Vec<Answer>>>) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let handles = (0..threads)
        .map(|_| {
            let (client, stop, answers, args) =
                (client.clone(), stop.clone(), answers.clone(), args.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // A transport error is recorded as a failed answer (status 0).
                    let (status, body) = client
                        .try_invoke("_", name, args.clone())
                        .unwrap_or_else(|e| (StatusCode::from_u16(599).unwrap(), json!(e)));
                    answers.lock().unwrap().push(Answer {
                        answered: Instant::now(),
                        status,
                        body,
                    });
                }
            })
        })
        .collect();
    (handles, answers)
}

fn finish(handles: Vec<thread::JoinHandle<()>>, stop: &AtomicBool) {
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().unwrap();
    }
}

fn tree(core: &Core) -> Value {
    let (status, body) = core.admin().get("/v1/admin/tree");
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// The root of `node`'s tree (`core` or a worker's name) in a cluster tree.
fn root<'a>(cluster: &'a Value, node: &str) -> &'a Value {
    if node == "core" {
        return &cluster["core"];
    }
    cluster["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == node)
        .map(|w| &w["tree"])
        .unwrap_or(&Value::Null)
}

/// Every actor's path below `node`, depth first.
fn paths(node: &Value, prefix: &str, out: &mut Vec<String>) {
    for child in node["children"].as_array().into_iter().flatten() {
        let name = child["name"].as_str().unwrap();
        let path = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        out.push(path.clone());
        paths(child, &path, out);
    }
}

fn find<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(node, |node, segment| {
        node["children"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == segment)
    })
}

/// Names, kinds and strategies, recursively: what must not change across restarts.
fn shape(node: &Value) -> Value {
    json!({
        "name": node["name"],
        "kind": node["kind"],
        "strategy": node["strategy"],
        "children": node["children"].as_array().into_iter().flatten().map(shape).collect::<Vec<_>>(),
    })
}

fn try_crash(core: &Core, node: &str, actor: &str) -> (StatusCode, Value) {
    core.admin()
        .post_json("/v1/admin/crash", &json!({ "node": node, "actor": actor }))
}

fn crash(core: &Core, node: &str, actor: &str) -> Value {
    let (status, body) = try_crash(core, node, actor);
    assert_eq!(status, StatusCode::OK, "crash {node} {actor}: {body}");
    body
}

/// Every restart count of a tree, depth first.
fn restarts(node: &Value) -> Vec<u64> {
    let mut all = vec![node["restarts"].as_u64().unwrap_or(0)];
    for child in node["children"].as_array().into_iter().flatten() {
        all.extend(restarts(child));
    }
    all
}

#[test]
fn crash_requests_are_refused_without_fault_injection_and_name_what_is_wrong() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let before = tree(&core);
    assert!(
        find(&before["core"], "embedded/invocations").is_some(),
        "{before}"
    );
    // The tree is for admins only.
    let (status, _) = core.client().get("/v1/admin/tree");
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = core
        .client()
        .post_json("/v1/admin/crash", &json!({ "actor": "registry" }));
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Off on both nodes: the Core's actors and the worker's.
    for (node, actor) in [("core", "registry"), ("embedded", "gateway")] {
        let (status, body) = try_crash(&core, node, actor);
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(detail(&body).contains("--fault-injection"), "{body}");
    }
    let (status, body) = try_crash(&core, "core", " / ");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = try_crash(&core, "nosuch", "gateway");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(detail(&body).contains("nosuch"), "{body}");
    // Nothing was restarted by any of them.
    assert_eq!(restarts(&tree(&core)["core"]), restarts(&before["core"]));
}

fn successes(answers: &Mutex<Vec<Answer>>) -> usize {
    answers
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count()
}

#[test]
fn every_actor_of_both_trees_is_restarted_under_load_and_only_crashed_invokers_fail() {
    // Every actor is crashed within seconds: more than the default intensity allows.
    let core = Core::start(CoreOptions {
        extra: vec![
            "--fault-injection".into(),
            "--restart-intensity".into(),
            "100".into(),
        ],
        ..CoreOptions::default()
    });
    let _worker = Worker::start_with(
        "w1",
        &core,
        &["--fault-injection", "--restart-intensity", "100"],
    );
    core.wait_for_workers(&["w1"]);
    let client = core.client();
    let (status, body) = client.upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let initial = tree(&core);
    let mut targets = Vec::new();
    for node in ["core", "w1"] {
        let root = root(&initial, node);
        assert!(root.is_object(), "no tree for {node}: {initial}");
        let mut below = Vec::new();
        paths(root, "", &mut below);
        targets.extend(below.into_iter().map(|p| (node, p)));
    }
    // The trees hold what the platform promises to supervise.
    for (node, path) in [
        ("core", "cluster-node"),
        ("core", "registry"),
        ("core", "connectors"),
        ("core", "sinks"),
        ("core", "api"),
        ("w1", "cluster/cluster-node"),
        ("w1", "cluster/core-link"),
        ("w1", "code-cache"),
        ("w1", "invocations"),
        ("w1", "gateway"),
        ("w1", "reporter"),
    ] {
        assert!(
            targets.iter().any(|(n, p)| *n == node && p == path),
            "{node} has no {path}: {initial}"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (handles, answers) = load(&client, 16, "hello", json!({ "name": "load" }), &stop);
    wait_until(Duration::from_secs(20), "the load running", || {
        successes(&answers) >= 100
    });
    // When each crash of the invocation supervisor was answered (its invokers die with it),
    // and when each crash was made (to name the one a failure followed).
    let mut invoker_crashes: Vec<Instant> = Vec::new();
    let mut crashes: Vec<(Instant, String)> = Vec::new();
    for (node, path) in &targets {
        crashes.push((Instant::now(), format!("{node}/{path}")));
        let before = find(root(&tree(&core), node), path).unwrap()["restarts"]
            .as_u64()
            .unwrap();
        crash(&core, node, path);
        if path == "invocations" {
            invoker_crashes.push(Instant::now());
        }
        wait_until(
            Duration::from_secs(30),
            &format!("{node}/{path} restarted in the same tree"),
            || {
                let now = tree(&core);
                let Some(actor) = find(root(&now, node), path) else {
                    return false;
                };
                actor["restarts"].as_u64().unwrap() > before
                    && actor["state"] == "running"
                    && shape(root(&now, node)) == shape(root(&initial, node))
            },
        );
        // And the platform keeps serving after it.
        let served = successes(&answers);
        wait_until(
            Duration::from_secs(30),
            &format!("invocations after crashing {node}/{path}"),
            || successes(&answers) >= served + 32,
        );
    }
    finish(handles, &stop);

    let answers = answers.lock().unwrap();
    let failed: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != StatusCode::OK)
        .collect();
    for a in &failed {
        let after = crashes
            .iter()
            .rev()
            .find(|(at, _)| *at <= a.answered)
            .map(|(_, what)| what.as_str())
            .unwrap_or("none");
        // Only invocations running inside a crashed invoker fail, with a 500 that says so,
        // answered right after the crash (no client waits for a time-out).
        assert_eq!(
            a.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "after crashing {after}: {}",
            a.body
        );
        assert!(
            detail(&a.body).contains("crashed"),
            "after crashing {after}: {}",
            a.body
        );
        assert!(
            invoker_crashes
                .iter()
                .any(|at| a.answered <= *at + Duration::from_millis(100)),
            "answered too late after the crash: {}",
            a.body
        );
    }
    assert!(
        answers.len() > 1000,
        "too little load: {} answers",
        answers.len()
    );
}

#[test]
fn a_crashed_invoker_is_answered_at_once_and_gives_its_slot_back() {
    let core = Core::start(fault_injection());
    let worker = Worker::start_with("w1", &core, &["--fault-injection"]);
    core.wait_for_workers(&["w1"]);
    let client = core.client();
    let (status, body) = client.upload("_", "sleep", example("sleep_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A path that names no actor is a 404 that kills nothing.
    let before = restarts(root(&tree(&core), "w1"));
    for path in ["nosuch", "gateway/x", "invocations/*"] {
        let (status, body) = try_crash(&core, "w1", path);
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    assert_eq!(restarts(root(&tree(&core), "w1")), before);

    let stop = Arc::new(AtomicBool::new(false));
    let (handles, answers) = load(&client, 4, "sleep", json!({ "ms": 2000 }), &stop);
    wait_until(Duration::from_secs(20), "four sleeps running", || {
        worker.metric("funless_worker_in_flight") >= 4.0
    });
    let answer = crash(&core, "w1", "invocations/*");
    let crashed_at = Instant::now();
    assert!(
        answer["data"]["actor"]
            .as_str()
            .unwrap()
            .starts_with("w1/invocations/"),
        "{answer}"
    );
    wait_until(Duration::from_secs(5), "the crashed call's answer", || {
        !answers.lock().unwrap().is_empty()
    });
    stop.store(true, Ordering::Relaxed);
    {
        let answers = answers.lock().unwrap();
        let first = &answers[0];
        assert_eq!(
            first.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            first.body
        );
        assert!(
            detail(&first.body).contains("the invocation crashed"),
            "{}",
            first.body
        );
        assert!(
            first.answered <= crashed_at + Duration::from_millis(100),
            "answered {:?} after the crash call returned",
            first.answered.saturating_duration_since(crashed_at)
        );
    }
    finish(handles, &stop);
    // The other three ran to the end, and every slot came back.
    let answers = answers.lock().unwrap();
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.status == StatusCode::OK)
            .count(),
        answers.len() - 1,
        "{answers:?}"
    );
    wait_until(Duration::from_secs(5), "no invocation in flight", || {
        worker.metric("funless_worker_in_flight") == 0.0
    });
    // The activation records the crash.
    let (_, list) = client.get("/v1/fn/_/sleep/activations?limit=10");
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["error"]["reason"] == "crashed"),
        "{list}"
    );
}

fn mqtt_publish(topic: &str, message: &str) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", "1883", "-q", "1"])
        .args(["-t", topic, "-m", message])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success(), "mosquitto_pub failed");
}

/// The only child of the dynamic supervisor `name` of the Core.
fn only_child(core: &Core, name: &str) -> (String, u64) {
    let now = tree(core);
    let children = find(&now["core"], name).unwrap()["children"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(children.len(), 1, "{now}");
    (
        format!("{name}/{}", children[0]["name"].as_str().unwrap()),
        children[0]["restarts"].as_u64().unwrap(),
    )
}

fn wait_restarted(core: &Core, path: &str, before: u64) {
    wait_until(
        Duration::from_secs(20),
        &format!("{path} restarted"),
        || {
            find(&tree(core)["core"], path).is_some_and(|a| {
                a["restarts"].as_u64().unwrap() > before && a["state"] == "running"
            })
        },
    );
}

#[test]
fn a_crashed_connector_and_sink_deliverer_come_back_and_nothing_queued_is_lost() {
    let received = Received::default();
    let collector = Collector::start(0, received.clone());
    let port = collector.port;
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..fault_injection()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let topic = format!("funless/supervision/{}", crate::harness::free_port());
    let fields = [
        (
            "events",
            json!([{ "type": "mqtt", "params": { "host": "127.0.0.1", "port": 1883, "topic": topic } }]),
        ),
        (
            "sinks",
            json!([{ "type": "webhook", "params": { "url": format!("http://127.0.0.1:{port}/hook") } }]),
        ),
    ];
    let (status, body) = user.upload_fields("_", "echoed", example("hello_fl"), &fields);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let connected = || {
        let (_, info) = user.get("/v1/fn/_/echoed");
        info["data"]["connectors"][0]["connected"] == true
    };
    wait_until(
        Duration::from_secs(20),
        "the connector subscribed",
        connected,
    );
    mqtt_publish(&topic, r#"{"name":"one"}"#);
    wait_until(
        Duration::from_secs(20),
        "the first result delivered",
        || received.lock().unwrap().len() == 1,
    );

    // The connector crashes: it comes back, subscribes again and goes on triggering.
    let (connector, before) = only_child(&core, "connectors");
    crash(&core, "core", &connector);
    wait_restarted(&core, &connector, before);
    wait_until(Duration::from_secs(20), "the connector back", connected);
    mqtt_publish(&topic, r#"{"name":"two"}"#);
    wait_until(
        Duration::from_secs(20),
        "the second result delivered",
        || received.lock().unwrap().len() == 2,
    );

    // The sink is down, results queue; its deliverer crashes while retrying them.
    drop(collector);
    for name in ["three", "four", "five"] {
        let (status, _) = user.invoke("_", "echoed", json!({ "name": name }));
        assert_eq!(status, StatusCode::OK);
    }
    wait_until(Duration::from_secs(10), "results waiting", || {
        let (_, info) = user.get("/v1/fn/_/echoed");
        info["data"]["sinks"][0]["pending"] == 3
            && info["data"]["sinks"][0]["failed_attempts"]
                .as_u64()
                .unwrap_or(0)
                > 0
    });
    let (deliverer, before) = only_child(&core, "sinks");
    crash(&core, "core", &deliverer);
    wait_restarted(&core, &deliverer, before);
    // Back up: everything queued arrives, in order.
    let collector = Collector::start(port, received.clone());
    wait_until(
        Duration::from_secs(20),
        "the queued results delivered",
        || received.lock().unwrap().len() >= 5,
    );
    drop(collector);
    let all: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            serde_json::from_slice::<Value>(b).unwrap()["payload"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for name in ["one", "two", "three", "four", "five"] {
        assert!(
            all.iter().any(|p| p == &format!("Hello {name}!")),
            "{name} missing: {all:?}"
        );
    }
}

#[test]
fn a_root_past_its_restart_intensity_ends_the_process_with_an_error() {
    let mut core = Core::start(fault_injection());
    // The root tolerates 5 restarts in 30 s; the sixth crash escalates.
    for i in 0..6 {
        let before = find(&tree(&core)["core"], "registry").unwrap()["restarts"]
            .as_u64()
            .unwrap();
        crash(&core, "core", "registry");
        if i < 5 {
            wait_until(Duration::from_secs(10), "the registry restarted", || {
                find(&tree(&core)["core"], "registry")
                    .is_some_and(|a| a["restarts"].as_u64().unwrap() > before)
            });
        }
    }
    let status = core.process.wait_exit(Duration::from_secs(20));
    assert_eq!(status, Some(1), "{}", core.process.logs.text());
    assert!(
        core.process.logs.contains("restart intensity"),
        "{}",
        core.process.logs.text()
    );
}
