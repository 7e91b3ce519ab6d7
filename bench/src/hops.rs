//! `funless-bench hops`: where a warm invocation's time goes, hop by hop. Starts the platform
//! (the Core with one Worker, and the Core with its worker embedded), sends `hello` one request
//! at a time, and reads each answer's `Server-Timing` header (the Core's and the worker's own
//! stages, measured in the processes: see api/src/routes.rs `invoke` and core/src/platform.rs
//! `hops`). What happens outside the Core's handler (the client, loopback TCP, hyper reading
//! the request head and writing the answer) is the HTTP floor's median with the same client:
//! a plain axum server answering the same JSON, in a process of its own as the Core is (its
//! median inside the client's process is reported beside it). The table puts the median of
//! every stage next to the client's measured median, so the stages are seen to add up.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::cluster_floor;
use crate::floors::{FloorProcess, PlainServer};
use crate::platform::{COOKIE, Layout, Platform};
use crate::stats::percentile;

/// Runtime threads of the HTTP floor and of the cluster floor's client: the Core's default
/// `--io-threads`.
const FLOOR_THREADS: usize = 1;

/// Arguments of `funless-bench hops`.
#[derive(Debug, Args)]
pub(crate) struct HopsArgs {
    /// Folder of the release binaries `funless-core` and `funless-worker` (default:
    /// `$CARGO_TARGET_DIR/release`, else `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository's `examples/` folder (functions built by `examples/build.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Sequential requests measured per path (after as many warm-up requests as a tenth).
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    /// Where the Markdown table goes (also printed).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The stages the Core reports, in the order they run; `total` is the handler's whole time.
const STAGES: [(&str, &str); 11] = [
    (
        "auth",
        "authenticate the bearer token (admission middleware)",
    ),
    ("body", "read the request body (admission middleware)"),
    ("parse", "parse the JSON arguments (handler)"),
    ("lookup", "resolve module and function, from memory"),
    (
        "schedule",
        "choose the worker (placement on the shared snapshot)",
    ),
    (
        "cluster",
        "to the worker's gateway and back (two processes: encode, Core node session, TCP, worker node session, decode)",
    ),
    ("spawn", "worker: gateway to its invoker actor running"),
    ("run", "worker: Wasmtime instantiate and run"),
    (
        "worker",
        "worker: the rest (code table, slot, metrics, answer)",
    ),
    ("record", "metrics, logs and the activation record"),
    ("total", "the Core's whole share, admission to answer built"),
];

/// Per stage, every request's value.
#[derive(Debug, Default)]
struct Samples {
    stages: BTreeMap<String, Vec<Duration>>,
    client: Vec<Duration>,
}

pub(crate) async fn run(args: HopsArgs) -> anyhow::Result<String> {
    tokio::select! {
        result = measure(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: processes stopped"),
    }
}

async fn measure(args: &HopsArgs) -> anyhow::Result<String> {
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(crate::eval::default_bin_dir);
    let hello = std::fs::read(args.examples.join("target/wasm/hello_fl.wasm"))
        .context("reading examples/target/wasm/hello_fl.wasm (run examples/build.sh)")?;
    // One connection, kept alive: the path of a client that invokes again and again.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()?;
    let body = r#"{"args":{"name":"bench"}}"#;
    let warmup = (args.requests / 10).max(10);

    // The floor runs on as many runtime threads as the Core does by default (--io-threads).
    let floor = PlainServer::start(FLOOR_THREADS)?;
    let in_process = sample(&client, &floor.url(), None, body, warmup, args.requests).await?;
    drop(floor);
    let floor = FloorProcess::start(FLOOR_THREADS).await?;
    let floor_samples = sample(&client, floor.url(), None, body, warmup, args.requests).await?;
    drop(floor);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} sequential `hello` invocations per path (one client, one kept-alive connection, \
         after {warmup} warm-up requests); medians in µs. Stages are read from each answer's \
         `Server-Timing` header; \"client, TCP, HTTP\" is the HTTP floor's median with the \
         same client (a plain axum server answering the same JSON, in a process of its own; \
         inside the client's process its median was {:.1} µs).\n",
        args.requests,
        us(median(&in_process.client)),
    );
    for (layout, what) in [
        (Layout::TwoProcesses, "Core + 1 Worker (two processes)"),
        (Layout::Embedded, "Core `--embedded-worker` (one process)"),
    ] {
        let platform = Platform::start_as(layout, &bin_dir, None, None)
            .await
            .with_context(|| format!("starting {what}"))?;
        platform
            .upload("hello", "hello_fl.wasm", hello.clone(), None)
            .await?;
        let samples = sample(
            &client,
            &platform.invoke_url("hello"),
            Some(&platform.token),
            body,
            warmup,
            args.requests,
        )
        .await?;
        let floor = match platform.worker_cluster_port {
            // On a runtime of the Core's default size, as the Core calls the worker.
            Some(port) => {
                let (hello, requests) = (hello.clone(), args.requests);
                let measured = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(FLOOR_THREADS)
                        .enable_all()
                        .build()?
                        .block_on(cluster_floor::measure(
                            port, COOKIE, &hello, warmup, requests,
                        ))
                })
                .await?;
                Some(measured.context("measuring the cluster floor")?)
            }
            None => None,
        };
        drop(platform);
        out.push_str(&table(what, &samples, &floor_samples.client));
        if let Some(floor) = floor {
            let cluster = samples
                .stages
                .get("cluster")
                .map_or(Duration::ZERO, |v| median(v));
            let _ = writeln!(
                out,
                "The cluster alone (this process joins the worker's node with the cookie and \
                 calls its gateway as the Core does; no Core, no HTTP), {} round trips each:\n\n\
                 | call | median µs | p99 µs |\n|---|---|---|\n\
                 | `Status` (the worker's status report: two node sessions, TCP, reading /proc) | {:.1} | {:.1} |\n\
                 | `Invoke` hello (the cluster hop + the worker's share) | {:.1} | {:.1} |\n\
                 | the Core's `cluster` stage above, for comparison | {:.1} | |\n",
                args.requests,
                us(median(&floor.status)),
                us(p99(&floor.status)),
                us(median(&floor.invoke)),
                us(p99(&floor.invoke)),
                us(cluster),
            );
        }
    }
    if let Some(path) = &args.out {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}

