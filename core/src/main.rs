//! `funless-core`: the Core, optionally with a worker embedded in the same process.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use clap::Parser;
use funless_core::{CoreConfig, resolve_cookie};

// Static (musl) builds: see the comment on mimalloc in Cargo.toml.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The FunLess Core: REST API, function store, scheduler.
#[derive(Debug, Parser)]
#[command(name = "funless-core", version)]
struct Args {
    /// A TOML file of settings named like these flags (`listen = "..."`); flags and
    /// environment variables override it.
    #[arg(long, env = "FUNLESS_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective settings (with where each came from) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Ask the Core that these settings describe for `GET /health` on loopback and exit 0 if
    /// it answers 200, else 1: the health check of an image with no shell (deploy/oci/).
    #[arg(long)]
    health_check: bool,
    /// Directory for the SQLite database, the first tokens and the generated cookie.
    #[arg(long, env = "FUNLESS_DATA_DIR", default_value = "funless-data")]
    data_dir: PathBuf,
    /// Database URL (`postgres://...` or `sqlite://...`); default: SQLite in the data directory.
    #[arg(long, env = "FUNLESS_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// How a SQLite store commits: `normal` (written to its log, flushed at checkpoints: a
    /// crashed or killed process loses nothing, a power cut may lose the last commits) or
    /// `full` (every commit flushed to the disk first: nothing lost to a power cut, a flush per
    /// write). PostgreSQL keeps its own settings.
    #[arg(long, env = "FUNLESS_SQLITE_SYNC", default_value = "normal", value_parser = ["normal", "full"])]
    sqlite_sync: String,
    /// Address of the HTTP API.
    #[arg(long, env = "FUNLESS_LISTEN", default_value = "0.0.0.0:4000")]
    listen: SocketAddr,
    /// Address of the cluster node that workers join.
    #[arg(long, env = "FUNLESS_CLUSTER_LISTEN", default_value = "0.0.0.0")]
    cluster_listen: IpAddr,
    /// Port of the cluster node.
    #[arg(long, env = "FUNLESS_CLUSTER_PORT", default_value_t = 4001)]
    cluster_port: u16,
    /// Name of the cluster node. Cores that share workers (several Cores over one PostgreSQL)
    /// need one each, such as core-a and core-b.
    #[arg(long, env = "FUNLESS_NODE_NAME", default_value = "core", value_parser = node_name)]
    node_name: String,
    /// Cluster secret shared with the workers (default: generated once into the data directory).
    #[arg(long, env = "FUNLESS_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// Read the cluster secret from this file instead (its first line).
    #[arg(long, env = "FUNLESS_COOKIE_FILE", conflicts_with = "cookie")]
    cookie_file: Option<PathBuf>,
    /// A worker silent for this long (no status report) is declared lost: it gets no new
    /// work and its in-flight invocations are retried elsewhere or answered 503. Workers report
    /// every second by default.
    #[arg(long, env = "FUNLESS_HEARTBEAT_TIMEOUT_MS", default_value_t = 3000)]
    heartbeat_timeout_ms: u64,
    /// Largest time limit a function may declare (`timeout_ms` metadata), milliseconds.
    #[arg(long, env = "FUNLESS_MAX_TIMEOUT_MS", default_value_t = funless_core::platform::DEFAULT_MAX_TIMEOUT_MS)]
    max_timeout_ms: u64,
    /// How many versions of each function are kept, the current one included (at least 1):
    /// an update or rollback deletes older ones, with their code.
    #[arg(long, env = "FUNLESS_KEEP_VERSIONS", default_value_t = funless_core::platform::DEFAULT_KEEP_VERSIONS)]
    keep_versions: u32,
    /// File holding the key that seals subjects' secrets in the store: 64 hexadecimal digits
    /// (`openssl rand -hex 32`). Without a key, secrets cannot be written, and the Core refuses
    /// to start while secrets are stored.
    #[arg(long, env = "FUNLESS_SECRETS_KEY_FILE")]
    secrets_key_file: Option<PathBuf>,
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
    /// How long activation records (result, error, logs of each invocation) are kept, seconds.
    #[arg(long, env = "FUNLESS_ACTIVATION_TTL_SECS", default_value_t = 3600)]
    activation_ttl_secs: u64,
    /// Most activation records kept (the oldest go first).
    #[arg(long, env = "FUNLESS_ACTIVATION_MAX", default_value_t = 10_000)]
    activation_max: usize,
    /// Most memory activation records may take, MiB.
    #[arg(long, env = "FUNLESS_ACTIVATION_MAX_MB", default_value_t = 64)]
    activation_max_mb: usize,
    /// Also run a worker inside this process: a complete single-node platform.
    #[arg(long)]
    embedded_worker: bool,
    /// Announce the cluster address on the LAN by UDP multicast every second, so workers
    /// started with --gossip find this Core with no address given. Announcements are
    /// encrypted with a key derived from the cookie.
    #[arg(long, env = "FUNLESS_GOSSIP")]
    gossip: bool,
    /// Multicast group and port of gossip.
    #[arg(long, env = "FUNLESS_GOSSIP_ADDR", default_value = funless_actors::discovery::DEFAULT_GOSSIP_ADDR, value_parser = funless_actors::discovery::parse_group)]
    gossip_addr: SocketAddrV4,
    /// The interface to announce on: its IPv4 address or its name (`eth0`; Linux); default:
    /// the system's choice (the route for 224.0.0.0/4). With --cluster-listen 0.0.0.0 the
    /// Core announces this interface's address.
    #[arg(long, env = "FUNLESS_GOSSIP_INTERFACE", value_parser = funless_actors::discovery::parse_interface)]
    gossip_interface: Option<funless_actors::discovery::Interface>,
    /// Obey fault-injection requests (`POST /v1/admin/crash`, admin token): kill a named
    /// actor of the Core's tree, or of the embedded worker's. For tests and drills; off in
    /// production.
    #[arg(long, env = "FUNLESS_FAULT_INJECTION")]
    fault_injection: bool,
    #[command(flatten)]
    restart: funless_actors::settings::RestartFlags,
    #[command(flatten)]
    threads: funless_actors::settings::ThreadFlags,
    /// Egress of the embedded worker's functions (as funless-worker's flags).
    #[command(flatten)]
    egress: funless_actors::settings::EgressFlags,
    #[command(flatten)]
    http: funless_core::http::HttpArgs,
    #[command(flatten)]
    core_egress: funless_core::egress::EgressArgs,
    #[command(flatten)]
    quotas: funless_core::quotas::QuotaArgs,
}

