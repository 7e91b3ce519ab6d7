//! In-process invocation cost of one worker runtime, with no Core, cluster or HTTP around it.
//!
//! Usage: `cargo bench -p funless-worker --bench invoke -- [module.wasm ...]`
//! (default: `examples/target/wasm/hello_fl.wasm` and `hello_wasi.wasm`; run
//! `examples/build.sh` first). For each module it reports, median and p99 over many runs:
//! - `wasm run`: instantiate + call + collect output in a fresh Store (the `run_us` the worker
//!   reports), i.e. the Wasmtime part of a warm invocation;
//! - `warm invoke`: the whole `Runtime::invoke` (cache lookup, run, metrics);
//! - `first after restart`: a new runtime over the same disk cache (preloaded at start, as the
//!   worker binary does), first invocation; the runtime construction itself is excluded.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use funless_actors::protocol::{CachePush, Code, FunctionId, InvokeReply, InvokeRequest};
use funless_worker::runtime::code_hash;
use funless_worker::{Runtime, RuntimeConfig};

const WARM_RUNS: usize = 5000;
const RESTARTS: usize = 30;

fn percentiles(mut values: Vec<Duration>) -> String {
    values.sort();
    let at = |p: usize| values[((values.len() * p).div_ceil(100)).saturating_sub(1)];
    format!(
        "median {:>8.1} µs  p99 {:>8.1} µs  (n={})",
        at(50).as_secs_f64() * 1e6,
        at(99).as_secs_f64() * 1e6,
        values.len()
    )
}

fn request(function: &FunctionId) -> InvokeRequest {
    InvokeRequest {
        env: Default::default(),
        function: function.clone(),
        args_json: r#"{"name":"bench"}"#.into(),
        code: None,
        timeout_ms: 60_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    }
}

async fn bench(path: PathBuf) {
    let code = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let function = FunctionId {
        module: "_".into(),
        name: "bench".into(),
        hash: code_hash(&code),
    };
    let cache_dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache_dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config.clone()).unwrap();
    runtime
        .cache_code(CachePush {
            function: function.clone(),
            code: Code::Inline(code.clone()),
        })
        .await;
    let mut run = Vec::with_capacity(WARM_RUNS);
    let mut whole = Vec::with_capacity(WARM_RUNS);
    for i in 0..WARM_RUNS + 200 {
        let started = Instant::now();
        let reply = runtime.invoke(request(&function)).await;
        let elapsed = started.elapsed();
        let InvokeReply::Done(output) = reply else {
            panic!("{}: {reply:?}", path.display());
        };
        if i >= 200 {
            run.push(Duration::from_micros(output.run_us));
            whole.push(elapsed);
        }
    }
    drop(runtime);

    let mut restart = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let runtime = Runtime::new(config.clone()).unwrap();
        runtime.preload().await;
        let started = Instant::now();
        let reply = runtime.invoke(request(&function)).await;
        restart.push(started.elapsed());
        assert!(matches!(reply, InvokeReply::Done(_)), "{reply:?}");
    }

    println!("{} ({} bytes)", path.display(), code.len());
    println!("  wasm run:            {}", percentiles(run));
    println!("  warm invoke:         {}", percentiles(whole));
    println!("  first after restart: {}", percentiles(restart));
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut modules: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        // `cargo bench` runs in the package folder: paths are taken from the repository root.
        .map(|a| root.join(a))
        .collect();
    if modules.is_empty() {
        let wasm = root.join("examples/target/wasm");
        modules = vec![wasm.join("hello_fl.wasm"), wasm.join("hello_wasi.wasm")];
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for module in modules {
        runtime.block_on(bench(module));
    }
}