/// Sends `warmup` then `requests` invocations one after the other and keeps the measured ones'
/// client latency and `Server-Timing` stages.
async fn sample(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: &str,
    warmup: usize,
    requests: usize,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    for i in 0..warmup + requests {
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let started = Instant::now();
        let response = request.send().await.context("sending")?;
        let status = response.status();
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.bytes().await.context("reading the answer")?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("{url}: {status}: {}", String::from_utf8_lossy(&text));
        }
        if i < warmup {
            continue;
        }
        samples.client.push(took);
        if let Some(timing) = timing {
            for (stage, duration) in parse_server_timing(&timing)? {
                samples.stages.entry(stage).or_default().push(duration);
            }
        }
    }
    Ok(samples)
}

/// `name;dur=0.012, other;dur=1.5` → stages with their durations (milliseconds in the header).
pub(crate) fn parse_server_timing(value: &str) -> anyhow::Result<Vec<(String, Duration)>> {
    let mut stages = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let mut fields = entry.split(';').map(str::trim);
        let name = fields.next().unwrap_or_default().to_string();
        let ms = fields
            .find_map(|f| f.strip_prefix("dur="))
            .with_context(|| format!("`{entry}`: no dur"))?
            .parse::<f64>()
            .with_context(|| format!("`{entry}`: dur is not a number"))?;
        if !ms.is_finite() || ms < 0.0 {
            bail!("`{entry}`: dur out of range");
        }
        stages.push((name, Duration::from_secs_f64(ms / 1e3)));
    }
    Ok(stages)
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 50.0)
}

fn p99(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    percentile(&sorted, 99.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn table(what: &str, samples: &Samples, floor: &[Duration]) -> String {
    let measured = median(&samples.client);
    let outside = median(floor);
    let mut out = String::new();
    let _ = writeln!(out, "**{what}**\n");
    let _ = writeln!(out, "| hop | what it covers | median µs | share |");
    let _ = writeln!(out, "|---|---|---|---|");
    let share = |d: Duration| 100.0 * us(d) / us(measured).max(f64::MIN_POSITIVE);
    let _ = writeln!(
        out,
        "| client, TCP, HTTP | the HTTP floor's median: client, loopback, hyper | {:.1} | {:.0}% |",
        us(outside),
        share(outside)
    );
    let mut sum = outside;
    for (stage, covers) in STAGES.iter().filter(|(s, _)| *s != "total") {
        let Some(values) = samples.stages.get(*stage) else {
            continue;
        };
        let m = median(values);
        sum += m;
        let _ = writeln!(
            out,
            "| {stage} | {covers} | {:.1} | {:.0}% |",
            us(m),
            share(m)
        );
    }
    let total = samples.stages.get("total").map(|v| median(v));
    if let Some(total) = total {
        let _ = writeln!(
            out,
            "| (total) | {} | {:.1} | {:.0}% |",
            STAGES[10].1,
            us(total),
            share(total)
        );
    }
    let _ = writeln!(
        out,
        "| **sum of the hops** | client, TCP, HTTP + every stage but total | **{:.1}** | {:.0}% |",
        us(sum),
        share(sum)
    );
    let _ = writeln!(
        out,
        "| **measured median** | the client's, send to whole answer | **{:.1}** | 100% |\n",
        us(measured)
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_server_timing() {
        let stages = parse_server_timing("auth;dur=0.004, run;dur=1.250,total;dur=2").unwrap();
        assert_eq!(
            stages,
            vec![
                ("auth".to_string(), Duration::from_micros(4)),
                ("run".to_string(), Duration::from_micros(1250)),
                ("total".to_string(), Duration::from_millis(2)),
            ]
        );
        assert!(parse_server_timing("auth").is_err());
        assert!(parse_server_timing("auth;dur=x").is_err());
        assert!(parse_server_timing("auth;dur=-1").is_err());
        assert!(parse_server_timing("").unwrap().is_empty());
    }

    #[test]
    fn the_table_adds_the_stages_to_the_floor() {
        let samples = Samples {
            stages: BTreeMap::from([
                ("auth".to_string(), vec![Duration::from_micros(10)]),
                ("run".to_string(), vec![Duration::from_micros(30)]),
                ("total".to_string(), vec![Duration::from_micros(45)]),
            ]),
            client: vec![Duration::from_micros(100)],
        };
        let text = table("x", &samples, &[Duration::from_micros(50)]);
        assert!(text.contains("| **sum of the hops** | client, TCP, HTTP + every stage but total | **90.0** | 90% |"), "{text}");
        assert!(
            text.contains(
                "| **measured median** | the client's, send to whole answer | **100.0** | 100% |"
            ),
            "{text}"
        );
    }
}
