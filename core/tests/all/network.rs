//! The paper's workloads through Core and Worker processes, in all three function forms where
//! they fit, against the local reply server, bucket and TCP reply server of `funless-testkit`
//! (127.0.0.1 only), including requests refused by the egress allow-list.

use funless_testkit::Servers;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Worker, detail, example};

/// One Core and one worker, and a user client.
fn platform() -> (Core, Worker, Client) {
    let core = Core::start(CoreOptions::default());
    let worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    (core, worker, user)
}

fn upload(user: &Client, name: &str, example_name: &str, metadata: Value) {
    let (status, body) = user.upload_with("_", name, example(example_name), metadata);
    assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
}

/// Runs `network_benchmark` uploaded from `example_name` with and without the server on its
/// allow-list; `refusal` is what the refused run's error must say.
fn network_benchmark(user: &Client, servers: &Servers, example_name: &str, refusal: &str) {
    let key = format!("run-{example_name}");
    let allowed = format!("{example_name}_allowed");
    upload(
        user,
        &allowed,
        example_name,
        json!({ "allow_hosts": [servers.http.to_string()] }),
    );
    let args = json!({ "server": servers.reply_url(), "bucket": servers.bucket_url(&key) });
    let (status, body) = user.invoke("_", &allowed, args.clone());
    assert_eq!(status, StatusCode::OK, "{body}");
    let times = body["data"]["times_ms"].as_array().unwrap();
    assert_eq!(times.len(), 16, "{body}");
    assert!(times.iter().all(|t| t.as_f64().unwrap() >= 0.0), "{body}");
    assert_eq!(body["data"]["bucket_status"], 200);
    let stored: Value = serde_json::from_slice(&servers.object(&key).unwrap()).unwrap();
    assert_eq!(stored["times_ms"].as_array().unwrap().len(), 16);

    // The same code without the server on its allow-list: refused, nothing reaches a server.
    let fenced = format!("{example_name}_fenced");
    upload(user, &fenced, example_name, json!({}));
    let served = servers.http_requests();
    let objects = servers.objects();
    let (status, body) = user.invoke("_", &fenced, args);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains(refusal), "{body}");
    assert_eq!(
        servers.http_requests(),
        served,
        "a refused request reached the server"
    );
    assert_eq!(servers.objects(), objects);
}

#[test]
fn network_benchmark_through_http_request_and_wasi_http() {
    let servers = Servers::start();
    let (_core, _worker, user) = platform();
    network_benchmark(&user, &servers, "network_benchmark_fl", "status 0");
    network_benchmark(&user, &servers, "network_benchmark_p2", "HttpRequestDenied");
}

#[test]
fn server_reply_over_wasi_sockets_only_to_allowed_addresses() {
    let servers = Servers::start();
    let (_core, _worker, user) = platform();
    upload(
        &user,
        "server_reply",
        "server_reply_p2",
        json!({ "allow_hosts": [servers.tcp.to_string()] }),
    );
    let args = json!({ "address": servers.tcp.to_string(), "message": "ping" });
    let (status, body) = user.invoke("_", "server_reply", args.clone());
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["reply"], "reply to ping", "{body}");

    // By name: "localhost" resolves to the allowed address.
    let by_name = json!({ "address": format!("localhost:{}", servers.tcp.port()), "message": "x" });
    let (status, body) = user.invoke("_", "server_reply", by_name);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["reply"], "reply to x", "{body}");

    // Another port of the same host is not on the list, and neither is anything for a function
    // without an allow-list: the connection is never made.
    let connections = servers.tcp_connections();
    let other_port = json!({ "address": servers.http.to_string(), "message": "ping" });
    let (status, body) = user.invoke("_", "server_reply", other_port);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("cannot connect"), "{body}");
    upload(&user, "server_reply_fenced", "server_reply_p2", json!({}));
    let (status, body) = user.invoke("_", "server_reply_fenced", args);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("cannot connect"), "{body}");
    // Nor may it look a name up (a lookup can carry data out).
    let by_name = json!({ "address": format!("localhost:{}", servers.tcp.port()), "message": "x" });
    let (status, body) = user.invoke("_", "server_reply_fenced", by_name);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("cannot connect"), "{body}");
    assert_eq!(servers.tcp_connections(), connections);
}

#[test]
fn components_run_the_other_workloads_with_the_same_contract() {
    let (_core, _worker, user) = platform();
    for (name, example_name) in [
        ("hello", "hello_p2"),
        ("mm", "matrix_mult_p2"),
        ("sleep", "sleep_p2"),
        ("fail", "fail_p2"),
    ] {
        upload(&user, name, example_name, json!({}));
    }
    let (status, body) = user.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["abi"], "wasi_component", "{body}");

    let (status, body) = user.invoke("_", "hello", json!({ "name": "edge" }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Hello edge!", "{body}");
    let (status, body) = user.invoke("_", "mm", json!({ "n": 100 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["checksum"], 11998200.0, "{body}");
    let (status, body) = user.invoke("_", "sleep", json!({ "ms": 200 }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["payload"], "Slept for 200 ms", "{body}");
    let (status, body) = user.invoke("_", "fail", json!({}));
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(detail(&body).contains("exit code"), "{body}");
    assert!(detail(&body).contains("intentional failure"), "{body}");
}