/// A cluster node name: 1 to 64 letters, digits, `-` or `_`.
fn node_name(text: &str) -> Result<String, String> {
    let fits = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fits {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?}: a node name is 1 to 64 letters, digits, '-' or '_'"
        ))
    }
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // The embedded worker compiles in short-lived children of this binary, as funless-worker.
    #[cfg(feature = "embedded-worker")]
    {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.first().map(String::as_str) == Some(funless_worker::compiler::CHILD_ARG) {
            return Ok(funless_worker::compiler::child_main(&args[1..]));
        }
    }
    let args = funless_actors::settings::load_or_exit::<Args>()?;
    if args.health_check {
        return Ok(funless_actors::probe::exit_code(args.listen, "/health"));
    }
    // The embedded worker gets a runtime of its own, as a worker process would: the Core's
    // threads take HTTP and placement, the worker's run guests, and neither waits in the
    // other's run queue (docs/BENCHMARKS.md, "Runtime threads").
    let worker_runtime = match args.embedded_worker {
        true => Some(
            args.threads
                .node_runtime("funless-worker")
                .map_err(|e| anyhow::anyhow!("starting the embedded worker's runtime: {e}"))?,
        ),
        false => None,
    };
    let worker_handle = worker_runtime.as_ref().map(|r| r.handle().clone());
    args.threads
        .node_runtime("funless-core")
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
        .block_on(core_main(args, worker_handle))?;
    drop(worker_runtime);
    Ok(std::process::ExitCode::SUCCESS)
}

