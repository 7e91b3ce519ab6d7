//! Overhead of function network access per request: the SeBS `network_benchmark` workload
//! (16 POSTs to a reply server, then a PUT of the timings to a bucket) run in-process by a
//! worker runtime as a FunLess-ABI module (`__http_request`) and as a WASI 0.2 component
//! (`wasi:http`), against the same requests made by a plain Rust client (reqwest, pooled) in
//! the same run, all against `funless-testkit`'s local servers.
//!
//! Usage: `cargo bench -p funless-worker --bench network [-- ROUNDS]` (default 200; run
//! `examples/build.sh` first). Per form it reports:
//! - `in guest`: median and p99 of the per-request times the function measured itself;
//! - `marginal`: (time of a 16-request invocation − time of a 0-request one) / 16, medians
//!   over the rounds: the cost one more request adds, host and guest included;
//! - `overhead`: marginal minus the plain client's own marginal per-request time.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use funless_actors::protocol::{CachePush, Code, FunctionId, InvokeReply, InvokeRequest};
use funless_testkit::Servers;
use funless_worker::runtime::code_hash;
use funless_worker::{Runtime, RuntimeConfig};

const REQUESTS: u64 = 16;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() * 99).div_ceil(100).saturating_sub(1)]
}

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/target/wasm/{name}.wasm"))
}

/// The plain client's 16 POSTs and one PUT, as the functions make them.
async fn plain(client: &reqwest::Client, servers: &Servers, n: u64) -> Duration {
    let started = Instant::now();
    let mut times = Vec::new();
    for i in 0..n {
        let sent = Instant::now();
        let body = format!(r#"{{"i":{i},"sent_ms":{}}}"#, sent.elapsed().as_secs_f64());
        let response = client
            .post(servers.reply_url())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
        times.push(sent.elapsed().as_secs_f64() * 1000.0);
    }
    let report = format!(r#"{{"times_ms":{times:?}}}"#);
    let response = client
        .put(servers.bucket_url("plain"))
        .header("content-type", "application/json")
        .body(report)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    started.elapsed()
}

struct Function {
    runtime: std::sync::Arc<Runtime>,
    id: FunctionId,
    allow: Vec<String>,
}

impl Function {
    async fn load(runtime: std::sync::Arc<Runtime>, name: &str, servers: &Servers) -> Self {
        let path = example(name);
        let code = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run examples/build.sh first)", path.display()));
        let id = FunctionId {
            module: "_".into(),
            name: name.into(),
            hash: code_hash(&code),
        };
        runtime
            .cache_code(CachePush {
                function: id.clone(),
                code: Code::Inline(code),
            })
            .await;
        Self {
            runtime,
            id,
            allow: vec![servers.http.to_string()],
        }
    }

    /// One invocation with `n` requests: its wall time and the per-request times it measured.
    async fn run(&self, servers: &Servers, n: u64) -> (Duration, Vec<f64>) {
        let args = format!(
            r#"{{"server":"{}","bucket":"{}","n":{n}}}"#,
            servers.reply_url(),
            servers.bucket_url(&self.id.name)
        );
        let started = Instant::now();
        let reply = self
            .runtime
            .invoke(InvokeRequest {
                env: Default::default(),
                function: self.id.clone(),
                args_json: args,
                code: None,
                timeout_ms: 60_000,
                memory_limit_bytes: 0,
                allow_hosts: self.allow.clone(),
            })
            .await;
        let elapsed = started.elapsed();
        let InvokeReply::Done(output) = reply else {
            panic!("{}: {reply:?}", self.id.name);
        };
        let value: serde_json::Value = serde_json::from_str(&output.output_json).unwrap();
        let times = value["times_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_f64().unwrap())
            .collect();
        (elapsed, times)
    }
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let servers = Servers::start();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let runtime = std::sync::Arc::new(Runtime::new(RuntimeConfig::default()).unwrap());
        let forms = [
            ("__http_request (FunLess ABI)", Function::load(runtime.clone(), "network_benchmark_fl", &servers).await),
            ("wasi:http (component)", Function::load(runtime.clone(), "network_benchmark_p2", &servers).await),
        ];
        let client = reqwest::Client::new();
        // Warm up connections and code.
        for _ in 0..20 {
            plain(&client, &servers, REQUESTS).await;
            for (_, f) in &forms {
                f.run(&servers, REQUESTS).await;
            }
        }
        let mut plain_marginal = Vec::new();
        let mut plain_full = Vec::new();
        let mut marginal = vec![Vec::new(); forms.len()];
        let mut in_guest = vec![Vec::new(); forms.len()];
        for _ in 0..rounds {
            // Interleaved, so drift in the machine's load touches every form alike.
            let full = plain(&client, &servers, REQUESTS).await;
            let empty = plain(&client, &servers, 0).await;
            plain_full.push(full.as_secs_f64() * 1e6 / REQUESTS as f64);
            plain_marginal.push((full.as_secs_f64() - empty.as_secs_f64()) * 1e6 / REQUESTS as f64);
            for (k, (_, f)) in forms.iter().enumerate() {
                let (full, times) = f.run(&servers, REQUESTS).await;
                let (empty, _) = f.run(&servers, 0).await;
                marginal[k].push((full.as_secs_f64() - empty.as_secs_f64()) * 1e6 / REQUESTS as f64);
                in_guest[k].extend(times.into_iter().map(|ms| ms * 1000.0));
            }
        }
        let plain_us = median(plain_marginal);
        println!("network_benchmark, {REQUESTS} requests per invocation, {rounds} rounds, local reply server");
        println!(
            "{:<30} marginal {:>7.1} µs/request  (whole 16+1 requests / 16: {:.1} µs)",
            "plain Rust client (reqwest)",
            plain_us,
            median(plain_full)
        );
        for (k, (label, _)) in forms.iter().enumerate() {
            let m = median(marginal[k].clone());
            println!(
                "{label:<30} marginal {m:>7.1} µs/request  overhead {:>+7.1} µs/request  in guest: median {:.1} µs p99 {:.1} µs",
                m - plain_us,
                median(in_guest[k].clone()),
                p99(in_guest[k].clone()),
            );
        }
    });
}
