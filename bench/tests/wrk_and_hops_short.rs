//! `funless-bench wrk`, `hops`, `config` and `cores` in a short run, end to end, so the
//! comparisons and the per-hop table cannot silently rot: they start their own platforms
//! from the binaries
//! `cargo test --workspace` builds (debug: the figures mean nothing, the shape does).
#![allow(clippy::unwrap_used)]

use std::process::Command;

mod common;

fn bench(args: &[&str]) -> String {
    let bin_dir = common::bin_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_funless-bench"))
        .args(args)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?} failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_wrk_comparison_measures_every_path_without_errors() {
    // wrk comes from Debian (.ci/run installs it).
    let table = bench(&["wrk", "--secs", "1", "--concurrency", "1,4"]);
    for row in [
        "| plain axum JSON hello (HTTP floor) |",
        "| Core + 1 Worker (two processes) |",
        "| Core `--embedded-worker` (one process) |",
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{table}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | path | c=1 req/s | p50 | p99 | c=4 req/s | p50 | p99 | errors |
        assert_eq!(cells.len(), 10, "{line}");
        assert_eq!(cells[8], "0", "errors in {line}");
        for rate in [cells[2], cells[5]] {
            assert!(rate.parse::<f64>().unwrap() > 0.0, "{line}");
        }
    }
}

#[test]
fn the_hop_table_adds_up_to_the_measured_median() {
    let table = bench(&["hops", "--requests", "200"]);
    for layout in [
        "**Core + 1 Worker (two processes)**",
        "**Core `--embedded-worker` (one process)**",
    ] {
        let section = table
            .split(layout)
            .nth(1)
            .unwrap_or_else(|| panic!("no {layout} in:\n{table}"));
        for stage in [
            "| auth |",
            "| lookup |",
            "| schedule |",
            "| run |",
            "| record |",
        ] {
            assert!(
                section.contains(stage),
                "no {stage} under {layout}:\n{table}"
            );
        }
        let value = |row: &str| -> f64 {
            let line = section.lines().find(|l| l.starts_with(row)).unwrap();
            line.split('|')
                .nth(3)
                .unwrap()
                .trim()
                .trim_matches('*')
                .parse()
                .unwrap()
        };
        let (sum, measured) = (
            value("| **sum of the hops**"),
            value("| **measured median**"),
        );
        assert!(sum > 0.0 && measured > 0.0, "{table}");
    }
    // Between two processes, the cluster hop is also measured alone.
    for row in ["| `Status` (the worker's status report", "| `Invoke` hello"] {
        assert!(table.contains(row), "no {row:?} in:\n{table}");
    }
}

#[test]
fn the_configuration_cost_compares_both_functions() {
    let table = bench(&["config", "--rounds", "2", "--requests", "20"]);
    for row in ["| plain | 40 |", "| configured | 40 |"] {
        assert!(table.contains(row), "no row {row:?} in:\n{table}");
    }
    let ratio = table
        .split("configured / plain, median: **")
        .nth(1)
        .and_then(|rest| rest.split("**").next())
        .unwrap_or_else(|| panic!("no ratio in:\n{table}"));
    assert!(ratio.parse::<f64>().unwrap() > 0.0, "{table}");
}

/// Runs `sql` on the test PostgreSQL server's `postgres` database.
fn psql(server: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_cores_comparison_runs_one_and_two_cores_on_postgres() {
    let server = std::env::var("FUNLESS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("funless_bench_cores_{}", std::process::id());
    psql(&server, &format!("CREATE DATABASE {name}"));
    let url = format!("{server}/{name}");
    let output = Command::new(env!("CARGO_BIN_EXE_funless-bench"))
        .args([
            "cores",
            "--database-url",
            &url,
            "--secs",
            "1",
            "--rounds",
            "1",
        ])
        .args(["--clients", "2", "--bin-dir"])
        .arg(common::bin_dir())
        .output()
        .unwrap();
    psql(
        &server,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cores failed: {stderr}");
    let table = String::from_utf8(output.stdout).unwrap();
    for row in ["| one (A) |", "| two (A and B) |"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{table}"));
        let rate: f64 = line.split('|').nth(2).unwrap().trim().parse().unwrap();
        assert!(rate > 0.0, "{line}");
    }
    assert!(table.contains("two / one: **"), "{table}");
}
