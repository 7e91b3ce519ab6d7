//! A FunLess cluster node: a `ractor_cluster` NodeServer authenticated by the cookie, event
//! logging that names refused peers, and a connector that keeps a node joined to a peer.
//!
//! ractor_cluster has no reconnect and no discovery (DESIGN.md §9): [`follow`] redials with
//! backoff whenever the session to its peer ends, so a worker rejoins a restarted Core, and
//! moves to a new address when discovery ([`crate::discovery`]) reports one;
//! [`stay_connected`] does the same for one fixed address. [`connect_once`] dials a node and
//! says whether it joined (the Core's admin call).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::protocol::MAX_FRAME_BYTES;
use crate::supervisor::ChildSpec;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Unique node name (the worker name, or `core`).
    pub name: String,
    /// Shared secret of the cluster.
    pub cookie: String,
    /// Address to listen on for peers.
    pub listen: IpAddr,
    /// Port to listen on for peers.
    pub port: u16,
    /// Mutual TLS for every session; `None`: plain TCP (authenticated by the cookie only).
    pub tls: Option<crate::tls::Tls>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The cookie is empty.
    #[error("the cluster cookie must not be empty")]
    EmptyCookie,
    /// The NodeServer actor failed to start.
    #[error("cannot start the cluster node: {0}")]
    Spawn(String),
}

/// Something that happened to a cluster session, as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A peer passed the cookie check.
    Authenticated {
        /// Peer address as `ip:port`.
        peer: String,
        /// The peer's node name.
        name: String,
    },
    /// A session ended; `authenticated` is false when the peer never passed the cookie check.
    Disconnected {
        /// Peer address as `ip:port`.
        peer: String,
        /// The name the peer gave, if it got that far.
        name: Option<String>,
        /// Whether it had authenticated.
        authenticated: bool,
        /// It was a second session with a node that stays joined by another one (both ends
        /// dialled), closed by ractor_cluster's duplicate election; not a refusal.
        duplicate: bool,
    },
}

/// A cluster node: its NodeServer (restartable under a supervisor, see [`Node::child_spec`])
/// and the session events of whichever incarnation runs.
#[derive(Clone)]
pub struct Node {
    config: Arc<NodeConfig>,
    server: Arc<RwLock<Option<ActorRef<NodeServerMessage>>>>,
    events: broadcast::Sender<NodeEvent>,
    name: String,
    tls: Option<crate::tls::Tls>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.name).finish()
    }
}

impl Node {
    /// A node not started yet: start it with [`Node::child_spec`] under a supervisor (or with
    /// [`Node::start`] alone).
    pub fn new(config: NodeConfig) -> Result<Self, NodeError> {
        if config.cookie.is_empty() {
            return Err(NodeError::EmptyCookie);
        }
        let (events, _) = broadcast::channel(64);
        Ok(Self {
            name: config.name.clone(),
            tls: config.tls.clone(),
            config: Arc::new(config),
            server: Arc::default(),
            events,
        })
    }

