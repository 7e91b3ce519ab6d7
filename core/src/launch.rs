//! Starting a Core: data directory, store, first tokens, supervision tree, cluster node, API.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use funless_actors::node::{Node, NodeConfig};
use funless_actors::supervisor::{ChildSpec, Supervisor, SupervisorArgs, SupervisorMessage};
use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::platform::Platform;
use crate::registry::{Registry, RegistryArgs};
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
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Cluster node address.
    pub cluster_listen: IpAddr,
    /// Cluster node port.
    pub cluster_port: u16,
    /// Cluster cookie (resolved with [`resolve_cookie`]).
    pub cookie: String,
    /// Silence after which a worker is declared lost.
    pub heartbeat_timeout: Duration,
    /// Largest time limit a function may ask for, milliseconds.
    pub max_timeout_ms: u64,
    /// Mutual TLS for cluster sessions.
    pub tls: Option<funless_actors::tls::Tls>,
    /// How many activation records are kept, and for how long.
    pub activations: crate::activations::ActivationLimits,
    /// Bounds of the HTTP front.
    pub http: funless_api::HttpLimits,
    /// Announce the cluster address by multicast gossip (`None`: off).
    pub gossip: Option<GossipSettings>,
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
    /// Ends when the root supervisor gives up.
    pub supervisor_done: JoinHandle<()>,
    /// Ends when the API server stops.
    pub server: JoinHandle<std::io::Result<()>>,
    /// The gossip announcer, when on.
    pub gossip: Option<funless_actors::discovery::Gossip>,
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
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the store at {}", redact(&url)))?;
    tracing::info!(backend = store.backend(), "store ready");

    let listener =
        bind_api(config.listen).with_context(|| format!("binding the API to {}", config.listen))?;
    let api_addr = listener.local_addr()?;
    tokens::bootstrap(&store, &config.data_dir, &format!("http://{api_addr}")).await?;

    let metrics = Metrics::new();
    let workers = Workers::default();
    let registry_args = RegistryArgs {
        workers: workers.clone(),
        metrics: metrics.clone(),
        heartbeat_timeout: config.heartbeat_timeout,
    };
    let registry = ChildSpec {
        name: "registry".into(),
        start: Arc::new(move |supervisor| {
            let args = registry_args.clone();
            Box::pin(async move {
                let (actor, _) = Actor::spawn_linked(None, Registry, args, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    };
    let (supervisor, supervisor_done) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children: vec![registry],
            max_restarts: 5,
            within: Duration::from_secs(30),
        },
    )
    .await
    .context("starting the supervision tree")?;

    let node = Node::start(NodeConfig {
        name: "core".into(),
        cookie: config.cookie.clone(),
        listen: config.cluster_listen,
        port: config.cluster_port,
        tls: config.tls.clone(),
    })
    .await?;
    let gossip = match config.gossip {
        Some(settings) => {
            let gossip = funless_actors::discovery::announce(
                funless_actors::discovery::GossipConfig {
                    group: settings.group,
                    interface: settings.interface,
                    cookie: config.cookie.clone(),
                    node: node.name().to_string(),
                },
                config.cluster_listen,
                config.cluster_port,
            )
            .context("starting gossip")?;
            metrics.attach_gossip(gossip.stats.clone());
            Some(gossip)
        }
        None => None,
    };

    let platform = Platform::new(
        store,
        workers.clone(),
        metrics.clone(),
        config.max_timeout_ms,
        config.activations,
    );
    platform.set_node(node.clone());
    // Functions' event connectors come back by themselves after a restart.
    if let Err(e) = platform.restore_connectors().await {
        tracing::error!(error = %e, "cannot restore event connectors");
    }
    let app = funless_api::router_with(Arc::new(platform.clone()), config.http.clone());
    let server = tokio::spawn(funless_api::serve(listener, app, config.http));
    tracing::info!(%api_addr, cluster = %SocketAddr::new(config.cluster_listen, config.cluster_port), "api listening on {api_addr}");

    Ok(CoreHandle {
        api_addr,
        platform,
        workers,
        node,
        supervisor,
        supervisor_done,
        server,
        gossip,
    })
}

/// Connections the kernel may queue before the API accepts them. Bursts of a thousand clients
/// connecting at once overflowed the default of 1,024 (mio's), and a dropped SYN costs the
/// client a full second before it retries.
const API_BACKLOG: u32 = 4096;

fn bind_api(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(API_BACKLOG)
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
