//! `funless-bench eval`: the paper's evaluation in one command. Starts its own Core and
//! Worker, uploads the example functions over HTTP, runs the paper's workloads, the `hello`
//! latency and throughput runs against the in-process and network floors and the
//! `wasmtime serve` peer, samples memory during the `hellojs` run, and writes a Markdown report
//! with PNG plots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use crate::floors::{self, PlainServer, WasmtimeServe};
use crate::load::{self, Target};
use crate::platform::{Platform, rss_bytes};
use crate::report::{self, Report};
use crate::stats::Run;

/// Arguments of `funless-bench eval`.
#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// Folder of the release binaries `funless-core` and `funless-worker` (default:
    /// `$CARGO_TARGET_DIR/release`, else `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository's `examples/` folder (functions built by `examples/build.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Where the report (`report.md`) and the plots go.
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// Runs of each workload (the paper: 5).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Requests per client of the JavaScript `matrix_mult` (the paper: 200; QuickJS takes
    /// about a second per call here, so a full run may ask for fewer).
    #[arg(long, default_value_t = 200)]
    matrix_js_requests: usize,
    /// Length of the `hellojs` memory run, seconds (the paper: 300).
    #[arg(long, default_value_t = 300)]
    memory_secs: u64,
    /// Length of each throughput run at concurrency 64, seconds.
    #[arg(long, default_value_t = 10)]
    throughput_secs: u64,
    /// Rate of the open-loop `hello` run, requests per second.
    #[arg(long, default_value_t = 1000.0)]
    open_rate: f64,
    /// Length of the open-loop run, seconds.
    #[arg(long, default_value_t = 10)]
    open_secs: u64,
    /// Short mode for CI: 1 run, few requests, a 5 s memory run, 1 s throughput runs (the
    /// numbers say little; it proves the suite still works).
    #[arg(long)]
    short: bool,
    /// Run only these workload groups (comma-separated: sleep, server_reply, matrix_mult,
    /// network_benchmark, hello, throughput, open_loop, memory).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Use PostgreSQL instead of SQLite (an empty database: the Core writes its tokens on
    /// first start; otherwise give --token).
    #[arg(long, env = "FUNLESS_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Bearer token, for a database that already has its subjects.
    #[arg(long, hide_env_values = true)]
    token: Option<String>,
    /// The Wasmtime CLI for the `wasmtime serve` peer (default: ~/.cache/wasmtime-cli/bin,
    /// then the PATH; skipped when absent).
    #[arg(long)]
    wasmtime: Option<PathBuf>,
    /// TrueType font for the plots' text.
    #[arg(long, default_value = crate::plot::DEFAULT_FONT)]
    font: PathBuf,
}

impl EvalArgs {
    /// Where the report goes.
    pub(crate) fn out(&self) -> &Path {
        &self.out
    }
}

/// Parameters that differ between the full and the short run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    pub(crate) repeat: usize,
    pub(crate) sleep: (usize, usize, u64),
    pub(crate) server_reply: (usize, usize),
    pub(crate) matrix_mult: (usize, usize),
    pub(crate) matrix_js_requests: usize,
    pub(crate) network_benchmark: usize,
    pub(crate) hello_requests: usize,
    pub(crate) hello_warmup: usize,
    pub(crate) throughput: Duration,
    pub(crate) throughput_warmup: Duration,
    pub(crate) open_rate: f64,
    pub(crate) open: Duration,
    pub(crate) memory: Duration,
}

impl Params {
    fn of(args: &EvalArgs) -> Self {
        if args.short {
            Self {
                repeat: 1,
                sleep: (4, 1, 200),
                server_reply: (4, 10),
                matrix_mult: (4, 5),
                matrix_js_requests: 2,
                network_benchmark: 5,
                hello_requests: 50,
                hello_warmup: 5,
                throughput: Duration::from_secs(1),
                throughput_warmup: Duration::from_millis(200),
                open_rate: 100.0,
                open: Duration::from_secs(1),
                memory: Duration::from_secs(5),
            }
        } else {
            Self {
                repeat: args.repeat.max(1),
                sleep: (4, 25, 3000),
                server_reply: (4, 200),
                matrix_mult: (4, 200),
                matrix_js_requests: args.matrix_js_requests.max(1),
                network_benchmark: 50,
                hello_requests: 1000,
                hello_warmup: 20,
                throughput: Duration::from_secs(args.throughput_secs.max(1)),
                throughput_warmup: Duration::from_secs(2),
                open_rate: args.open_rate.max(1.0),
                open: Duration::from_secs(args.open_secs.max(1)),
                memory: Duration::from_secs(args.memory_secs.max(1)),
            }
        }
    }
}

