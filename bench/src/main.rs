//! `funless-bench`: closed-loop load against a running FunLess platform, JMeter style:
//! T concurrent clients each send N sequential invocations; every latency is recorded and the
//! distribution reported. (The paper's full evaluation builds on this.)
// A command-line tool: its report goes to stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

/// Invoke one function under closed-loop load and report the latency distribution.
#[derive(Debug, Parser)]
#[command(name = "funless-bench", version)]
struct Args {
    /// API base URL.
    #[arg(long, env = "FL_HOST", default_value = "http://127.0.0.1:4000")]
    host: String,
    /// Bearer token.
    #[arg(long, env = "FL_TOKEN", hide_env_values = true)]
    token: String,
    /// Module of the function.
    #[arg(long, default_value = "_")]
    module: String,
    /// Function to invoke.
    #[arg(long)]
    function: String,
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

async fn invoke(
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let args_json: serde_json::Value =
        serde_json::from_str(&args.args).context("--args is not JSON")?;
    let body = serde_json::json!({ "args": args_json }).to_string();
    let url = format!(
        "{}/v1/fn/{}/{}",
        args.host.trim_end_matches('/'),
        args.module,
        args.function
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.threads)
        .build()?;

    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.threads {
        let (client, url, token, body) = (
            client.clone(),
            url.clone(),
            args.token.clone(),
            body.clone(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n: u64| Duration::from_millis(n);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 50.0), ms(50));
        assert_eq!(percentile(&sorted, 99.0), ms(99));
        assert_eq!(percentile(&sorted, 100.0), ms(100));
        assert_eq!(percentile(&sorted[..1], 99.0), ms(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
