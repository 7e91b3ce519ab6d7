//! `funless-worker`: a Worker node that joins a Core.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use funless_actors::node::{Backoff, Node, NodeConfig, stay_connected};
use funless_worker::{AllocatorChoice, Runtime, RuntimeConfig};

/// Runs functions for a FunLess Core.
#[derive(Debug, Parser)]
#[command(name = "funless-worker", version)]
struct Args {
    /// A TOML file of settings named like these flags (`listen = "..."`); flags and
    /// environment variables override it.
    #[arg(long, env = "FUNLESS_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective settings (with where each came from) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// The Core's cluster address (host:port).
    #[arg(long, env = "FUNLESS_CORE")]
    core: String,
    /// Shared cluster secret; must equal the Core's.
    #[arg(
        long,
        env = "FUNLESS_COOKIE",
        hide_env_values = true,
        required_unless_present = "cookie_file"
    )]
    cookie: Option<String>,
    /// Read the cluster secret from this file instead (its first line).
    #[arg(long, env = "FUNLESS_COOKIE_FILE", conflicts_with = "cookie")]
    cookie_file: Option<PathBuf>,
    /// Unique worker name (default: worker-<hostname>-<pid>).
    #[arg(long, env = "FUNLESS_WORKER_NAME")]
    name: Option<String>,
    /// A tag for scheduling scripts (repeat for several, or comma-separate), e.g. `gpu`.
    #[arg(long = "tag", env = "FUNLESS_WORKER_TAGS", value_delimiter = ',')]
    tags: Vec<String>,
    /// Cluster CA certificate (PEM): with --tls-cert and --tls-key, every cluster session
    /// uses mutual TLS and only peers with a certificate from this CA are accepted.
    #[arg(long, env = "FUNLESS_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM, signed by the CA).
    #[arg(long, env = "FUNLESS_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "FUNLESS_TLS_KEY", requires_all = ["tls_ca", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Address the worker's cluster node listens on.
    #[arg(long, default_value = "0.0.0.0")]
    cluster_listen: IpAddr,
    /// Port of the worker's cluster node (0: any free port).
    #[arg(long, default_value_t = 0)]
    cluster_port: u16,
    /// Interval of status reports to the Core, milliseconds.
    #[arg(long, default_value_t = 1000)]
    report_ms: u64,
    /// Largest linear memory of one invocation, MiB.
    #[arg(long, default_value_t = 256)]
    max_memory_mb: usize,
    /// Byte threshold of the in-memory code cache, MiB (least recently used code is evicted).
    #[arg(long, env = "FUNLESS_CACHE_MB", default_value_t = funless_worker::DEFAULT_CACHE_MB)]
    cache_mb: usize,
    /// Folder for precompiled modules, so a restarted worker starts warm.
    #[arg(
        long,
        env = "FUNLESS_CACHE_DIR",
        default_value = "funless-worker-cache"
    )]
    cache_dir: PathBuf,
    /// Keep compiled code in memory only (no precompiled modules on disk).
    #[arg(long)]
    no_disk_cache: bool,
    /// Instance allocator: `auto` (pooling when the machine can hold it) or `on-demand`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "on-demand"])]
    allocator: String,
    /// Instances that may run at once with the pooling allocator.
    #[arg(long, default_value_t = 1000)]
    pool_slots: u32,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100) at /metrics.
    #[arg(long, env = "FUNLESS_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Start JavaScript invocations from the engine's pre-initialised snapshot (`false`: each
    /// invocation builds QuickJS's runtime itself; only for measuring what the snapshot saves).
    #[arg(long, env = "FUNLESS_JS_SNAPSHOT", default_value_t = true, action = clap::ArgAction::Set)]
    js_snapshot: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ractor_cluster=warn,ractor=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = funless_actors::settings::load_or_exit::<Args>()?;
    let tls = funless_actors::tls::Tls::from_flags(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    let name = args.name.unwrap_or_else(default_name);

    let node = Node::start(NodeConfig {
        name: name.clone(),
        cookie: match (&args.cookie, &args.cookie_file) {
            (Some(cookie), _) => cookie.clone(),
            (None, Some(file)) => funless_actors::node::cookie_from_file(file)?,
            (None, None) => anyhow::bail!("give --cookie or --cookie-file"),
        },
        listen: args.cluster_listen,
        port: args.cluster_port,
        tls,
    })
    .await
    .context("starting the cluster node")?;
    let worker = funless_worker::start(
        RuntimeConfig {
            name: name.clone(),
            max_memory_bytes: args.max_memory_mb * 1024 * 1024,
            cache_bytes: args.cache_mb * 1024 * 1024,
            cache_dir: (!args.no_disk_cache).then_some(args.cache_dir),
            allocator: if args.allocator == "on-demand" {
                AllocatorChoice::OnDemand
            } else {
                AllocatorChoice::Auto
            },
            pool_slots: args.pool_slots,
            tags: args.tags,
            js_snapshot: args.js_snapshot,
        },
        Duration::from_millis(args.report_ms.max(50)),
    )
    .await
    .context("starting the worker")?;
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, worker.runtime.clone()).await?;
    }
    let _connector = stay_connected(node, args.core.clone(), Backoff::default());
    tracing::info!(%name, core = %args.core, "worker started");

    let mut done = worker.done;
    tokio::select! {
        _ = funless_actors::process::shutdown_signal() => {
            tracing::info!("worker stopping");
            worker.supervisor.stop(Some("worker stopping".into()));
            Ok(())
        }
        _ = &mut done => Err(anyhow::anyhow!("the worker's supervision tree gave up")),
    }
}

/// Serves `/metrics` for Prometheus.
async fn serve_metrics(addr: SocketAddr, runtime: Arc<Runtime>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let runtime = runtime.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    runtime.metrics_text(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(%bound, "metrics listening on {bound}");
    Ok(())
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("worker-{host}-{}", std::process::id())
}
