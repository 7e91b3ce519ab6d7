//! `funless-worker`: a Worker node that joins a Core.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use funless_actors::discovery::{self, GossipConfig};
use funless_actors::node::{Backoff, Node, NodeConfig, Target, follow};
use funless_actors::supervisor::{ChildSpec, Strategy, SupervisorArgs, TaskGuard, service};
use funless_worker::{AllocatorChoice, Compiler, Runtime, RuntimeConfig, WorkerOptions, compiler};
use std::sync::Mutex;
use tokio::sync::watch;

// Static (musl) builds: see the comment on mimalloc in Cargo.toml.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Ask the worker that these settings describe for `GET /metrics` (at --metrics-listen)
    /// on loopback and exit 0 if it answers 200, else 1: the health check of an image with no
    /// shell (deploy/oci/).
    #[arg(long)]
    health_check: bool,
    /// The Core's cluster address (host:port), or several Cores' comma-separated (Cores
    /// sharing one PostgreSQL, each with its own --node-name): the worker joins every one. One
    /// of --core, --core-dns and --gossip says how to find the Core; with none, give a fixed
    /// --cluster-port and let the Core connect (`POST /v1/admin/nodes`).
    #[arg(long, env = "FUNLESS_CORE", group = "find_core", value_parser = core_addresses)]
    core: Option<String>,
    /// Find the Core through DNS (a Kubernetes headless service): NAME:PORT, resolved every
    /// 5 s; the worker joins the first address that answers and moves when it goes away.
    #[arg(long, env = "FUNLESS_CORE_DNS", group = "find_core", value_parser = dns_target)]
    core_dns: Option<String>,
    /// Find the Core by listening for its multicast announcements on the LAN (encrypted with a
    /// key derived from the cookie; the Core needs --gossip too).
    #[arg(long, env = "FUNLESS_GOSSIP", group = "find_core")]
    gossip: bool,
    /// Multicast group and port of gossip.
    #[arg(long, env = "FUNLESS_GOSSIP_ADDR", default_value = discovery::DEFAULT_GOSSIP_ADDR, value_parser = discovery::parse_group)]
    gossip_addr: SocketAddrV4,
    /// The interface to listen for gossip on: its IPv4 address or its name (`eth0`; Linux);
    /// default: the system's choice (the route for 224.0.0.0/4).
    #[arg(long, env = "FUNLESS_GOSSIP_INTERFACE", value_parser = discovery::parse_interface)]
    gossip_interface: Option<discovery::Interface>,
    /// Shared cluster secret; must equal the Core's.
    #[arg(
        long,
        env = "FUNLESS_COOKIE",
        hide_env_values = true,
        required_unless_present_any = ["cookie_file", "health_check"]
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
    #[arg(long, env = "FUNLESS_CLUSTER_LISTEN", default_value = "0.0.0.0")]
    cluster_listen: IpAddr,
    /// Port of the worker's cluster node (0: any free port). A fixed port lets the Core
    /// connect to this worker (`POST /v1/admin/nodes`).
    #[arg(long, env = "FUNLESS_CLUSTER_PORT", default_value_t = 0)]
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
    /// Compile functions in the worker's own process rather than in a short-lived child
    /// process (the compiler's memory then stays with the worker: ~35 MB after the JavaScript
    /// engine).
    #[arg(long, env = "FUNLESS_COMPILE_IN_WORKER")]
    compile_in_worker: bool,
    /// Obey fault-injection requests from the Core (`POST /v1/admin/crash`): kill a named
    /// actor of this worker's tree. For tests and drills; off in production.
    #[arg(long, env = "FUNLESS_FAULT_INJECTION")]
    fault_injection: bool,
    #[command(flatten)]
    restart: funless_actors::settings::RestartFlags,
    #[command(flatten)]
    threads: funless_actors::settings::ThreadFlags,
    #[command(flatten)]
    egress: funless_actors::settings::EgressFlags,
    #[command(flatten)]
    compile: compiler::CompileArgs,
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // The worker compiles in short-lived children of this binary (compiler.rs).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(compiler::CHILD_ARG) {
        return Ok(compiler::child_main(&args[1..]));
    }
    let args = funless_actors::settings::load_or_exit::<Args>()?;
    if args.health_check {
        let Some(listen) = args.metrics_listen else {
            anyhow::bail!(
                "--health-check asks the metrics endpoint, and this worker has none: give --metrics-listen (FUNLESS_METRICS_LISTEN)"
            );
        };
        return Ok(funless_actors::probe::exit_code(listen, "/metrics"));
    }
    args.threads
        .node_runtime("funless-worker")
        .context("starting the async runtime")?
        .block_on(worker_main(args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn worker_main(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,ractor_cluster=warn,ractor=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if args.core.is_none() && args.core_dns.is_none() && !args.gossip && args.cluster_port == 0 {
        anyhow::bail!(
            "no way to find the Core: give --core HOST:PORT (its cluster address), --core-dns NAME:PORT (a Kubernetes headless service), or --gossip (multicast on the LAN, the Core needs --gossip too); or give a fixed --cluster-port and have the Core connect with POST /v1/admin/nodes"
        );
    }
    let tls = funless_actors::tls::Tls::from_flags(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    let name = args.name.clone().unwrap_or_else(default_name);
    let cookie = match (&args.cookie, &args.cookie_file) {
        (Some(cookie), _) => cookie.clone(),
        (None, Some(file)) => funless_actors::node::cookie_from_file(file)?,
        (None, None) => anyhow::bail!("give --cookie or --cookie-file"),
    };

    let node = Node::new(NodeConfig {
        name: name.clone(),
        cookie: cookie.clone(),
        listen: args.cluster_listen,
        port: args.cluster_port,
        tls,
    })
    .context("configuring the cluster node")?;
    let FoundCores {
        discovery,
        links: targets,
        fixed: _fixed,
        how,
    } = find_core(&args, &name, &cookie);
    // The node, discovery and the Core links, rest-for-one: a link follows what discovery
    // publishes, over the node's sessions. Several Cores: one link each.
    let mut cluster = vec![node.child_spec()];
    cluster.extend(discovery);
    let several = targets.len() > 1;
    for (i, targets) in targets.into_iter().enumerate() {
        let link = if several {
            format!("core-link-{i}")
        } else {
            "core-link".to_string()
        };
        cluster.push(core_link(link, node.clone(), targets));
    }
    let before = vec![ChildSpec::supervisor(
        "cluster",
        "cluster membership: node, discovery, link to the Core",
        move || {
            let children = cluster.clone();
            Box::pin(async move {
                Ok(SupervisorArgs {
                    name: "cluster".into(),
                    role: "cluster membership: node, discovery, link to the Core".into(),
                    strategy: Strategy::RestForOne,
                    children,
                    max_restarts: 10,
                    within: Duration::from_secs(30),
                })
            })
        },
    )];
    // The default cap follows the memory this process may use (its cgroup's limit, if lower
    // than the machine's): logged, so an operator sees what a small board or container got.
    let compile = args.compile.limits();
    tracing::info!(
        concurrency = compile.concurrency,
        timeout_ms = compile.timeout.as_millis() as u64,
        memory_mb = compile.memory_bytes >> 20,
        "compiler children: at most {} at once",
        compile.concurrency
    );
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
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
            compiler: if args.compile_in_worker {
                Compiler::InProcess
            } else {
                Compiler::child_of_this_program()
            },
            allow_hosts: args.egress.allow_hosts,
            egress_roots: args.egress.egress_ca,
            compile,
            compute_threads: args
                .threads
                .compute_threads
                .unwrap_or_else(funless_worker::default_compute_threads),
        })
        .context("starting the worker's runtime")?,
    );
    let mut after = Vec::new();
    if let Some(addr) = args.metrics_listen {
        after.push(metrics_endpoint(addr, runtime.clone())?);
    }
    let worker = funless_worker::start_with(
        runtime,
        WorkerOptions {
            report_every: Duration::from_millis(args.report_ms.max(50)),
            fault_injection: args.fault_injection,
            intensity: args.restart.intensity(),
            before,
            after,
        },
    )
    .await
    .context("starting the worker")?;
    tracing::info!(%name, core = %how, "worker started");

    let mut done = worker.done;
    tokio::select! {
        _ = funless_actors::process::shutdown_signal() => {
            tracing::info!("worker stopping");
            worker.supervisor.stop(Some("worker stopping".into()));
            Ok(())
        }
        _ = &mut done => Err(anyhow::anyhow!("the worker's supervision tree gave up (restart intensity exceeded)")),
    }
}