/// A function of the evaluation: its name on the platform and its example file.
struct Function {
    name: &'static str,
    /// Relative to the examples folder.
    file: &'static str,
    metadata: Option<serde_json::Value>,
    /// Arguments of the warm-up call after the upload.
    warm_args: serde_json::Value,
}

/// Runs the evaluation; stops its processes on return, also on error or Ctrl-C.
pub(crate) async fn run(args: EvalArgs) -> anyhow::Result<()> {
    tokio::select! {
        result = evaluate(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: processes stopped, no report written"),
    }
}

pub(crate) fn default_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("release")
}

fn wanted(args: &EvalArgs, group: &str) -> bool {
    args.only.is_empty() || args.only.iter().any(|g| g == group)
}

async fn evaluate(args: &EvalArgs) -> anyhow::Result<()> {
    let params = Params::of(args);
    let bin_dir = args.bin_dir.clone().unwrap_or_else(default_bin_dir);
    for binary in ["funless-core", "funless-worker"] {
        if !bin_dir.join(binary).is_file() {
            bail!(
                "{} not found: build it (cargo build --release -p {binary}) or give --bin-dir",
                bin_dir.join(binary).display()
            );
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut report = Report::new(args, &bin_dir, params);
    let plots = match crate::plot::load_font(&args.font) {
        Ok(()) => true,
        Err(e) => {
            report.note(format!(
                "Plots skipped: no font ({e:#}; install Debian's fonts-dejavu-core or give --font)."
            ));
            false
        }
    };
    let log_dir = tempfile::Builder::new()
        .prefix("funless-eval-logs")
        .tempdir()?;

    let servers = funless_testkit::Servers::start();
    let mut platform = Platform::start(
        &bin_dir,
        args.database_url.as_deref(),
        args.token.as_deref(),
    )
    .await?;
    report.idle_rss(
        rss_bytes(platform.core_pid())?,
        rss_bytes(platform.worker_pid())?,
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()?;

    // Upload every function there is; a missing or refused one skips its workloads.
    let functions = [
        Function {
            name: "hello",
            file: "target/wasm/hello_fl.wasm",
            metadata: None,
            warm_args: json!({"name": "bench"}),
        },
        Function {
            name: "hellojs",
            file: "js/hello.js",
            metadata: None,
            warm_args: json!({"name": "bench"}),
        },
        Function {
            name: "sleep",
            file: "target/wasm/sleep_fl.wasm",
            metadata: None,
            warm_args: json!({"ms": 1}),
        },
        Function {
            name: "sleepjs",
            file: "js/sleep.js",
            metadata: None,
            warm_args: json!({"seconds": 0.001}),
        },
        Function {
            name: "matrix_mult",
            file: "target/wasm/matrix_mult_fl.wasm",
            metadata: None,
            warm_args: json!({"n": 10}),
        },
        Function {
            name: "matrix_multjs",
            file: "js/matrix_mult.js",
            metadata: None,
            warm_args: json!({"n": 10}),
        },
        Function {
            name: "server_reply",
            file: "target/wasm/server_reply_p2.wasm",
            metadata: Some(json!({"allow_hosts": [servers.tcp.to_string()]})),
            warm_args: json!({"address": servers.tcp.to_string(), "message": "warm"}),
        },
        Function {
            name: "network_benchmark",
            file: "target/wasm/network_benchmark_fl.wasm",
            metadata: Some(json!({"allow_hosts": [servers.http.to_string()]})),
            warm_args: json!({
                "server": servers.reply_url(),
                "bucket": servers.bucket_url("warm"),
                "n": 1
            }),
        },
        // Python last: the worker's memory is sampled before and after them.
        Function {
            name: "hellopy",
            file: "target/wasm/hello_py.wasm",
            metadata: None,
            warm_args: json!({"name": "bench"}),
        },
        Function {
            name: "sleeppy",
            file: "target/wasm/sleep_py.wasm",
            metadata: None,
            warm_args: json!({"ms": 1}),
        },
        Function {
            name: "matrix_multpy",
            file: "target/wasm/matrix_mult_py.wasm",
            metadata: None,
            warm_args: json!({"n": 10}),
        },
    ];
    let mut available = Vec::new();
    let mut before_python: Option<u64> = None;
    for function in &functions {
        if function.name.ends_with("py") && before_python.is_none() {
            before_python = Some(rss_bytes(platform.worker_pid())?);
        }
        let path = args.examples.join(function.file);
        let code = match std::fs::read(&path) {
            Ok(code) => code,
            Err(e) => {
                report.skip(
                    function.name,
                    format!(
                        "{} cannot be read ({e}): build the examples with examples/build.sh",
                        path.display()
                    ),
                );
                continue;
            }
        };
        report.artifact(function.name, function.file, code.len() as u64);
        let file_name = Path::new(function.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = platform
            .upload(function.name, &file_name, code, function.metadata.as_ref())
            .await
        {
            report.skip(function.name, format!("upload refused: {e:#}"));
            continue;
        }
        let warm = Target::http(
            &client,
            platform.invoke_url(function.name),
            Some(&platform.token),
            json!({ "args": function.warm_args }).to_string(),
        );
        if let Err(e) = warm.call().await {
            report.skip(function.name, format!("first invocation failed: {e}"));
            continue;
        }
        available.push(function.name);
    }
    platform.check_alive()?;
    let python: Vec<&str> = available
        .iter()
        .copied()
        .filter(|name| name.ends_with("py"))
        .collect();
    if let (Some(before), false) = (before_python, python.is_empty()) {
        let after = rss_bytes(platform.worker_pid())?;
        report.python_memory(python.len(), before, after);
    }
    let has = |name: &'static str| available.contains(&name);
    let (api, token) = (platform.api.clone(), platform.token.clone());
    let invoke = |name: &str, args: serde_json::Value| {
        Target::http(
            &client,
            format!("{api}/v1/fn/_/{name}"),
            Some(&token),
            json!({ "args": args }).to_string(),
        )
    };

    // The paper's workloads.
    if wanted(args, "sleep") {
        let (t, n, ms) = params.sleep;
        for (name, label, fargs) in [
            ("sleep", "sleep (Rust)", json!({"ms": ms})),
            (
                "sleepjs",
                "sleep (JS)",
                json!({"seconds": ms as f64 / 1000.0}),
            ),
            ("sleeppy", "sleep (Python)", json!({"ms": ms})),
        ] {
            if has(name) {
                let runs = repeat(params.repeat, || {
                    load::closed_loop(invoke(name, fargs.clone()), t, n, 0)
                })
                .await;
                report.workload("sleep", label, format!("{t} × {n}, {ms} ms"), runs);
            }
        }
    }
    if wanted(args, "server_reply") && has("server_reply") {
        let (t, n) = params.server_reply;
        let fargs = json!({"address": servers.tcp.to_string(), "message": "ping"});
        let runs = repeat(params.repeat, || {
            load::closed_loop(invoke("server_reply", fargs.clone()), t, n, 0)
        })
        .await;
        report.workload(
            "server_reply",
            "server_reply (Rust component, TCP)",
            format!("{t} × {n}"),
            runs,
        );
    }
    if wanted(args, "matrix_mult") {
        let (t, rust_n) = params.matrix_mult;
        for (name, label, n) in [
            ("matrix_mult", "matrix_mult (Rust)", rust_n),
            (
                "matrix_multjs",
                "matrix_mult (JS)",
                params.matrix_js_requests,
            ),
            (
                "matrix_multpy",
                "matrix_mult (Python)",
                params.matrix_js_requests,
            ),
        ] {
            if has(name) {
                let runs = repeat(params.repeat, || {
                    load::closed_loop(invoke(name, json!({"n": 100})), t, n, 0)
                })
                .await;
                report.workload("matrix_mult", label, format!("{t} × {n}, n = 100"), runs);
            }
        }
    }
    if wanted(args, "network_benchmark") && has("network_benchmark") {
        let n = params.network_benchmark;
        let fargs = json!({
            "server": servers.reply_url(),
            "bucket": servers.bucket_url("bench"),
            "n": 16
        });
        let runs = repeat(params.repeat, || {
            load::closed_loop(invoke("network_benchmark", fargs.clone()), 1, n, 0)
        })
        .await;
        report.workload(
            "network_benchmark",
            "network_benchmark (Rust, 16 requests each)",
            format!("1 × {n}"),
            runs,
        );
    }
    platform.check_alive()?;

    // hello through the platform, against the floors and the peer.
    let hello_args = json!({"name": "bench"});
    let hello_body = json!({ "args": hello_args }).to_string();
    let network_floor = PlainServer::start(2)?;
    let floor_target = Target::http(&client, network_floor.url(), None, hello_body.clone());
    let in_process = match std::fs::read(args.examples.join("target/wasm/hello_fl.wasm")) {
        Ok(code) => match floors::in_process(code, &hello_args.to_string()).await {
            Ok(target) => Some(target),
            Err(e) => {
                report.skip("in-process floor", format!("{e:#}"));
                None
            }
        },
        Err(e) => {
            report.skip("in-process floor", format!("hello_fl.wasm: {e}"));
            None
        }
    };
    let peer = match floors::find_wasmtime(args.wasmtime.as_deref()) {
        None => {
            report.skip(
                "wasmtime serve",
                "no Wasmtime CLI found (cargo install wasmtime-cli --version 48.0.8 --locked \
                 --root ~/.cache/wasmtime-cli, or give --wasmtime)"
                    .into(),
            );
            None
        }
        Some(wasmtime) => {
            let component = args.examples.join("target/wasm/hello_http_p2.wasm");
            match WasmtimeServe::start(&wasmtime, &component, log_dir.path(), &client).await {
                Ok(serve) => {
                    report.note(format!(
                        "Peer: `{}` (`wasmtime serve`, default settings) with `hello_http_p2.wasm`.",
                        serve.version
                    ));
                    Some(serve)
                }
                Err(e) => {
                    report.skip("wasmtime serve", format!("{e:#}"));
                    None
                }
            }
        }
    };
    let mut hello_paths: Vec<(&str, Arc<Target>)> = Vec::new();
    if has("hello") {
        hello_paths.push((
            "FunLess (Core + Worker)",
            invoke("hello", hello_args.clone()),
        ));
    }
    if has("hellopy") {
        hello_paths.push((
            "FunLess, Python hello (Core + Worker)",
            invoke("hellopy", hello_args.clone()),
        ));
    }
    if let Some(target) = &in_process {
        hello_paths.push(("in-process floor (Wasmtime, no platform)", target.clone()));
    }
    hello_paths.push(("network floor (plain HTTP server)", floor_target));
    if let Some(serve) = &peer {
        hello_paths.push((
            "wasmtime serve (wasi:http)",
            Target::http(&client, serve.url.clone(), None, hello_body.clone()),
        ));
    }

    if wanted(args, "hello") {
        for concurrency in [1, 4] {
            for (label, target) in &hello_paths {
                let runs = repeat(params.repeat, || {
                    load::closed_loop(
                        target.clone(),
                        concurrency,
                        params.hello_requests,
                        params.hello_warmup,
                    )
                })
                .await;
                report.hello(label, concurrency, runs);
            }
        }
    }
    if wanted(args, "throughput") {
        for (label, target) in &hello_paths {
            let runs = repeat(params.repeat, || {
                load::for_duration(
                    target.clone(),
                    64,
                    params.throughput,
                    params.throughput_warmup,
                )
            })
            .await;
            report.throughput(label, runs);
        }
    }
    if wanted(args, "open_loop") && has("hello") {
        let runs = repeat(params.repeat, || {
            load::open_loop(
                invoke("hello", hello_args.clone()),
                params.open_rate,
                params.open,
            )
        })
        .await;
        report.workload(
            "open_loop",
            "hello, open loop",
            format!(
                "{:.0} req/s for {} s",
                params.open_rate,
                params.open.as_secs_f64()
            ),
            runs,
        );
    }
    platform.check_alive()?;

    // The memory profile: 4 clients invoking hellojs continuously, RSS sampled every second,
    // on a Core and Worker of its own started for it (the paper ran it alone; the platform
    // above has served every other workload and keeps their activation records).
    platform.check_alive()?;
    report.final_rss(
        rss_bytes(platform.core_pid())?,
        rss_bytes(platform.worker_pid())?,
    );
    drop(peer);
    drop(platform);
    if wanted(args, "memory") && has("hellojs") {
        let platform = Platform::start(
            &bin_dir,
            args.database_url.as_deref(),
            args.token.as_deref(),
        )
        .await?;
        let idle = (
            rss_bytes(platform.core_pid())?,
            rss_bytes(platform.worker_pid())?,
        );
        let code = std::fs::read(args.examples.join("js/hello.js"))?;
        platform.upload("hellojs", "hello.js", code, None).await?;
        let target = Target::http(
            &client,
            platform.invoke_url("hellojs"),
            Some(&platform.token),
            json!({ "args": {"name": "bench"} }).to_string(),
        );
        let (core, worker) = (platform.core_pid(), platform.worker_pid());
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let done = done.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut samples = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while !done.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let (Ok(c), Ok(w)) = (rss_bytes(core), rss_bytes(worker)) else {
                        break;
                    };
                    samples.push((started.elapsed().as_secs_f64(), c, w));
                }
                samples
            })
        };
        let run = load::for_duration(target, 4, params.memory, Duration::ZERO).await;
        done.store(true, Ordering::Relaxed);
        let samples = sampler.await.unwrap_or_default();
        let after = (
            rss_bytes(platform.core_pid())?,
            rss_bytes(platform.worker_pid())?,
        );
        report.memory(run, samples, idle, after);
    }

    report::write(&report, &args.out, plots)?;
    Ok(())
}

/// Runs a workload `times` times, one after the other.
async fn repeat<F, Fut>(times: usize, mut once: F) -> Vec<Run>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Run>,
{
    let mut runs = Vec::with_capacity(times);
    for _ in 0..times {
        runs.push(once().await);
    }
    runs
}
