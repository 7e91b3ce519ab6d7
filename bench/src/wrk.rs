//! `funless-bench wrk`: the `hello` comparison driven by Debian's `wrk` instead of the
//! evaluation's own reqwest client, so anyone can reproduce it with a standard tool. Starts, in
//! one run and side by side, the network floor (a plain axum server), `wasmtime serve` with the
//! `hello_http` component, the Core with one Worker (two processes) and the Core with its worker
//! embedded (one process), plus the same two layouts for every other build given with
//! `--also LABEL=DIR` (a before/after comparison). Every target is measured at every
//! concurrency with `wrk --latency`, targets interleaved per concurrency so that a slow minute
//! of the machine hits them all alike, and the table goes to stdout and `--out`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::floors::{self, PlainServer, WasmtimeServe};
use crate::platform::{Layout, Platform};

/// Arguments of `funless-bench wrk`.
#[derive(Debug, Args)]
pub(crate) struct WrkArgs {
    /// Folder of the release binaries `funless-core` and `funless-worker` (default:
    /// `$CARGO_TARGET_DIR/release`, else `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Another build to measure beside it, as `LABEL=DIR` (a folder with `funless-core` and
    /// `funless-worker`); may be repeated.
    #[arg(long, value_parser = parse_also)]
    also: Vec<(String, PathBuf)>,
    /// The repository's `examples/` folder (functions built by `examples/build.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 8)]
    secs: u64,
    /// Concurrencies (wrk connections); threads are min(connections, 2).
    #[arg(long, value_delimiter = ',', default_value = "1,4,64")]
    concurrency: Vec<usize>,
    /// The Wasmtime CLI for the `wasmtime serve` peer (default: the evaluation's install
    /// folder, then the PATH); the peer is left out when none is found.
    #[arg(long)]
    wasmtime: Option<PathBuf>,
    /// Leave out the one-process layout (`--embedded-worker`).
    #[arg(long)]
    no_embedded: bool,
    /// Where the Markdown table goes (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_also(text: &str) -> Result<(String, PathBuf), String> {
    let (label, dir) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected LABEL=DIR"))?;
    if label.is_empty() || dir.is_empty() {
        return Err(format!("`{text}`: expected LABEL=DIR"));
    }
    Ok((label.to_string(), PathBuf::from(dir)))
}

/// One endpoint under test.
struct Endpoint {
    label: String,
    url: String,
    token: Option<String>,
}

/// What wrk reports of one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrkRun {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) requests: u64,
    /// Non-2xx answers plus socket errors.
    pub(crate) errors: u64,
}