    /// Starts the NodeServer, unsupervised, and begins logging session events.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        let node = Self::new(config)?;
        node.spawn_server(None)
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        Ok(node)
    }

    /// The node as a supervised child named `cluster-node`: every (re)start listens again on
    /// the same port (sessions do not survive a restart: peers redial).
    pub fn child_spec(&self) -> ChildSpec {
        let node = self.clone();
        ChildSpec::worker(
            "cluster-node",
            "ractor_cluster NodeServer: cookie-authenticated sessions with peers",
            Arc::new(move |parent| {
                let node = node.clone();
                Box::pin(async move { node.spawn_server(Some(parent)).await })
            }),
        )
    }

    async fn spawn_server(&self, parent: Option<ActorCell>) -> Result<ActorCell, SpawnErr> {
        let config = &self.config;
        let server = NodeServer::new(
            config.port,
            config.cookie.clone(),
            config.name.clone(),
            config.listen.to_string(),
            config
                .tls
                .as_ref()
                .map(|tls| ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor.clone())),
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(config.listen)
        .with_max_inbound_frame_size(MAX_FRAME_BYTES);
        let (server, _handle) = match parent {
            Some(parent) => Actor::spawn_linked(None, server, (), parent).await?,
            None => Actor::spawn(None, server, ()).await?,
        };
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "funless-events".into(),
                subscription: Box::new(EventLog {
                    events: self.events.clone(),
                    authenticated: Arc::new(Mutex::new(HashMap::new())),
                }),
            })
            .map_err(|e| SpawnErr::StartupFailed(e.to_string().into()))?;
        tracing::info!(name = %config.name, listen = %SocketAddr::new(config.listen, config.port), tls = config.tls.is_some(), "cluster node started");
        let cell = server.get_cell();
        *self.server.write().unwrap_or_else(|p| p.into_inner()) = Some(server);
        Ok(cell)
    }

    /// The running NodeServer actor, if one runs.
    pub fn server(&self) -> Option<ActorRef<NodeServerMessage>> {
        self.server
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|s| s.get_status() != ractor::ActorStatus::Stopped)
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Session events from now on (of every incarnation of the NodeServer).
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Sessions open now (authenticated or not); empty while the NodeServer restarts.
    async fn sessions(&self) -> HashMap<u64, ractor_cluster::node::NodeServerSessionInformation> {
        match self.server() {
            Some(server) => {
                ractor::call_t!(server, NodeServerMessage::GetSessions, 2000).unwrap_or_default()
            }
            None => HashMap::new(),
        }
    }

    /// Number of sessions open now (authenticated or not).
    pub async fn session_count(&self) -> usize {
        self.sessions().await.len()
    }
}

/// Logs every session event and forwards it to [`Node::events`]. A session that closes before
/// authenticating is almost always a wrong cookie: say so, on both ends.
struct EventLog {
    events: broadcast::Sender<NodeEvent>,
    /// Authenticated sessions: node id → peer name.
    authenticated: Arc<Mutex<HashMap<u64, String>>>,
}

impl EventLog {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        match self.authenticated.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn peer_name(ses: &ractor_cluster::node::NodeServerSessionInformation) -> Option<String> {
    ses.peer_name.as_ref().map(|n| n.name.clone())
}

impl NodeEventSubscription for EventLog {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        tracing::debug!(peer = %ses.peer_addr, inbound = ses.is_server, "cluster session opened");
    }

    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let peer_name = peer_name(&ses).unwrap_or_default();
        self.sessions().insert(ses.node_id, peer_name.clone());
        tracing::info!(peer = %ses.peer_addr, %peer_name, inbound = ses.is_server, "cluster peer authenticated");
        let _ = self.events.send(NodeEvent::Authenticated {
            peer: ses.peer_addr.clone(),
            name: peer_name,
        });
    }

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let name = peer_name(&ses);
        let (authenticated, duplicate) = {
            let mut sessions = self.sessions();
            let authenticated = sessions.remove(&ses.node_id).is_some();
            let duplicate = !authenticated
                && name
                    .as_ref()
                    .is_some_and(|n| sessions.values().any(|joined| joined == n));
            (authenticated, duplicate)
        };
        let shown = name.clone().unwrap_or_default();
        if authenticated {
            tracing::warn!(peer = %ses.peer_addr, peer_name = %shown, "cluster peer disconnected");
        } else if duplicate {
            tracing::info!(
                peer = %ses.peer_addr,
                peer_name = %shown,
                "closed a second session with {shown}, which stays joined by another (both ends dialled)"
            );
        } else {
            tracing::warn!(
                peer = %ses.peer_addr,
                "cluster connection refused: the peer failed authentication (wrong cookie, or not a FunLess node)"
            );
        }
        let _ = self.events.send(NodeEvent::Disconnected {
            peer: ses.peer_addr.clone(),
            name,
            authenticated,
            duplicate,
        });
    }
}

