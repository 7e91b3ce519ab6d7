//! A FunLess cluster node: a `ractor_cluster` NodeServer authenticated by the cookie, event
//! logging that names refused peers, and a connector that keeps a node joined to a peer.
//!
//! ractor_cluster has no reconnect and no discovery (DESIGN.md §9): [`stay_connected`] redials
//! with backoff whenever the session to its peer ends, so a worker rejoins a restarted Core.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::protocol::MAX_FRAME_BYTES;

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
    },
    /// A session ended; `authenticated` is false when the peer never passed the cookie check.
    Disconnected {
        /// Peer address as `ip:port`.
        peer: String,
        /// Whether it had authenticated.
        authenticated: bool,
    },
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    server: ActorRef<NodeServerMessage>,
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
    /// Starts the NodeServer and begins logging session events.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        if config.cookie.is_empty() {
            return Err(NodeError::EmptyCookie);
        }
        let server = NodeServer::new(
            config.port,
            config.cookie,
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
        let (server, _handle) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        let (events, _) = broadcast::channel(64);
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "funless-events".into(),
                subscription: Box::new(EventLog {
                    events: events.clone(),
                    authenticated: Arc::new(Mutex::new(HashSet::new())),
                }),
            })
            .map_err(|e| NodeError::Spawn(e.to_string()))?;
        tracing::info!(name = %config.name, listen = %SocketAddr::new(config.listen, config.port), tls = config.tls.is_some(), "cluster node started");
        Ok(Self {
            server,
            events,
            name: config.name,
            tls: config.tls,
        })
    }

    /// The NodeServer actor.
    pub fn server(&self) -> &ActorRef<NodeServerMessage> {
        &self.server
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Session events from now on.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Number of sessions open now (authenticated or not).
    pub async fn session_count(&self) -> usize {
        ractor::call_t!(self.server, NodeServerMessage::GetSessions, 2000)
            .map(|s| s.len())
            .unwrap_or(0)
    }
}

/// Logs every session event and forwards it to [`Node::events`]. A session that closes before
/// authenticating is almost always a wrong cookie: say so, on both ends.
struct EventLog {
    events: broadcast::Sender<NodeEvent>,
    authenticated: Arc<Mutex<HashSet<u64>>>,
}

impl EventLog {
    fn remember(&self, node_id: u64, authenticated: bool) -> bool {
        let mut set = match self.authenticated.lock() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if authenticated {
            set.insert(node_id)
        } else {
            set.remove(&node_id)
        }
    }
}

impl NodeEventSubscription for EventLog {
    fn node_session_opened(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        tracing::debug!(peer = %ses.peer_addr, inbound = ses.is_server, "cluster session opened");
    }

    fn node_session_authenticated(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        self.remember(ses.node_id, true);
        let peer_name = ses
            .peer_name
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default();
        tracing::info!(peer = %ses.peer_addr, %peer_name, "cluster peer authenticated");
        let _ = self.events.send(NodeEvent::Authenticated {
            peer: ses.peer_addr.clone(),
        });
    }

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let authenticated = self.remember(ses.node_id, false);
        if authenticated {
            let peer_name = ses
                .peer_name
                .as_ref()
                .map(|n| n.name.clone())
                .unwrap_or_default();
            tracing::warn!(peer = %ses.peer_addr, %peer_name, "cluster peer disconnected");
        } else {
            tracing::warn!(
                peer = %ses.peer_addr,
                "cluster connection refused: the peer failed authentication (wrong cookie, or not a FunLess node)"
            );
        }
        let _ = self.events.send(NodeEvent::Disconnected {
            peer: ses.peer_addr.clone(),
            authenticated,
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

/// Keeps `node` joined to the peer at `address` (`host:port`): dials, waits for the session to
/// end, and dials again with backoff, forever (until the task is aborted).
pub fn stay_connected(node: Node, address: String, backoff: Backoff) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut delay = backoff.initial;
        loop {
            let mut events = node.events();
            match dial(&node, &address).await {
                Ok(peer) => {
                    tracing::debug!(%address, %peer, "dialled cluster peer");
                    match wait_for_session_end(&mut events, &peer).await {
                        SessionEnd::AfterAuthentication => {
                            tracing::warn!(%address, "lost the cluster peer; reconnecting");
                            delay = backoff.initial;
                        }
                        SessionEnd::Refused => {
                            tracing::error!(%address, "the cluster peer refused this node: check that both use the same cookie");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%address, error = %e, retry_in = ?delay, "cannot reach cluster peer")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(backoff.max);
        }
    })
}

enum SessionEnd {
    AfterAuthentication,
    Refused,
}

async fn dial(node: &Node, address: &str) -> Result<String, String> {
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())?;
    match &node.tls {
        Some(tls) => {
            let name = crate::tls::server_name(address)?;
            ractor_cluster::client_connect_enc(node.server(), addr, tls.connector.clone(), name)
                .await
                .map_err(|e| e.to_string())?;
        }
        None => ractor_cluster::client_connect(node.server(), addr)
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
            Ok(NodeEvent::Authenticated { peer: p }) if p == peer => authenticated = true,
            Ok(NodeEvent::Disconnected {
                peer: p,
                authenticated: a,
            }) if p == peer => {
                return if a || authenticated {
                    SessionEnd::AfterAuthentication
                } else {
                    SessionEnd::Refused
                };
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            // The node is gone: report the session as lost so the caller redials or exits.
            Err(broadcast::error::RecvError::Closed) => return SessionEnd::AfterAuthentication,
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
