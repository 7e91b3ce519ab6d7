//! The TCP-to-MQTT bridge (`examples/line_bridge_service`, a component using `wasi:sockets`):
//! lines a local TCP source writes reach subscribers of the real broker (Mosquitto on 1883),
//! through the service's allow-list; a delete stops it within its grace period.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::*;

/// A TCP source on a free port that writes `reading N` to every client every 50 ms.
fn line_source() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut stream = stream;
                for n in 1.. {
                    if writeln!(stream, "reading {n}").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    port
}

#[test]
fn a_bridge_service_forwards_a_tcp_line_stream_to_mqtt() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    let port = line_source();
    let topic = format!(
        "funless-test/bridge/{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut subscriber = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", "1883", "-t", &topic, "-C", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mosquitto_sub (Debian's mosquitto-clients) must be installed");
    let (tx, messages) = mpsc::channel();
    let stdout = subscriber.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let (status, body) = create_with(
        &client,
        "bridge",
        &example("line_bridge_service_p2"),
        json!({
            "allow_hosts": [format!("127.0.0.1:{port}"), "127.0.0.1:1883"],
            "env": {
                "SOURCE": format!("127.0.0.1:{port}"),
                "BROKER": "127.0.0.1:1883",
                "TOPIC": topic,
                "LOG_EVERY": "5",
            },
            "stop_grace_ms": 3000,
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["abi"], "wasi_component", "{body}");

    // Ten messages, consecutive readings, in order (QoS 1 may repeat one after a reconnect,
    // which does not happen here).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = Vec::new();
    while got.len() < 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        match messages.recv_timeout(left) {
            Ok(message) => got.push(message),
            Err(_) => panic!(
                "the broker's subscriber got {got:?} within 60 s; the service's logs: {:?}",
                logs(&client, "bridge")
            ),
        }
    }
    let numbers: Vec<u64> = got
        .iter()
        .map(|m| m.strip_prefix("reading ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    let _ = subscriber.wait();

    // Its logs say where it connected and how much it forwarded.
    let said = |text: &str| {
        logs(&client, "bridge")
            .iter()
            .any(|l| l["line"].as_str().unwrap_or_default().contains(text))
    };
    wait_until(Duration::from_secs(10), "the bridge's log lines", || {
        said("connected to the broker 127.0.0.1:1883") && said("forwarded 10 lines")
    });

    // Its stdin closes on delete: it disconnects and exits by itself, within the grace.
    let deleted = Instant::now();
    let (status, body) = client.delete("/v1/svc/bridge");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        deleted.elapsed() < Duration::from_millis(2500),
        "{:?}",
        deleted.elapsed()
    );
}