/// Backoff between redials of [`stay_connected`].
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

/// A peer to dial: its address and the name its TLS certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, resolved at each dial.
    pub address: String,
    /// The name checked against the peer's certificate when the cluster uses TLS.
    pub server_name: String,
}

impl Target {
    /// A `host:port` given by hand; the host is the certificate name.
    pub fn given(address: &str) -> Self {
        let host = match address.rsplit_once(':') {
            Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => address,
        };
        Self {
            address: address.to_string(),
            server_name: host.to_string(),
        }
    }

    /// An address found by discovery; its IP is the certificate name.
    pub fn at(address: SocketAddr) -> Self {
        Self {
            address: address.to_string(),
            server_name: address.ip().to_string(),
        }
    }

    /// An address a DNS name resolved to; the name is the certificate name.
    pub fn named(address: SocketAddr, name: &str) -> Self {
        Self {
            address: address.to_string(),
            server_name: name.to_string(),
        }
    }
}

/// Keeps `node` joined to the peer at `address` (`host:port`): dials, waits for the session to
/// end, and dials again with backoff, forever (until the task is aborted).
pub fn stay_connected(node: Node, address: String, backoff: Backoff) -> JoinHandle<()> {
    let (targets, watched) = watch::channel(vec![Target::given(&address)]);
    // The sender lives as long as the connector, so the target never disappears.
    tokio::spawn(async move {
        let _targets = targets;
        if let Err(e) = follow(node, watched, backoff).await {
            tracing::error!(error = %e, "cluster connector stopped");
        }
    })
}

