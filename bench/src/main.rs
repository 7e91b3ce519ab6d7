//! `funless-bench`: closed-loop load against a running FunLess platform, JMeter style:
//! T concurrent clients each send N sequential invocations; every latency is recorded and the
//! distribution reported. `funless-bench eval` runs the paper's whole evaluation against a
//! platform it starts itself (see `eval.rs` and docs/BENCHMARKS.md).
// A command-line tool: its report goes to stdout.
#![allow(clippy::print_stdout)]

mod cluster_floor;
mod config_cost;
mod cores;
mod eval;
mod floors;
mod hops;
mod load;
mod platform;
mod plot;
mod report;
mod stats;
mod wrk;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::stats::percentile;

/// Invoke one function under closed-loop load and report the latency distribution, or run
/// the whole evaluation (`eval`).
#[derive(Debug, Parser)]
#[command(
    name = "funless-bench",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The paper's evaluation: starts a Core and a Worker, runs the workloads, the floors and
    /// the peer, writes report.md and PNG plots.
    Eval(eval::EvalArgs),
    /// The `hello` comparison driven by Debian's `wrk`: the HTTP floor, `wasmtime serve`, the
    /// Core with a Worker and the Core with its worker embedded, in one run.
    Wrk(wrk::WrkArgs),
    /// Where a warm invocation's time goes: the median of every stage the answers'
    /// `Server-Timing` headers report, beside the client's measured median.
    Hops(hops::HopsArgs),
    /// What configuration and a secret cost an invocation: the same function with and
    /// without them, in alternating rounds.
    Config(config_cost::ConfigArgs),
    /// Invocation throughput with one Core and with two Cores on the same worker and one
    /// PostgreSQL database (give an empty one).
    Cores(cores::CoresArgs),
    /// The network floor alone (a plain axum server answering like `hello`) on
    /// 127.0.0.1:PORT until killed: `hops` runs it as a process of its own.
    #[command(hide = true)]
    FloorServer {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Runtime threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

/// One closed-loop run against a running platform.
#[derive(Debug, clap::Args)]
struct Args {
    /// API base URL.
    #[arg(long, env = "FL_HOST", default_value = "http://127.0.0.1:4000")]
    host: String,
    /// Bearer token.
    #[arg(long, env = "FL_TOKEN", hide_env_values = true, required = true)]
    token: Option<String>,
    /// Module of the function.
    #[arg(long, default_value = "_")]
    module: String,
    /// Function to invoke.
    #[arg(long, required = true)]
    function: Option<String>,
    /// JSON arguments.
    #[arg(long, default_value = "{}")]
    args: String,
    /// Concurrent clients (threads).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sequential requests per client.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Requests per client sent first and not measured.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
}

pub(crate) async fn invoke(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!("{status}: {text}");
    }
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Hops(args)) => {
            let table = hops::run(args).await?;
            println!("{table}");
            Ok(())
        }
        Some(Command::Cores(args)) => {
            let table = cores::run(args).await?;
            println!("{table}");
            Ok(())
        }
        Some(Command::Config(args)) => {
            let table = config_cost::run(args).await?;
            println!("{table}");
            Ok(())
        }
        Some(Command::FloorServer { port, threads }) => floors::serve_floor(port, threads).await,
        Some(Command::Wrk(args)) => {
            let table = wrk::run(args).await?;
            println!("{table}");
            Ok(())
        }
        Some(Command::Eval(eval)) => {
            let out = eval.out().to_path_buf();
            eval::run(eval).await?;
            let report = out.join("report.md");
            let text = std::fs::read_to_string(&report)
                .with_context(|| format!("reading {}", report.display()))?;
            println!("{text}");
            println!("(written to {}, with its plots)", report.display());
            Ok(())
        }
        None => single_run(cli.run).await,
    }
}

async fn single_run(args: Args) -> anyhow::Result<()> {
    let (Some(token), Some(function)) = (args.token, args.function) else {
        bail!("--token and --function are required");
    };
    let args_json: serde_json::Value =
        serde_json::from_str(&args.args).context("--args is not JSON")?;
    let body = serde_json::json!({ "args": args_json }).to_string();
    let url = format!(
        "{}/v1/fn/{}/{}",
        args.host.trim_end_matches('/'),
        args.module,
        function
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.threads)
        .build()?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.threads {
        let (client, url, token, body) = (client.clone(), url.clone(), token.clone(), body.clone());
        let (warmup, requests) = (args.warmup, args.requests);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(requests);
            let mut errors = Vec::new();
            for i in 0..warmup + requests {
                match invoke(&client, &url, &token, &body).await {
                    Ok(d) if i >= warmup => latencies.push(d),
                    Ok(_) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors.extend(e);
    }
    let wall = started.elapsed();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} x {} requests to {} ({} warm-up each)",
        args.threads, args.requests, url, args.warmup
    );
    println!(
        "p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  mean {:.3} ms",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(latencies.iter().sum::<Duration>()) / latencies.len().max(1) as f64,
    );
    println!(
        "throughput {:.0} req/s, errors {}",
        (latencies.len() + errors.len()) as f64 / wall.as_secs_f64(),
        errors.len()
    );
    if let Some(first) = errors.first() {
        println!("first error: {first}");
    }
    Ok(())
}