async fn core_main(
    args: Args,
    worker_runtime: Option<tokio::runtime::Handle>,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ractor_cluster=warn,ractor=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let tls = funless_actors::tls::Tls::from_flags(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    let intensity = args.restart.intensity();
    let given = match &args.cookie_file {
        Some(file) => Some(funless_actors::node::cookie_from_file(file)?),
        None => args.cookie,
    };
    let cookie = resolve_cookie(given, &args.data_dir)?;
    // The embedded worker's tree is a child of the Core's root: one tree, one process.
    let extra_children = match worker_runtime {
        Some(runtime) => vec![
            embedded_worker(
                args.fault_injection,
                intensity,
                args.egress.clone(),
                args.threads.compute_threads,
            )?
            .on_runtime(runtime),
        ],
        None => Vec::new(),
    };
    let core = funless_core::start(CoreConfig {
        data_dir: args.data_dir,
        database_url: args.database_url,
        sqlite_sync: if args.sqlite_sync == "full" {
            funless_core::store::SqliteSync::Full
        } else {
            funless_core::store::SqliteSync::Normal
        },
        listen: args.listen,
        cluster_listen: args.cluster_listen,
        cluster_port: args.cluster_port,
        node_name: args.node_name,
        cookie,
        heartbeat_timeout: std::time::Duration::from_millis(args.heartbeat_timeout_ms.max(100)),
        max_timeout_ms: args.max_timeout_ms.max(1),
        keep_versions: args.keep_versions.max(1),
        secrets_key: funless_core::secrets::SecretsKey::load(
            args.secrets_key_file.as_deref(),
            std::env::var("FUNLESS_SECRETS_KEY").ok().as_deref(),
        )?,
        tls,
        activations: funless_core::activations::ActivationLimits {
            ttl: std::time::Duration::from_secs(args.activation_ttl_secs.max(1)),
            max_records: args.activation_max.max(1),
            max_bytes: args.activation_max_mb.max(1) * 1024 * 1024,
        },
        http: args.http.limits()?,
        egress: args.core_egress.policy(),
        quotas: args.quotas.limits(),
        gossip: args.gossip.then_some(funless_core::GossipSettings {
            group: args.gossip_addr,
            interface: args.gossip_interface.clone(),
        }),
        fault_injection: args.fault_injection,
        intensity,
        extra_children,
    })
    .await?;

    let mut supervisor_done = core.supervisor_done;
    tokio::select! {
        _ = funless_actors::process::shutdown_signal() => {
            tracing::info!("core stopping");
            core.supervisor.stop(Some("core stopping".into()));
            Ok(())
        }
        _ = &mut supervisor_done => Err(anyhow::anyhow!("the Core's supervision tree gave up (restart intensity exceeded)")),
    }
}

#[cfg(feature = "embedded-worker")]
fn embedded_worker(
    fault_injection: bool,
    intensity: funless_actors::supervisor::Intensity,
    egress: funless_actors::settings::EgressFlags,
    compute_threads: Option<usize>,
) -> anyhow::Result<funless_actors::supervisor::ChildSpec> {
    let runtime = std::sync::Arc::new(funless_worker::Runtime::new(
        funless_worker::RuntimeConfig {
            name: "embedded".into(),
            compiler: funless_worker::Compiler::child_of_this_program(),
            allow_hosts: egress.allow_hosts,
            egress_roots: egress.egress_ca,
            compute_threads: compute_threads
                .unwrap_or_else(funless_worker::default_compute_threads),
            ..funless_worker::RuntimeConfig::default()
        },
    )?);
    Ok(funless_worker::tree(
        runtime,
        funless_worker::WorkerOptions {
            fault_injection,
            intensity,
            ..funless_worker::WorkerOptions::reporting_every(std::time::Duration::from_secs(1))
        },
    ))
}

#[cfg(not(feature = "embedded-worker"))]
fn embedded_worker(
    _: bool,
    _: funless_actors::supervisor::Intensity,
    _: funless_actors::settings::EgressFlags,
    _: Option<usize>,
) -> anyhow::Result<funless_actors::supervisor::ChildSpec> {
    anyhow::bail!("this build has no embedded worker (feature `embedded-worker` is off)")
}
