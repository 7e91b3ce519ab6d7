//! Starting a Core: data directory, store, first tokens, and its supervision tree (cluster
//! node, gossip, registry, connectors, sinks, API, and in the single-process mode a worker).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use funless_actors::node::{Node, NodeConfig};
use funless_actors::supervisor::{
    ChildSpec, Intensity, Strategy, Supervisor, SupervisorArgs, SupervisorMessage, TaskGuard,
    service, start_actor,
};
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::registry::{self, Registry, RegistryArgs};
use crate::store::Store;
use crate::tokens;
use crate::workers::Workers;

/// Name of the cookie file generated in the data directory when none is given.
pub const COOKIE_FILE: &str = "cookie";

/// How to start a Core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Where the SQLite database, the first tokens and the cookie live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the data directory.
    pub database_url: Option<String>,
    /// How a SQLite store commits.
    pub sqlite_sync: crate::store::SqliteSync,
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Cluster node address.
    pub cluster_listen: IpAddr,
    /// Cluster node port.
    pub cluster_port: u16,
    /// The cluster node's name: each Core a worker joins needs its own (ractor_cluster keeps
    /// one session per peer name).
    pub node_name: String,
    /// Cluster cookie (resolved with [`resolve_cookie`]).
    pub cookie: String,
    /// Silence after which a worker is declared lost.
    pub heartbeat_timeout: Duration,
    /// Largest time limit a function may ask for, milliseconds.
    pub max_timeout_ms: u64,
    /// Versions kept per function, the current one included.
    pub keep_versions: u32,
    /// The key that seals subjects' secrets in the store (none: secrets cannot be written,
    /// and the Core refuses to start with secrets stored).
    pub secrets_key: Option<crate::secrets::SecretsKey>,
    /// Mutual TLS for cluster sessions.
    pub tls: Option<funless_actors::tls::Tls>,
    /// How many activation records are kept, and for how long.
    pub activations: crate::activations::ActivationLimits,
    /// Bounds of the HTTP front.
    pub http: funless_api::HttpLimits,
    /// Where sinks and event connectors may connect.
    pub egress: crate::egress::EgressPolicy,
    /// Per-subject quotas.
    pub quotas: crate::quotas::QuotaLimits,
    /// Announce the cluster address by multicast gossip (`None`: off).
    pub gossip: Option<GossipSettings>,
    /// Obey `POST /v1/admin/crash` for the Core's own actors (tests and drills only).
    pub fault_injection: bool,
    /// The root supervisor's restart intensity; past it the Core gives up.
    pub intensity: Intensity,
    /// More children of the root supervisor, started last (the embedded worker's tree).
    pub extra_children: Vec<ChildSpec>,
}

/// Where the Core announces its cluster address.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    /// Multicast group and port.
    pub group: std::net::SocketAddrV4,
    /// Interface to send on (`None`: the system's choice).
    pub interface: Option<funless_actors::discovery::Interface>,
}

/// A running Core.
#[derive(Debug)]
pub struct CoreHandle {
    /// Address the API listens on.
    pub api_addr: SocketAddr,
    /// The services behind the API.
    pub platform: Platform,
    /// The worker table.
    pub workers: Workers,
    /// The cluster node.
    pub node: Node,
    /// The root supervisor.
    pub supervisor: ActorRef<SupervisorMessage>,
    /// Ends when the root supervisor stops: on request, or when it gives up (its restart
    /// intensity exceeded), which the binary turns into a non-zero exit.
    pub supervisor_done: JoinHandle<()>,
    /// This Core's claim on its SQLite store, held as long as it runs (none on PostgreSQL).
    _store_lock: Option<std::fs::File>,
}