pub(crate) async fn run(args: WrkArgs) -> anyhow::Result<String> {
    tokio::select! {
        result = compare(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: processes stopped, no table written"),
    }
}

async fn compare(args: &WrkArgs) -> anyhow::Result<String> {
    let wrk_version = Command::new("wrk")
        .arg("--version")
        .output()
        .context("running wrk (Debian: apt-get install wrk)")?;
    let wrk_version = String::from_utf8_lossy(&wrk_version.stdout)
        .lines()
        .next()
        .unwrap_or("wrk")
        .trim()
        .to_string();
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(crate::eval::default_bin_dir);
    let mut builds = vec![("this build".to_string(), bin_dir)];
    builds.extend(args.also.iter().cloned());
    for (_, dir) in &builds {
        for binary in ["funless-core", "funless-worker"] {
            if !dir.join(binary).is_file() {
                bail!("{} not found", dir.join(binary).display());
            }
        }
    }
    let hello = std::fs::read(args.examples.join("target/wasm/hello_fl.wasm"))
        .context("reading examples/target/wasm/hello_fl.wasm (run examples/build.sh)")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let log_dir = tempfile::Builder::new().prefix("funless-wrk").tempdir()?;
    let mut notes = Vec::new();

    let floor = PlainServer::start(2)?;
    let mut endpoints = vec![Endpoint {
        label: "plain axum JSON hello (HTTP floor)".into(),
        url: floor.url(),
        token: None,
    }];
    let serve = match floors::find_wasmtime(args.wasmtime.as_deref()) {
        Some(wasmtime) => {
            let component = args.examples.join("target/wasm/hello_http_p2.wasm");
            let serve = WasmtimeServe::start(&wasmtime, &component, log_dir.path(), &client)
                .await
                .context("starting wasmtime serve")?;
            notes.push(format!(
                "Peer: `{}` (`wasmtime serve -Scli`).",
                serve.version
            ));
            endpoints.push(Endpoint {
                label: "`wasmtime serve` (wasi:http hello component)".into(),
                url: serve.url.clone(),
                token: None,
            });
            Some(serve)
        }
        None => {
            notes.push("Peer left out: no Wasmtime CLI found (give --wasmtime).".into());
            None
        }
    };

    let mut layouts = vec![(Layout::TwoProcesses, "Core + 1 Worker (two processes)")];
    if !args.no_embedded {
        layouts.push((Layout::Embedded, "Core `--embedded-worker` (one process)"));
    }
    let mut platforms = Vec::new();
    for (build, dir) in &builds {
        for (layout, what) in &layouts {
            let platform = Platform::start_as(*layout, dir, None, None)
                .await
                .with_context(|| format!("starting {what} of {build}"))?;
            platform
                .upload("hello", "hello_fl.wasm", hello.clone(), None)
                .await?;
            let label = if builds.len() == 1 {
                (*what).to_string()
            } else {
                format!("{what}, {build}")
            };
            endpoints.push(Endpoint {
                label,
                url: platform.invoke_url("hello"),
                token: Some(platform.token.clone()),
            });
            platforms.push(platform);
        }
    }

    let body = r#"{"args":{"name":"bench"}}"#;
    let mut results: Vec<Vec<WrkRun>> = vec![Vec::new(); endpoints.len()];
    for &connections in &args.concurrency {
        for (i, endpoint) in endpoints.iter().enumerate() {
            // A short warm-up so no target pays for its first connection or code load here.
            wrk(endpoint, body, connections, 1, log_dir.path())?;
            let run = wrk(endpoint, body, connections, args.secs, log_dir.path())
                .with_context(|| format!("wrk against {}", endpoint.label))?;
            progress(&format!(
                "{} c={connections}: {:.0} req/s, p50 {:?}",
                endpoint.label, run.requests_per_sec, run.p50
            ));
            results[i].push(run);
        }
        for platform in &mut platforms {
            platform.check_alive()?;
        }
    }
    drop(platforms);
    drop(serve);
    drop(floor);

    let table = render(
        &wrk_version,
        args,
        &endpoints,
        &results,
        &notes,
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.to_string()),
    );
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(table)
}

/// Progress on stderr (the table goes to stdout).
fn progress(line: &str) {
    eprintln!("{line}");
}

