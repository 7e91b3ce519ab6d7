//! Functions written with FunLess's own Rust SDK (fl-wasm-rs 0.1.1 from crates.io, example
//! `sdk_http_fl`) make HTTP and HTTPS requests through Core and Worker processes and get the
//! whole body back, under the operator's egress default (`--allow-hosts`) and with an extra
//! CA the operator trusts (`--egress-ca`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use funless_testkit::Servers;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, Process, Worker, example, free_port, wait_until};
use crate::tls;

/// `openssl s_server -WWW` on 127.0.0.1: serves the files of `dir` over HTTPS with the
/// certificate `name` from the CA `ca` (made by the cluster TLS test's helpers).
fn https_server(dir: &Path) -> (Process, u16) {
    tls::ca(dir, "egress-ca");
    tls::node(dir, "egress-ca", "site");
    let port = free_port();
    let mut command = Command::new("openssl");
    command.current_dir(dir).args([
        "s_server",
        "-WWW",
        "-quiet",
        "-accept",
        &format!("127.0.0.1:{port}"),
        "-cert",
        "site.pem",
        "-key",
        "site.key",
    ]);
    let mut server = Process::spawn("https", command);
    wait_until(Duration::from_secs(20), "the HTTPS server", || {
        assert!(server.running(), "openssl s_server exited");
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (server, port)
}

fn call(user: &Client, function: &str, args: Value) -> Value {
    let (status, body) = user.invoke("_", function, args);
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"].clone()
}

/// A body larger than any buffer a function would set aside, with a pattern that shows
/// truncation or misplacement.
fn document() -> String {
    (0..6000).map(|i| format!("line {i:05}\n")).collect()
}

#[test]
fn funless_sdk_requests_get_the_whole_body_over_http_and_https() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let (_https, https_port) = https_server(dir.path());
    let page = "served over TLS by a site with a private CA\n".repeat(100);
    std::fs::write(dir.path().join("page.txt"), &page).unwrap();
    let doc = document();
    let put = reqwest::blocking::Client::new()
        .put(servers.bucket_url("doc"))
        .body(doc.clone())
        .send()
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);

    let core = Core::start(CoreOptions::default());
    let ca = dir.path().join("egress-ca.pem");
    let _worker = Worker::start_with(
        "w1",
        &core,
        &[
            "--allow-hosts",
            "127.0.0.1",
            "--egress-ca",
            ca.to_str().unwrap(),
        ],
    );
    core.wait_for_workers(&["w1"]);
    let user = core.client();
    // No allow_hosts of its own: the operator's default applies.
    let (status, body) = user.upload_with("_", "sdk_http", example("sdk_http_fl"), json!({}));
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let got = call(
        &user,
        "sdk_http",
        json!({ "url": servers.bucket_url("doc") }),
    );
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["length"], doc.len(), "{got}");
    assert_eq!(got["body"], doc.as_str());

    let got = call(
        &user,
        "sdk_http",
        json!({
            "url": servers.reply_url(),
            "method": "POST",
            "body": "{\"hello\":\"funless\"}",
            "headers": { "content-type": "application/json" },
        }),
    );
    assert_eq!(got["status"], 200, "{got}");
    let reply: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    assert_eq!(reply["got"], json!({ "hello": "funless" }), "{got}");

    // A status other than 200 comes through with its (empty) body.
    let got = call(
        &user,
        "sdk_http",
        json!({ "url": servers.bucket_url("none") }),
    );
    assert_eq!((&got["status"], &got["body"]), (&json!(404), &json!("")));

    // HTTPS, trusted through the operator's extra CA.
    let url = format!("https://127.0.0.1:{https_port}/page.txt");
    let got = call(&user, "sdk_http", json!({ "url": url }));
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], page.as_str());

    // A function's own allow_hosts replaces the default: this one may only reach another
    // port, so its request never reaches the server.
    let narrowed = json!({ "allow_hosts": [format!("127.0.0.1:{https_port}")] });
    let (status, body) = user.upload_with("_", "narrow", example("sdk_http_fl"), narrowed);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let served = servers.http_requests();
    let got = call(&user, "narrow", json!({ "url": servers.bucket_url("doc") }));
    assert_eq!((&got["status"], &got["body"]), (&json!(0), &json!("")));
    assert_eq!(
        servers.http_requests(),
        served,
        "a refused request was sent"
    );
    let got = call(&user, "narrow", json!({ "url": url }));
    assert_eq!(got["status"], 200, "{got}");
}

#[test]
fn the_embedded_worker_takes_the_egress_default_and_trusts_only_known_cas() {
    let servers = Servers::start();
    let dir = tempfile::tempdir().unwrap();
    let (_https, https_port) = https_server(dir.path());
    std::fs::write(dir.path().join("page.txt"), "private").unwrap();
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        extra: vec!["--allow-hosts".into(), "*".into()],
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let (status, body) = user.upload_with("_", "sdk_http", example("sdk_http_fl"), json!({}));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let got = call(
        &user,
        "sdk_http",
        json!({ "url": servers.reply_url(), "method": "POST", "body": "ping" }),
    );
    assert_eq!(got["status"], 200, "{got}");
    assert!(
        got["body"].as_str().unwrap().contains("\"got\":\"ping\""),
        "{got}"
    );

    // The site's CA is not one this worker trusts: the handshake fails, status 0, and the
    // worker says why.
    let url = format!("https://127.0.0.1:{https_port}/page.txt");
    let got = call(&user, "sdk_http", json!({ "url": url }));
    assert_eq!((&got["status"], &got["body"]), (&json!(0), &json!("")));
    let logs = core.process.logs.clone();
    wait_until(Duration::from_secs(10), "the refusal in the log", || {
        logs.contains("UnknownIssuer")
    });
}