/// Where the Core's current addresses are published for the Core link: set by the discovery
/// child at each of its starts (it starts first), read by the link at each of its starts.
type TargetsSlot = Arc<Mutex<Option<watch::Receiver<Vec<Target>>>>>;

/// The supervised child that keeps the node joined to a Core (`core-link`, or
/// `core-link-<i>` for the i-th of several Cores).
fn core_link(name: String, node: Node, targets: TargetsSlot) -> ChildSpec {
    service(
        name,
        "keeps the node joined to the Core: dials, redials with backoff, follows discovery",
        move || {
            let node = node.clone();
            let targets = targets.lock().unwrap_or_else(|p| p.into_inner()).clone();
            async move {
                let targets = targets.ok_or("no discovery is running")?;
                follow(node, targets, Backoff::default())
                    .await
                    .map_err(|e| e.to_string())
            }
        },
    )
}

/// How the worker finds its Cores.
struct FoundCores {
    /// The discovery child, if one runs.
    discovery: Option<ChildSpec>,
    /// One slot per Core, each read by that Core's link.
    links: Vec<TargetsSlot>,
    /// The senders of fixed lists, kept as long as the process runs.
    fixed: Vec<watch::Sender<Vec<Target>>>,
    /// How, for the log.
    how: String,
}

/// Where the Cores' addresses come from: `--core` (one or several), `--core-dns`,
/// `--gossip`, or nowhere (the Core connects to this worker). Returns the discovery child, if
/// one runs, and the slots the Core links read their targets from, one per Core (and, for
/// fixed lists, their senders, to keep).
fn find_core(args: &Args, name: &str, cookie: &str) -> FoundCores {
    if let Some(cores) = &args.core {
        // Fixed addresses: the senders live as long as the process, the lists never change.
        let (slots, senders) = cores
            .split(',')
            .map(str::trim)
            .map(|core| {
                let (sender, targets) = watch::channel(vec![Target::given(core)]);
                let slot: TargetsSlot = Arc::new(Mutex::new(Some(targets)));
                (slot, sender)
            })
            .unzip();
        return FoundCores {
            discovery: None,
            links: slots,
            fixed: senders,
            how: cores.clone(),
        };
    }
    let slot: TargetsSlot = Arc::default();
    if let Some(dns) = &args.core_dns {
        let dns = dns.clone();
        let published = slot.clone();
        let child = service(
            "discovery",
            "resolves the Core's DNS name every 5 s",
            move || {
                let found = discovery::parse_dns_target(&dns).map(|(host, port)| {
                    discovery::resolve_every(host, port, discovery::DNS_INTERVAL)
                });
                let task = match found {
                    Ok((task, targets)) => {
                        *published.lock().unwrap_or_else(|p| p.into_inner()) = Some(targets);
                        Ok(TaskGuard(task))
                    }
                    Err(e) => Err(e),
                };
                async move {
                    let mut task = task?;
                    (&mut task.0).await.map_err(|e| e.to_string())?;
                    Err("the DNS resolver stopped".to_string())
                }
            },
        );
        return FoundCores {
            discovery: Some(child),
            links: vec![slot],
            fixed: Vec::new(),
            how: format!("DNS {}", args.core_dns.clone().unwrap_or_default()),
        };
    }
    if args.gossip {
        let config = GossipConfig {
            group: args.gossip_addr,
            interface: args.gossip_interface.clone(),
            cookie: cookie.to_string(),
            node: name.to_string(),
        };
        let published = slot.clone();
        let child = service(
            "discovery",
            "listens for the Core's encrypted gossip announcements",
            move || {
                let task = match discovery::listen(config.clone()) {
                    Ok((gossip, targets)) => {
                        *published.lock().unwrap_or_else(|p| p.into_inner()) = Some(targets);
                        Ok(TaskGuard(gossip.task))
                    }
                    Err(e) => Err(e.to_string()),
                };
                async move {
                    let mut task = task?;
                    (&mut task.0).await.map_err(|e| e.to_string())?;
                    Err("the gossip listener stopped".to_string())
                }
            },
        );
        return FoundCores {
            discovery: Some(child),
            links: vec![slot],
            fixed: Vec::new(),
            how: format!("gossip on {}", args.gossip_addr),
        };
    }
    tracing::info!(
        port = args.cluster_port,
        "no Core address given: waiting for the Core to connect to this worker (POST /v1/admin/nodes)"
    );
    let (sender, targets) = watch::channel(Vec::new());
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(targets);
    FoundCores {
        discovery: None,
        links: vec![slot],
        fixed: vec![sender],
        how: format!("none (waiting on cluster port {})", args.cluster_port),
    }
}

