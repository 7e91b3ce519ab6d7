//! The evaluation in its short mode, end to end, so it cannot silently rot: starts a Core and a
//! Worker from the binaries `cargo test --workspace` builds, runs every workload briefly and
//! checks the report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

mod common;

#[test]
fn the_short_evaluation_runs_every_workload() {
    let bin_dir = common::bin_dir();
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_funless-bench"))
        .arg("eval")
        .arg("--short")
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "eval failed: {stderr}");
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();

    for row in [
        "| sleep (Rust) |",
        "| sleep (JS) |",
        "| server_reply (Rust component, TCP) |",
        "| matrix_mult (Rust) |",
        "| matrix_mult (JS) |",
        "| network_benchmark (Rust, 16 requests each) |",
        "| hello, open loop |",
        "| FunLess (Core + Worker) | 1 |",
        "| FunLess (Core + Worker) | 4 |",
        "| in-process floor (Wasmtime, no platform) | 1 |",
        "| network floor (plain HTTP server) | 4 |",
        "| funless-worker |",
    ] {
        assert!(report.contains(row), "no row {row:?} in:\n{report}");
    }
    // The Python rows, when the Python examples were built (always in CI).
    let python_built = funless_testkit::example_path("hello_fl")
        .with_file_name("hello_py.wasm")
        .exists();
    if python_built || std::env::var("FUNLESS_REQUIRE_PYTHON").as_deref() == Ok("1") {
        for row in [
            "| sleep (Python) |",
            "| matrix_mult (Python) |",
            "| FunLess, Python hello (Core + Worker) | 1 |",
            "- Python: the worker's RSS went from",
        ] {
            assert!(report.contains(row), "no row {row:?} in:\n{report}");
        }
    }
    // No workload of the Workloads table had errors (the 9th column).
    let workloads = report
        .split("## Workloads")
        .nth(1)
        .and_then(|s| s.split("\n\n").nth(1))
        .unwrap();
    for row in workloads.lines().skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[9], "0", "errors in {row}\n{report}");
    }
    assert!(report.contains("## Targets"), "{report}");
    // The plots exist whenever the font does (.ci/run installs fonts-dejavu-core).
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        for png in ["cdf_sleep.png", "cdf_hello_c1.png", "memory_hellojs.png"] {
            assert!(out.path().join(png).exists(), "no {png}: {report}");
        }
    }
}