/// The cookie to use: the given one, else the one stored in the data directory, else a new
/// random one stored there (mode 0600). Never a built-in default.
pub fn resolve_cookie(given: Option<String>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(cookie) = given.filter(|c| !c.is_empty()) {
        return Ok(cookie);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let path = data_dir.join(COOKIE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(cookie) if !cookie.trim().is_empty() => return Ok(cookie.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let cookie = tokens::generate();
    tokens::write_private(&path, cookie.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(file = %path.display(), "generated a cluster cookie; start workers with --cookie \"$(cat {})\"", path.display());
    Ok(cookie)
}

/// Starts a Core.
pub async fn start(config: CoreConfig) -> anyhow::Result<CoreHandle> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let url = config
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", config.data_dir.join("funless.db").display()));
    let store = Store::open_with(&url, config.sqlite_sync)
        .await
        .with_context(|| format!("opening the store at {}", redact(&url)))?;
    let store_lock = lock_sqlite_store(&url)?;
    tracing::info!(backend = store.backend(), "store ready");

    let listener =
        bind_api(config.listen).with_context(|| format!("binding the API to {}", config.listen))?;
    let api_addr = listener.local_addr()?;
    tokens::bootstrap(&store, &config.data_dir, &format!("http://{api_addr}")).await?;

    let metrics = Metrics::new();
    let workers = Workers::default();
    let node = Node::new(NodeConfig {
        name: config.node_name.clone(),
        cookie: config.cookie.clone(),
        listen: config.cluster_listen,
        port: config.cluster_port,
        tls: config.tls.clone(),
    })?;
    let platform = Platform::new(
        store,
        workers.clone(),
        metrics.clone(),
        config.max_timeout_ms,
        config.activations,
        config.quotas,
        config.secrets_key.clone(),
    );
    platform
        .check_secrets()
        .await
        .context("the stored secrets cannot be opened")?;
    platform.set_node(node.clone());
    platform.set_keep_versions(config.keep_versions);
    platform.set_egress(config.egress.clone());

    // The root is one-for-one, as FunLess's Core: its children do not depend on each other
    // (the registry follows process groups, not the node's sessions).
    let mut children = vec![node.child_spec()];
    if let Some(settings) = config.gossip {
        children.push(gossip_child(
            funless_actors::discovery::GossipConfig {
                group: settings.group,
                interface: settings.interface,
                cookie: config.cookie.clone(),
                node: node.name().to_string(),
            },
            config.cluster_listen,
            config.cluster_port,
            metrics.clone(),
        ));
    }
    let registry_args = RegistryArgs {
        workers: workers.clone(),
        metrics: metrics.clone(),
        heartbeat_timeout: config.heartbeat_timeout,
    };
    children.push(ChildSpec::worker(
        "registry",
        "worker registry and metrics collector: joins, leaves, statuses, heartbeats",
        start_actor(move || (Registry, registry_args.clone())),
    ));
    children.push(registry::heartbeat_child(
        workers.clone(),
        metrics.clone(),
        config.heartbeat_timeout,
    ));
    children.push(registry::node_watch_child(
        node.clone(),
        workers.clone(),
        metrics.clone(),
    ));
    children.extend(platform.supervised());
    children.push(api_child(listener, platform.clone(), config.http));
    children.extend(config.extra_children);
    let (supervisor, supervisor_done) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            name: "core".into(),
            role: "Core node".into(),
            strategy: Strategy::OneForOne,
            children,
            max_restarts: config.intensity.max_restarts,
            within: config.intensity.within,
        },
    )
    .await
    .context("starting the supervision tree")?;
    platform.set_tree(supervisor.clone(), config.fault_injection);
    // Functions' event connectors and sinks come back by themselves after a restart.
    if let Err(e) = platform.restore_connectors().await {
        tracing::error!(error = %e, "cannot restore event connectors");
    }
    tracing::info!(%api_addr, cluster = %SocketAddr::new(config.cluster_listen, config.cluster_port), "api listening on {api_addr}");

    Ok(CoreHandle {
        api_addr,
        platform,
        workers,
        node,
        supervisor,
        supervisor_done,
        _store_lock: store_lock,
    })
}

/// Claims a SQLite store (`url`) for this Core: an exclusive `flock` on its file, which the
/// kernel drops when the process ends however it ends. SQLite keeps one Core's state (its
/// in-memory metadata would go stale under a second one, and connectors would run twice), so
/// a second Core on the same file is refused; several Cores share PostgreSQL. SQLite's own
/// locks are `fcntl` locks, which a `flock` does not touch. An in-memory store needs none.
fn lock_sqlite_store(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("reading the database URL {}", redact(url)))?;
    let path = options.get_filename();
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(None); // in memory: nothing on disk to share
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another Core already runs on the SQLite store {}: SQLite holds one Core's state; \
             run several Cores over PostgreSQL (--database-url postgres://...)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking the SQLite store {}", path.display()))
        }
    }
}

/// The HTTP API as a supervised child (`api`): the acceptor. The socket is bound once,
/// before: every (re)start accepts on the same one, so connections that arrive while the
/// acceptor restarts wait in the kernel's queue instead of being refused. Each connection is
/// served by a task of its own, as ranch's connection processes live apart from its acceptor:
/// a restart of the acceptor leaves open connections and their requests alone.
fn api_child(
    listener: std::net::TcpListener,
    platform: Platform,
    limits: funless_api::HttpLimits,
) -> ChildSpec {
    let listener = Arc::new(listener);
    // One router and one connection cap for every start: bodies in flight and open
    // connections stay counted across a restart of the acceptor.
    let app = funless_api::router_with(Arc::new(platform), limits.clone())
        .merge(crate::console::router());
    let server = funless_api::Server::new(limits);
    service("api", "HTTP API: accepts connections", move || {
        let listener = listener.try_clone();
        let (app, server) = (app.clone(), server.clone());
        async move {
            let listener = listener
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| e.to_string())?;
            server
                .serve(listener, app)
                .await
                .map_err(|e| e.to_string())?;
            Err("the API acceptor stopped".to_string())
        }
    })
}

/// The gossip announcer as a supervised child (`gossip`).
fn gossip_child(
    config: funless_actors::discovery::GossipConfig,
    listen: IpAddr,
    port: u16,
    metrics: Metrics,
) -> ChildSpec {
    service(
        "gossip",
        "announces the cluster address by encrypted multicast",
        move || {
            let started = funless_actors::discovery::announce(config.clone(), listen, port)
                .map(|gossip| {
                    metrics.attach_gossip(gossip.stats.clone());
                    TaskGuard(gossip.task)
                })
                .map_err(|e| format!("starting gossip: {e}"));
            async move {
                let mut task = started?;
                (&mut task.0).await.map_err(|e| e.to_string())?;
                Err("the gossip announcer stopped".to_string())
            }
        },
    )
}

/// Connections the kernel may queue before the API accepts them. Bursts of a thousand clients
/// connecting at once overflowed the default of 1,024 (mio's), and a dropped SYN costs the
/// client a full second before it retries.
const API_BACKLOG: u32 = 4096;

fn bind_api(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(API_BACKLOG)?.into_std()?;
    // `into_std` keeps the socket non-blocking, as `from_std` needs it at every restart.
    Ok(listener)
}

/// A database URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn cookie_is_generated_once_even_in_a_new_data_dir() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("not-yet").join("there");
        let first = super::resolve_cookie(None, &dir).unwrap();
        assert!(first.len() > 32);
        assert_eq!(super::resolve_cookie(None, &dir).unwrap(), first);
        assert_eq!(
            super::resolve_cookie(Some("given".into()), &dir).unwrap(),
            "given"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(super::COOKIE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
