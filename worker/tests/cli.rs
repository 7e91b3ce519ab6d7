//! The `funless-worker` binary refuses bad configuration clearly.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn worker() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_funless-worker"));
    command
        .env_remove("FUNLESS_COOKIE")
        .env_remove("FUNLESS_CORE");
    command
}

#[test]
fn an_empty_cookie_is_refused() {
    let out = worker()
        .args([
            "--core",
            "127.0.0.1:9",
            "--cookie",
            "",
            "--cluster-listen",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cookie must not be empty"), "{stderr}");
}

#[test]
fn the_cookie_and_a_way_to_the_core_are_required() {
    let out = worker().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--cookie"), "{stderr}");
    // A cookie but no --core, --core-dns, --gossip or fixed --cluster-port: an error naming them.
    let out = worker()
        .args(["--cookie", "c", "--cluster-listen", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for way in ["--core", "--core-dns", "--gossip"] {
        assert!(stderr.contains(way), "{way} not named: {stderr}");
    }
}
