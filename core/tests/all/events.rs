//! Event connectors against real brokers: the machine's Mosquitto (127.0.0.1:1883) and NATS
//! (127.0.0.1:4222), and a private Mosquitto on a free port that the test stops and starts.
//! Every message runs the function; connectors come back after a Core restart, reconnect
//! after a broker restart, and stop when their function is deleted.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Client, Core, CoreOptions, detail, example, free_port, wait_until};

fn options() -> CoreOptions {
    CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", free_port())
}

fn mqtt_publish(port: u16, topic: &str, message: &str) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", message])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success(), "mosquitto_pub failed");
}

/// Publishes on NATS with its text protocol (no client library needed).
fn nats_publish(subject: &str, message: &str) {
    let stream = TcpStream::connect("127.0.0.1:4222").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap(); // INFO
    let mut writer = stream;
    write!(
        writer,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n{message}\r\nPING\r\n",
        message.len()
    )
    .unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            break;
        }
    }
}

/// The payloads of a function's successful activations.
fn payloads(user: &Client, name: &str) -> Vec<String> {
    let (status, body) = user.get(&format!("/v1/fn/_/{name}/activations?limit=200"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "success")
        .map(|a| {
            a["result"]["payload"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn wait_for_payloads(user: &Client, name: &str, expected: &[&str]) {
    wait_until(
        Duration::from_secs(15),
        "the messages to run the function",
        || {
            let got = payloads(user, name);
            expected.iter().all(|e| got.iter().any(|g| g == e))
        },
    );
}

fn connector(user: &Client, name: &str) -> Value {
    let (status, body) = user.get(&format!("/v1/fn/_/{name}"));
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["connectors"][0].clone()
}

#[test]
fn mqtt_and_nats_messages_run_the_function_and_connectors_survive_a_core_restart() {
    let core = Core::start(options());
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let topic = unique("funless/test/sensors-");
    let subject = unique("funless.test.jobs.");
    let events = json!([
        { "type": "mqtt", "params": { "host": "127.0.0.1", "port": 1883, "topic": topic } },
        { "type": "nats", "params": { "host": "127.0.0.1", "port": 4222, "subject": subject } },
    ]);
    let (status, body) = user.upload_with_events("_", "hello", example("hello_fl"), events);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["events_metadata"][0]["connected"], true,
        "{body}"
    );
    assert_eq!(
        body["data"]["events_metadata"][1]["connected"], true,
        "{body}"
    );

    for i in 0..5 {
        mqtt_publish(1883, &topic, &format!(r#"{{"name": "mqtt{i}"}}"#));
    }
    nats_publish(&subject, r#"{"name": "nats0"}"#);
    wait_for_payloads(
        &user,
        "hello",
        &["Hello mqtt0!", "Hello mqtt4!", "Hello nats0!"],
    );
    assert_eq!(connector(&user, "hello")["messages"], 5, "mqtt messages");

    // The Core is killed and started again on its data: the connectors come back by themselves.
    let core = core.restart(options());
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    wait_until(
        Duration::from_secs(10),
        "the connectors to come back",
        || {
            let (_, body) = user.get("/v1/fn/_/hello");
            body["data"]["connectors"]
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["connected"] == true))
        },
    );
    mqtt_publish(1883, &topic, r#"{"name": "again"}"#);
    nats_publish(&subject, r#"{"name": "nats1"}"#);
    wait_for_payloads(&user, "hello", &["Hello again!", "Hello nats1!"]);

    // Deleted with its function: messages no longer run anything.
    let (status, _) = user.delete("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let text = reqwest::blocking::get(format!("{}/metrics", user.base))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        text.contains("funless_event_connectors 0"),
        "connectors still counted:\n{text}"
    );
}

struct Broker(Child);

impl Broker {
    fn start(port: u16) -> Self {
        // Debian installs the broker in /usr/sbin, which a user's PATH may lack.
        let program = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(program)
            .args(["-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto");
        wait_until(Duration::from_secs(5), "mosquitto to listen", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Broker(child)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connector_reconnects_when_its_broker_comes_back() {
    let port = free_port();
    let broker = Broker::start(port);
    let core = Core::start(options());
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let events =
        json!([{ "type": "mqtt", "params": { "host": "127.0.0.1", "port": port, "topic": "t" } }]);
    let (status, body) = user.upload_with_events("_", "hello", example("hello_fl"), events);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    mqtt_publish(port, "t", r#"{"name": "before"}"#);
    wait_for_payloads(&user, "hello", &["Hello before!"]);

    drop(broker);
    wait_until(Duration::from_secs(10), "the connector to notice", || {
        connector(&user, "hello")["connected"] == false
    });
    assert!(connector(&user, "hello")["last_error"].is_string());

    let _broker = Broker::start(port);
    wait_until(
        Duration::from_secs(20),
        "the connector to reconnect",
        || connector(&user, "hello")["connected"] == true,
    );
    assert!(connector(&user, "hello")["reconnects"].as_u64().unwrap() >= 1);
    mqtt_publish(port, "t", r#"{"name": "after"}"#);
    wait_for_payloads(&user, "hello", &["Hello after!"]);
}

#[test]
fn cron_schedules_bad_events_and_unreachable_brokers() {
    let core = Core::start(options());
    core.wait_for_workers(&["embedded"]);
    let user = core.client();
    let every_second = json!([{ "type": "cron", "params": { "schedule": "* * * * * *" } }]);
    let (status, body) = user.upload_with_events("_", "tick", example("hello_fl"), every_second);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(10), "two ticks", || {
        payloads(&user, "tick").len() >= 2
    });

    // Wrong definitions are refused and leave nothing behind.
    let bad = json!([{ "type": "kafka", "params": {} }]);
    let (status, body) = user.upload_with_events("_", "bad", example("hello_fl"), bad);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(detail(&body).contains("unknown event type"), "{body}");
    assert_eq!(user.get("/v1/fn/_/bad").0, StatusCode::NOT_FOUND);

    // A broker that does not answer: created, 207, and the connector keeps trying.
    let nobody = free_port();
    let events = json!([{ "type": "mqtt", "params": { "host": "127.0.0.1", "port": nobody, "topic": "t" } }]);
    let (status, body) = user.upload_with_events("_", "lonely", example("hello_fl"), events);
    assert_eq!(status, StatusCode::MULTI_STATUS, "{body}");
    assert_eq!(
        body["data"]["events_metadata"][0]["connected"], false,
        "{body}"
    );
    assert!(
        body["data"]["events_metadata"][0]["last_error"].is_string(),
        "{body}"
    );
    assert_eq!(user.get("/v1/fn/_/lonely").0, StatusCode::OK);
}
