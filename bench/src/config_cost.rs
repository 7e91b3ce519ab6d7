//! `funless-bench config`: what a function's configuration and a secret cost an invocation.
//! Starts the Core (with a secrets key) and one Worker, uploads `hello` twice, gives one copy
//! eight settings and a secret, and sends them sequential requests in alternating rounds (so
//! the machine's drift touches both alike); reports each one's latency and the ratio of the
//! medians.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::platform::{Layout, Platform};
use crate::stats::percentile;

/// Arguments of `funless-bench config`.
#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Folder of the release binaries `funless-core` and `funless-worker` (default:
    /// `$CARGO_TARGET_DIR/release`, else `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository's `examples/` folder (functions built by `examples/build.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Rounds; each sends `requests` to one function, then to the other.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Sequential requests per function per round.
    #[arg(long, default_value_t = 250)]
    requests: usize,
    /// Where the Markdown table goes (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) async fn run(args: ConfigArgs) -> anyhow::Result<String> {
    tokio::select! {
        result = measure(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: processes stopped"),
    }
}

async fn measure(args: &ConfigArgs) -> anyhow::Result<String> {
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(crate::eval::default_bin_dir);
    let hello = std::fs::read(args.examples.join("target/wasm/hello_fl.wasm"))
        .context("reading examples/target/wasm/hello_fl.wasm (run examples/build.sh)")?;
    let keys = tempfile::Builder::new()
        .prefix("funless-bench-key")
        .tempdir()?;
    let key_file = keys.path().join("secrets.key");
    // A fixed key: the figures do not depend on it, and nothing it seals outlives the run.
    std::fs::write(&key_file, format!("{}\n", "5a".repeat(32)))?;
    let core_args = vec![
        "--secrets-key-file".to_string(),
        key_file.display().to_string(),
    ];
    let platform =
        Platform::start_with(Layout::TwoProcesses, &bin_dir, None, None, &core_args).await?;
    platform
        .upload("plain", "hello_fl.wasm", hello.clone(), None)
        .await?;
    platform
        .upload("configured", "hello_fl.wasm", hello, None)
        .await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    let put = |path: String, body: serde_json::Value| {
        let request = client
            .put(format!("{}{path}", platform.api))
            .bearer_auth(&platform.token)
            .json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            if !status.is_success() {
                bail!(
                    "{path}: {status}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
            anyhow::Ok(())
        }
    };
    put(
        "/v1/secrets/bench_token".into(),
        serde_json::json!({"value": "t".repeat(40)}),
    )
    .await?;
    let settings: serde_json::Map<String, serde_json::Value> = (1..=8)
        .map(|i| (format!("SETTING_{i}"), "v".repeat(32).into()))
        .collect();
    put(
        "/v1/config/_/configured".into(),
        serde_json::json!({"set": settings, "secrets": {"TOKEN": "bench_token"}}),
    )
    .await?;

    let body = r#"{"args":{"name":"bench"}}"#;
    let paths = [
        ("plain", platform.invoke_url("plain")),
        ("configured", platform.invoke_url("configured")),
    ];
    let mut samples: [Vec<Duration>; 2] = Default::default();
    let warmup = (args.requests / 2).max(10);
    for (_, url) in &paths {
        for _ in 0..warmup {
            crate::invoke(&client, url, &platform.token, body).await?;
        }
    }
    let started = Instant::now();
    for round in 0..args.rounds {
        // Alternate which goes first, so neither always follows the other.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            for _ in 0..args.requests {
                samples[i].push(crate::invoke(&client, &paths[i].1, &platform.token, body).await?);
            }
        }
    }
    let took = started.elapsed();
    for s in &mut samples {
        s.sort();
    }
    let median = |s: &[Duration]| percentile(s, 50.0);
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mut table = String::new();
    writeln!(
        table,
        "{} rounds of {} sequential requests per function, alternating ({:.0} s in all); \
         the same `hello_fl` code, one copy with 8 settings of 32 bytes and a secret.\n",
        args.rounds,
        args.requests,
        took.as_secs_f64()
    )?;
    writeln!(table, "| function | requests | p50 | p90 | p99 |")?;
    writeln!(table, "|---|---|---|---|---|")?;
    for (i, (name, _)) in paths.iter().enumerate() {
        let s = &samples[i];
        writeln!(
            table,
            "| {name} | {} | {:.0} µs | {:.0} µs | {:.0} µs |",
            s.len(),
            micros(median(s)),
            micros(percentile(s, 90.0)),
            micros(percentile(s, 99.0)),
        )?;
    }
    let ratio = micros(median(&samples[1])) / micros(median(&samples[0]));
    writeln!(table, "\nconfigured / plain, median: **{ratio:.3}**")?;
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(table)
}
