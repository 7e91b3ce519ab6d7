//! Mutual TLS between cluster nodes: with certificates from the cluster CA a worker joins and
//! serves; with a certificate from another CA, or without TLS, it never joins.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, Worker, example};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `ca` in `dir`.
pub fn ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
}

/// A node certificate for 127.0.0.1 signed by `ca`; returns the three flags' values.
pub fn node(dir: &Path, ca: &str, name: &str) -> [PathBuf; 3] {
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    [
        dir.join(format!("{ca}.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    ]
}

fn tls_flags(files: &[PathBuf; 3]) -> Vec<String> {
    let [ca, cert, key] = files;
    [
        "--tls-ca",
        ca.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

#[test]
fn cluster_sessions_use_mutual_tls_and_refuse_foreign_certificates() {
    let dir = tempfile::tempdir().unwrap();
    ca(dir.path(), "cluster");
    ca(dir.path(), "rogue");
    let core_files = node(dir.path(), "cluster", "core");
    let good = node(dir.path(), "cluster", "w1");
    let foreign = node(dir.path(), "rogue", "w2");

    let core = Core::start(CoreOptions {
        extra: tls_flags(&core_files),
        ..CoreOptions::default()
    });
    let good_flags = tls_flags(&good);
    let w1 = Worker::start_with(
        "w1",
        &core,
        &good_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    core.wait_for_workers(&["w1"]);
    let (status, body) = core
        .client()
        .upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = core.client().invoke("_", "hello", json!({ "name": "tls" }));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello tls!"))
    );

    // Right cookie, wrong CA; and right cookie, no TLS at all: neither joins.
    let foreign_flags = tls_flags(&foreign);
    let _w2 = Worker::start_with(
        "w2",
        &core,
        &foreign_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let _w3 = Worker::start("w3", &core);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(core.worker_names(), vec!["w1".to_string()]);
    drop(w1);
}