/// Checks `--core`: one or more comma-separated addresses, none empty; keeps it as given.
fn core_addresses(text: &str) -> Result<String, String> {
    if text.split(',').any(|address| address.trim().is_empty()) {
        return Err(format!(
            "{text:?}: give HOST:PORT, or several separated by commas, none empty"
        ));
    }
    Ok(text.to_string())
}

/// Checks `--core-dns` (NAME:PORT) and keeps it as given.
fn dns_target(text: &str) -> Result<String, String> {
    discovery::parse_dns_target(text).map(|_| text.to_string())
}

/// The supervised `/metrics` endpoint (`metrics-http`). The address is bound once, here, so a
/// taken port fails the start; every (re)start serves the same socket.
fn metrics_endpoint(addr: SocketAddr, runtime: Arc<Runtime>) -> anyhow::Result<ChildSpec> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics endpoint to {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "metrics listening on {bound}");
    let listener = Arc::new(listener);
    Ok(service(
        "metrics-http",
        "serves the worker's Prometheus metrics",
        move || {
            let listener = listener.try_clone();
            let runtime = runtime.clone();
            async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                let runtime = runtime.clone();
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
                axum::serve(listener, app)
                    .await
                    .map_err(|e| e.to_string())?;
                Err("the metrics endpoint stopped".to_string())
            }
        },
    ))
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("worker-{host}-{}", std::process::id())
}
