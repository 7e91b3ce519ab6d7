//! `--health-check`: the images of deploy/oci/ have no shell, so the binaries probe themselves.
//! Each check first fails where nothing answers, then passes against the real process.

use std::process::{Command, Output};

use crate::harness::{Core, CoreOptions, Worker, bin, free_port};

/// Runs `binary --health-check` with only `env` as its FUNLESS_* settings.
fn health_check(binary: &str, env: &[(&str, String)]) -> Output {
    let mut command = Command::new(bin(binary));
    command.arg("--health-check");
    for (key, _) in std::env::vars() {
        if key.starts_with("FUNLESS_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_core_checks_its_health_endpoint() {
    let closed = format!("127.0.0.1:{}", free_port());
    let down = health_check("funless-core", &[("FUNLESS_LISTEN", closed.clone())]);
    assert_eq!(down.status.code(), Some(1), "{}", stderr(&down));
    assert!(
        stderr(&down).contains(&format!("unhealthy: cannot connect to {closed}")),
        "{}",
        stderr(&down)
    );

    let core = Core::start(CoreOptions::default());
    let listen = core.url.trim_start_matches("http://").to_string();
    let port = listen.rsplit(':').next().unwrap().to_string();
    let up = health_check("funless-core", &[("FUNLESS_LISTEN", listen)]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
    // An image listens on 0.0.0.0: the probe goes to loopback.
    let any = health_check(
        "funless-core",
        &[("FUNLESS_LISTEN", format!("0.0.0.0:{port}"))],
    );
    assert_eq!(any.status.code(), Some(0), "{}", stderr(&any));
}

#[test]
fn the_worker_checks_its_metrics_endpoint() {
    let none = health_check("funless-worker", &[]);
    assert_ne!(none.status.code(), Some(0));
    assert!(
        stderr(&none).contains("give --metrics-listen (FUNLESS_METRICS_LISTEN)"),
        "{}",
        stderr(&none)
    );
    let closed = format!("127.0.0.1:{}", free_port());
    let down = health_check("funless-worker", &[("FUNLESS_METRICS_LISTEN", closed)]);
    assert_eq!(down.status.code(), Some(1), "{}", stderr(&down));

    let core = Core::start(CoreOptions::default());
    let worker = Worker::start("probed", &core);
    let metrics = worker
        .metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    let up = health_check("funless-worker", &[("FUNLESS_METRICS_LISTEN", metrics)]);
    assert_eq!(up.status.code(), Some(0), "{}", stderr(&up));
}