/// Keeps `node` joined to one of `targets` (tried in order), following the list as it
/// changes: waits while it is empty, redials with backoff when the session ends or a dial
/// fails, and leaves a peer at once for the new list when its address is no longer on it
/// (the Core moved). Runs until the task is aborted; ends when the list's sender is dropped
/// while the list is empty.
pub async fn follow(
    node: Node,
    mut targets: watch::Receiver<Vec<Target>>,
    backoff: Backoff,
) -> Result<(), FollowError> {
    let mut delay = backoff.initial;
    let mut next = 0usize;
    loop {
        let list = targets.borrow_and_update().clone();
        let Some(target) = list.get(next % list.len().max(1)).cloned() else {
            tracing::info!("waiting for the Core's address");
            targets
                .changed()
                .await
                .map_err(|_| FollowError::NoTargets)?;
            continue;
        };
        let mut events = node.events();
        // A connector restarted by its supervisor finds the session its previous incarnation
        // opened still up: follow that one instead of opening a duplicate.
        let joined = match existing_session(&node, &target).await {
            Some(peer) => Ok(peer),
            None => dial(&node, &target).await,
        };
        match joined {
            Ok(peer) => {
                tracing::debug!(address = %target.address, %peer, "dialled cluster peer");
                tokio::select! {
                    end = wait_for_session_end(&mut events, &peer) => match end {
                        SessionEnd::AfterAuthentication => {
                            tracing::warn!(address = %target.address, "lost the cluster peer; reconnecting");
                            delay = backoff.initial;
                        }
                        SessionEnd::Refused => {
                            tracing::error!(address = %target.address, "the cluster peer refused this node: check that both use the same cookie");
                            next += 1;
                        }
                        SessionEnd::Duplicate(name) => {
                            // The peer dialled us too and its session stays: redial only
                            // once that one ends.
                            wait_for_node_gone(&node, &mut events, &name).await;
                            tracing::warn!(address = %target.address, peer_name = %name, "lost the cluster peer; reconnecting");
                            delay = backoff.initial;
                        }
                    },
                    () = moved_away(&mut targets, &target) => {
                        let now = targets.borrow().clone();
                        tracing::info!(from = %target.address, to = ?now.iter().map(|t| &t.address).collect::<Vec<_>>(), "the Core moved; leaving the old address");
                        close_session(&node, &peer).await;
                        delay = backoff.initial;
                        next = 0;
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(address = %target.address, error = %e, retry_in = ?delay, "cannot reach cluster peer");
                next += 1;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {
                delay = (delay * 2).min(backoff.max);
            }
            changed = targets.changed() => {
                if changed.is_ok() {
                    delay = backoff.initial;
                    next = 0;
                } else {
                    // No more changes: sleep out the delay.
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(backoff.max);
                }
            }
        }
    }
}

/// Why [`follow`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Discovery ended without an address.
    #[error("discovery stopped before finding an address")]
    NoTargets,
}

/// Returns when `target` is no longer in the list; never when the list's sender is gone.
async fn moved_away(targets: &mut watch::Receiver<Vec<Target>>, target: &Target) {
    loop {
        if targets.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if !targets.borrow_and_update().contains(target) {
            return;
        }
    }
}

/// Ends the session with the peer at `peer` (`ip:port`), if there is one.
async fn close_session(node: &Node, peer: &str) {
    let sessions = node.sessions().await;
    {
        for session in sessions.values().filter(|s| s.peer_addr == peer) {
            session
                .actor
                .stop(Some("the peer's address changed".into()));
        }
    }
}

enum SessionEnd {
    AfterAuthentication,
    Refused,
    /// Ours was a duplicate of a session the peer `name` opened to us, which stays.
    Duplicate(String),
}

/// The peer address of an authenticated session with the node listening at `target`, if
/// there is one.
async fn existing_session(node: &Node, target: &Target) -> Option<String> {
    let resolved = tokio::net::lookup_host(target.address.as_str())
        .await
        .ok()?
        .next()?
        .to_string();
    node.sessions().await.values().find_map(|s| {
        let name = s.peer_name.as_ref()?;
        (s.peer_addr == resolved || name.connection_string == resolved).then(|| s.peer_addr.clone())
    })
}

async fn dial(node: &Node, target: &Target) -> Result<String, String> {
    let addr = tokio::net::lookup_host(target.address.as_str())
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())?;
    let server = node
        .server()
        .ok_or_else(|| "the cluster node is restarting".to_string())?;
    match &node.tls {
        Some(tls) => {
            let name = crate::tls::server_name(&target.server_name)?;
            ractor_cluster::client_connect_enc(&server, addr, tls.connector.clone(), name)
                .await
                .map_err(|e| e.to_string())?;
        }
        None => ractor_cluster::client_connect(&server, addr)
            .await
            .map_err(|e| e.to_string())?,
    }
    Ok(addr.to_string())
}

async fn wait_for_session_end(
    events: &mut broadcast::Receiver<NodeEvent>,
    peer: &str,
) -> SessionEnd {
    let mut authenticated = false;
    loop {
        match events.recv().await {
            Ok(NodeEvent::Authenticated { peer: p, .. }) if p == peer => authenticated = true,
            Ok(NodeEvent::Disconnected {
                peer: p,
                name,
                authenticated: a,
                duplicate,
            }) if p == peer => {
                return match name {
                    Some(name) if duplicate => SessionEnd::Duplicate(name),
                    _ if a || authenticated => SessionEnd::AfterAuthentication,
                    _ => SessionEnd::Refused,
                };
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            // The node is gone: report the session as lost so the caller redials or exits.
            Err(broadcast::error::RecvError::Closed) => return SessionEnd::AfterAuthentication,
        }
    }
}

/// Waits until no authenticated session with the node `name` is left.
async fn wait_for_node_gone(node: &Node, events: &mut broadcast::Receiver<NodeEvent>, name: &str) {
    loop {
        let joined = node
            .sessions()
            .await
            .values()
            .any(|s| s.peer_name.as_ref().is_some_and(|n| n.name == name));
        if !joined {
            return;
        }
        loop {
            match events.recv().await {
                Ok(NodeEvent::Disconnected {
                    name: Some(n),
                    authenticated: true,
                    ..
                }) if n == name => break,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Why [`connect_once`] did not join the node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `host:port`.
    #[error("{0}")]
    BadAddress(String),
    /// Nothing answers there (or the name does not resolve).
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address.
        address: String,
        /// Why.
        reason: String,
    },
    /// It answered but did not pass the cookie check.
    #[error("{0} refused the connection: it is not a FunLess node of this cluster (wrong cookie?)")]
    Refused(String),
    /// It did not finish the handshake in time.
    #[error("{0} did not complete the cluster handshake in time")]
    Timeout(String),
}

/// A peer's node name without the `@host` ractor_cluster appends.
fn node_name(full: &str) -> String {
    full.rsplit_once('@')
        .map_or(full, |(name, _host)| name)
        .to_string()
}

/// Checks that `address` is `host:port` with a port number.
pub fn check_address(address: &str) -> Result<(), ConnectError> {
    let bad = |why: &str| ConnectError::BadAddress(format!("{address:?} is not host:port: {why}"));
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("the port must be a number from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

/// Dials the node at `address` once and waits up to `limit` for the cookie check: the peer's
/// node name when it joined. The session then lives as any other (nobody redials it).
pub async fn connect_once(
    node: &Node,
    address: &str,
    limit: Duration,
) -> Result<String, ConnectError> {
    check_address(address)?;
    tokio::time::timeout(limit, join(node, address))
        .await
        .unwrap_or_else(|_| Err(ConnectError::Timeout(address.to_string())))
}

async fn join(node: &Node, address: &str) -> Result<String, ConnectError> {
    let unreachable = |reason: String| ConnectError::Unreachable {
        address: address.to_string(),
        reason,
    };
    let resolved = tokio::net::lookup_host(address)
        .await
        .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| unreachable("resolves to no address".into()))?;
    // Already joined (dialled before, or it dialled us from that listening address): a second
    // session would only be closed by the peer's duplicate check.
    {
        let sessions = node.sessions().await;
        let here = resolved.to_string();
        let joined = sessions.values().find_map(|s| {
            let name = s.peer_name.as_ref()?;
            (s.peer_addr == here || name.connection_string == here).then(|| node_name(&name.name))
        });
        if let Some(name) = joined {
            return Ok(name);
        }
    }
    let target = Target {
        address: resolved.to_string(),
        server_name: Target::given(address).server_name,
    };
    let mut events = node.events();
    let peer = dial(node, &target).await.map_err(unreachable)?;
    loop {
        match events.recv().await {
            Ok(NodeEvent::Authenticated { peer: p, name }) if p == peer => {
                return Ok(node_name(&name));
            }
            Ok(NodeEvent::Disconnected {
                peer: p,
                name: Some(name),
                duplicate: true,
                ..
            }) if p == peer => return Ok(node_name(&name)),
            Ok(NodeEvent::Disconnected { peer: p, .. }) if p == peer => {
                return Err(ConnectError::Refused(address.to_string()));
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => {
                return Err(unreachable("this node stopped".into()));
            }
        }
    }
}

/// Why a cookie file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CookieFileError {
    /// It cannot be read.
    #[error("cannot read the cookie file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It holds nothing.
    #[error("the cookie file {path} is empty")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a cluster cookie from a file (its first line, trimmed), so the secret stays out of
/// command lines and process listings. Warns when others than the owner may read it.
pub fn cookie_from_file(path: &std::path::Path) -> Result<String, CookieFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| CookieFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let cookie = text.lines().next().unwrap_or_default().trim().to_string();
    if cookie.is_empty() {
        return Err(CookieFileError::Empty { path: shown });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(file = %shown, "the cookie file is readable by other users: chmod 600 it");
        }
    }
    Ok(cookie)
}

#[cfg(test)]
mod cookie_file_tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn reads_the_first_line_and_refuses_empty_or_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookie");
        std::fs::write(&path, "  s3cret \nignored\n").unwrap();
        assert_eq!(super::cookie_from_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(
            super::cookie_from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let missing = dir.path().join("none");
        assert!(
            super::cookie_from_file(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