/// Runs `wrk --latency` for `secs` seconds and parses its report.
fn wrk(
    endpoint: &Endpoint,
    body: &str,
    connections: usize,
    secs: u64,
    dir: &Path,
) -> anyhow::Result<WrkRun> {
    let script = dir.join("post.lua");
    std::fs::write(&script, lua_script(body, endpoint.token.as_deref()))?;
    let threads = connections.clamp(1, 2);
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{secs}s"), "--latency", "--timeout", "10s"])
        .arg("-s")
        .arg(&script)
        .arg(&endpoint.url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// The wrk script: every request a POST of `body`, with the bearer token when there is one.
fn lua_script(body: &str, token: Option<&str>) -> String {
    let mut script = format!(
        "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    if let Some(token) = token {
        let _ = writeln!(
            script,
            "wrk.headers[\"Authorization\"] = \"Bearer {token}\""
        );
    }
    script
}

/// Parses wrk's `--latency` report.
pub(crate) fn parse(text: &str) -> anyhow::Result<WrkRun> {
    let mut run = WrkRun {
        requests_per_sec: f64::NAN,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        requests: 0,
        errors: 0,
    };
    let (mut p50, mut p99, mut rps) = (false, false, false);
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => {
                run.p50 = duration(value)?;
                p50 = true;
            }
            ["99%", value] => {
                run.p99 = duration(value)?;
                p99 = true;
            }
            ["Requests/sec:", value] => {
                run.requests_per_sec = value.parse().context("Requests/sec")?;
                rps = true;
            }
            [count, "requests", "in", ..] => run.requests = count.parse().context("requests")?,
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                run.errors += count.parse::<u64>().context("non-2xx")?;
            }
            ["Socket", "errors:", rest @ ..] => {
                for value in rest.iter().skip(1).step_by(2) {
                    run.errors += value.trim_end_matches(',').parse::<u64>().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    if !(p50 && p99 && rps) {
        bail!("no latency distribution or Requests/sec in the report");
    }
    Ok(run)
}

/// wrk's durations: `95.00us`, `1.04ms`, `2.10s`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        bail!("`{text}`: not a wrk duration");
    };
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}`: not a wrk duration"))?;
    Ok(Duration::from_secs_f64(value * scale))
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

fn render(
    wrk_version: &str,
    args: &WrkArgs,
    endpoints: &[Endpoint],
    results: &[Vec<WrkRun>],
    notes: &[String],
    cores: Option<String>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "`{wrk_version}`, {} s per run, POST `{{\"args\":{{\"name\":\"bench\"}}}}`, threads = min(connections, 2); {} cores; every target in one run, interleaved per concurrency.\n",
        args.secs,
        cores.as_deref().unwrap_or("?")
    );
    for note in notes {
        let _ = writeln!(out, "{note}\n");
    }
    let mut header = "| path |".to_string();
    let mut rule = "|---|".to_string();
    for c in &args.concurrency {
        let _ = write!(header, " c={c} req/s | p50 | p99 |");
        rule.push_str("---|---|---|");
    }
    header.push_str(" errors |");
    rule.push_str("---|");
    let _ = writeln!(out, "{header}\n{rule}");
    for (endpoint, runs) in endpoints.iter().zip(results) {
        let mut row = format!("| {} |", endpoint.label);
        for run in runs {
            let _ = write!(
                row,
                " {:.0} | {} | {} |",
                run.requests_per_sec,
                micros(run.p50),
                micros(run.p99)
            );
        }
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        let _ = write!(row, " {errors} |");
        let _ = writeln!(out, "{row}");
    }
    // Ratios against the peer, when it ran: the issue's targets are stated that way.
    if let Some(peer) = endpoints
        .iter()
        .position(|e| e.label.contains("wasmtime serve"))
    {
        let _ = writeln!(
            out,
            "\nRatios to `wasmtime serve` (throughput: ours / its, higher is better; p50 and p99: ours / its, lower is better):\n"
        );
        let mut header = "| path |".to_string();
        let mut rule = "|---|".to_string();
        for c in &args.concurrency {
            let _ = write!(header, " c={c} req/s | p50 | p99 |");
            rule.push_str("---|---|---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for (endpoint, runs) in endpoints.iter().zip(results) {
            if endpoint.token.is_none() {
                continue;
            }
            let mut row = format!("| {} |", endpoint.label);
            for (run, base) in runs.iter().zip(&results[peer]) {
                let _ = write!(
                    row,
                    " {:.2}x | {:.2}x | {:.2}x |",
                    run.requests_per_sec / base.requests_per_sec,
                    run.p50.as_secs_f64() / base.p50.as_secs_f64(),
                    run.p99.as_secs_f64() / base.p99.as_secs_f64()
                );
            }
            let _ = writeln!(out, "{row}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const REPORT: &str = "Running 8s test @ http://127.0.0.1:4000/v1/fn/_/hello
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     7.21ms    3.02ms  40.11ms   71.00%
    Req/Sec     4.40k   310.00     5.00k    70.00%
  Latency Distribution
     50%    6.90ms
     75%    8.80ms
     90%   11.00ms
     99%   14.80ms
  69944 requests in 8.00s, 12.34MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   8743.00
Transfer/sec:      1.54MB
";

    #[test]
    fn reads_wrks_report() {
        let run = parse(REPORT).unwrap();
        assert_eq!(run.requests_per_sec, 8743.0);
        assert_eq!(run.p50, Duration::from_micros(6900));
        assert_eq!(run.p99, Duration::from_micros(14800));
        assert_eq!(run.requests, 69944);
        assert_eq!(run.errors, 7);
    }

    #[test]
    fn reads_every_unit() {
        assert_eq!(duration("95.00us").unwrap(), Duration::from_micros(95));
        assert_eq!(duration("1.50s").unwrap(), Duration::from_millis(1500));
        assert!(duration("12").is_err());
        assert!(duration("xms").is_err());
    }

    #[test]
    fn refuses_a_report_without_figures() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }

    #[test]
    fn parses_also() {
        assert_eq!(
            parse_also("before=/tmp/x").unwrap(),
            ("before".to_string(), PathBuf::from("/tmp/x"))
        );
        assert!(parse_also("nolabel").is_err());
        assert!(parse_also("=dir").is_err());
    }

    #[test]
    fn the_script_carries_the_token_only_when_there_is_one() {
        assert!(lua_script("{}", Some("t")).contains("Bearer t"));
        assert!(!lua_script("{}", None).contains("Authorization"));
    }
}
