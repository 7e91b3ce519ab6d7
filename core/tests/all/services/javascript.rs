//! JavaScript services: a main that runs until the platform asks it to stop (through its
//! `service.stopped` promise), one that throws (restarted by its spec, then failed with the
//! error), and `fl svc logs -f` following a replica's output across an update.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;

use super::*;
use crate::harness::{js_example, js_example_path};

/// What `fl svc logs -f` printed, each line with when it arrived.
struct Follow {
    child: std::process::Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Follow {
    fn start(core: &Core, service: &str) -> Self {
        let mut child = core.fl_spawn(&["svc", "logs", service, "-f"]);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until a printed line ends with `text`; the time it arrived.
    fn wait_for(&mut self, text: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some((at, _)) = self.seen.iter().find(|(_, l)| l.ends_with(text)) {
                return *at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "`fl svc logs -f` printed no line ending with {text:?} within {within:?}: {:#?}",
                    self.seen
                ),
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_javascript_service_runs_until_asked_to_stop_and_its_logs_are_followed() {
    let (core, _workers) = cluster(&["w1"]);
    let client = core.client();
    let path = js_example_path("ticker_service");
    let path = path.to_str().unwrap();
    let spec = ["--env", "TICK_MS=200", "--stop-grace-ms", "3000"];
    let (code, out, err) = core.fl(&[&["svc", "create", "jsticker", path], &spec[..]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    let info = service(&client, "jsticker");
    assert_eq!(info["abi"], "javascript", "{info}");

    // `-f` prints what is there, then each new line once as it comes.
    let mut follow = Follow::start(&core, "jsticker");
    let first = follow.wait_for("tick 1", Duration::from_secs(30));
    let later = follow.wait_for("tick 12", Duration::from_secs(10));
    assert!(
        later.duration_since(first) >= Duration::from_millis(900),
        "tick 12 came with tick 1: not followed"
    );
    assert_eq!(replica(&service(&client, "jsticker"), 0).0, "running");

    // An update replaces the replica: the old one hears `service.stopped` and returns within
    // its grace (a killed one would print nothing more), and the new one ticks with its label.
    let updated = Instant::now();
    let (code, out, err) = core.fl(&[
        &["svc", "update", "jsticker"],
        &spec[..],
        &["--env", "LABEL=v2"],
    ]
    .concat());
    assert_eq!(code, Some(0), "{out}{err}");
    follow.wait_for(" ticks", Duration::from_secs(10));
    let stopped = follow
        .seen
        .iter()
        .find(|(_, l)| l.contains("stopping gracefully after"))
        .map(|(at, _)| at.duration_since(updated))
        .unwrap();
    assert!(stopped < Duration::from_millis(2500), "{stopped:?}");
    follow.wait_for("tick 2 v2", Duration::from_secs(15));
    let ticks: Vec<&String> = follow
        .seen
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l.ends_with("tick 3"))
        .collect();
    assert_eq!(ticks.len(), 1, "lines printed twice: {ticks:?}");
    drop(follow);

    // A main that throws is an abnormal exit: restarted, then failed with the error.
    let (status, body) = create_with(
        &client,
        "jsfail",
        &js_example("ticker_service"),
        json!({ "env": { "FAIL": "no sensor on i2c-1" }, "max_restarts": 1, "backoff_ms": 100 }),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_until(Duration::from_secs(30), "the service failed", || {
        service(&client, "jsfail")["state"] == "failed"
    });
    let info = service(&client, "jsfail");
    let reason = info["reason"].as_str().unwrap();
    assert!(
        reason.contains("uncaught Error: no sensor on i2c-1"),
        "{info}"
    );
    let uncaught = logs(&client, "jsfail")
        .iter()
        .filter(|l| l["line"] == "Uncaught Error: no sensor on i2c-1")
        .count();
    assert_eq!(uncaught, 2, "the stack of each run is in the logs");

    // A delete answers once the program returned, well within the grace period.
    let deleted = Instant::now();
    let (status, body) = client.delete("/v1/svc/jsticker");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        deleted.elapsed() < Duration::from_millis(2500),
        "{:?}",
        deleted.elapsed()
    );
}
