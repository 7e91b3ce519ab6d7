//! `funless-bench cores`: invocation throughput with one Core and with two Cores on the same
//! workers, one PostgreSQL database. Starts Core A and Core B on the given (empty) database,
//! one Worker joined to both, uploads `hello` through A, then runs closed-loop clients for a
//! few seconds against A alone and against A and B (half the clients each), alternating the
//! two phases, and reports each phase's requests per second and the ratio.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::platform::{COOKIE, Process, free_port, toml_string, wait_for_core};

/// Arguments of `funless-bench cores`.
#[derive(Debug, Args)]
pub(crate) struct CoresArgs {
    /// An empty PostgreSQL database both Cores share (`postgres://...`).
    #[arg(long)]
    database_url: String,
    /// Folder of the release binaries `funless-core` and `funless-worker` (default:
    /// `$CARGO_TARGET_DIR/release`, else `target/release`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The repository's `examples/` folder (functions built by `examples/build.sh`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))]
    examples: PathBuf,
    /// Concurrent closed-loop clients in each phase.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// Rounds of the two phases.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
}

/// A Core started by the bench.
struct CoreProcess {
    process: Process,
    api: String,
    cluster: String,
}

async fn start_core(
    bin_dir: &Path,
    dir: &Path,
    name: &str,
    database_url: &str,
) -> anyhow::Result<CoreProcess> {
    let (api_port, cluster_port) = (free_port()?, free_port()?);
    let data_dir = dir.join(name);
    let mut command = Command::new(bin_dir.join("funless-core"));
    command
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{api_port}")])
        .args(["--cluster-listen", "127.0.0.1"])
        .args(["--cluster-port", &cluster_port.to_string()])
        .args(["--cookie", COOKIE, "--node-name", name])
        .args(["--database-url", database_url])
        .env("RUST_LOG", "warn");
    let mut process = Process::spawn(name, &mut command, dir.join(format!("{name}.log")))?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_for_core(&reqwest::Client::new(), &mut process, &api).await?;
    Ok(CoreProcess {
        process,
        api,
        cluster: format!("127.0.0.1:{cluster_port}"),
    })
}

pub(crate) async fn run(args: CoresArgs) -> anyhow::Result<String> {
    tokio::select! {
        result = measure(&args) => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted: processes stopped"),
    }
}

async fn measure(args: &CoresArgs) -> anyhow::Result<String> {
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(crate::eval::default_bin_dir);
    let hello = std::fs::read(args.examples.join("target/wasm/hello_fl.wasm"))
        .context("reading examples/target/wasm/hello_fl.wasm (run examples/build.sh)")?;
    let dir = tempfile::Builder::new().prefix("funless-cores").tempdir()?;
    let mut a = start_core(&bin_dir, dir.path(), "core-a", &args.database_url).await?;
    let tokens = std::fs::read_to_string(dir.path().join("core-a/fl-config.toml"))
        .context("reading core-a's fl-config.toml (is the database empty?)")?;
    let token = toml_string(&tokens, "token").context("no token in fl-config.toml")?;
    let admin = toml_string(&tokens, "admin_token").context("no admin token")?;
    let mut b = start_core(&bin_dir, dir.path(), "core-b", &args.database_url).await?;
    let mut command = Command::new(bin_dir.join("funless-worker"));
    command
        .args(["--core", &format!("{},{}", a.cluster, b.cluster)])
        .args(["--cookie", COOKIE, "--name", "w1"])
        .args(["--cluster-listen", "127.0.0.1"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("RUST_LOG", "warn");
    let mut worker = Process::spawn("funless-worker", &mut command, dir.path().join("w1.log"))?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    // Both Cores list the worker.
    let deadline = Instant::now() + Duration::from_secs(30);
    for core in [&a, &b] {
        loop {
            worker.check_alive()?;
            let listed = client
                .get(format!("{}/v1/workers", core.api))
                .bearer_auth(&admin)
                .send()
                .await?
                .text()
                .await?;
            if listed.contains("\"w1\"") {
                break;
            }
            if Instant::now() > deadline {
                bail!("the worker did not join both Cores in 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let form = reqwest::multipart::Form::new().text("name", "hello").part(
        "code",
        reqwest::multipart::Part::bytes(hello).file_name("hello_fl.wasm"),
    );
    let response = client
        .post(format!("{}/v1/fn/_", a.api))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("upload: {}", response.text().await.unwrap_or_default());
    }

    let one = [format!("{}/v1/fn/_/hello", a.api)];
    let two = [one[0].clone(), format!("{}/v1/fn/_/hello", b.api)];
    // Warm both paths.
    phase(&two, &token, args.clients, Duration::from_secs(1)).await?;
    let mut rates: [Vec<f64>; 2] = Default::default();
    for _ in 0..args.rounds {
        rates[0].push(phase(&one, &token, args.clients, Duration::from_secs(args.secs)).await?);
        rates[1].push(phase(&two, &token, args.clients, Duration::from_secs(args.secs)).await?);
    }
    for process in [&mut a.process, &mut b.process, &mut worker] {
        process.check_alive()?;
    }
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len().max(1) as f64;
    let mut table = String::new();
    writeln!(
        table,
        "{} clients, closed loop, {} rounds of {} s per phase, alternating; `hello_fl`, one \
         worker joined to both Cores, one PostgreSQL database.\n",
        args.clients, args.rounds, args.secs
    )?;
    writeln!(table, "| Cores | req/s (mean) | req/s per round |")?;
    writeln!(table, "|---|---|---|")?;
    for (label, r) in [("one (A)", &rates[0]), ("two (A and B)", &rates[1])] {
        let rounds: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        writeln!(
            table,
            "| {label} | {:.0} | {} |",
            mean(r),
            rounds.join(", ")
        )?;
    }
    writeln!(
        table,
        "\ntwo / one: **{:.2}**",
        mean(&rates[1]) / mean(&rates[0]).max(f64::MIN_POSITIVE)
    )?;
    Ok(table)
}

/// `clients` closed-loop clients for `length`, client i on `urls[i % urls.len()]`; answers
/// the requests per second. Any failed request fails the phase.
async fn phase(
    urls: &[String],
    token: &str,
    clients: usize,
    length: Duration,
) -> anyhow::Result<f64> {
    let body = r#"{"args":{"name":"bench"}}"#;
    let until = Instant::now() + length;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let url = urls[i % urls.len()].clone();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?;
            let mut done = 0u64;
            while Instant::now() < until {
                crate::invoke(&client, &url, &token, body).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
