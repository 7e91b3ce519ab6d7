//! Finding the Core without being given its address.
//!
//! - **Gossip** (UDP multicast on the LAN, FunLess's libcluster Gossip strategy: group
//!   233.252.1.32, port 45892). The Core announces its cluster address every second and at
//!   once when a worker probes; workers listen and dial what is announced. Every datagram is
//!   sealed with ChaCha20-Poly1305 under a key derived from the cluster cookie, with a random
//!   nonce and a timestamp inside, and padded to one size: a node without the cookie sees
//!   same-sized random-looking UDP packets, learns neither the Core's address nor that they
//!   come from FunLess, and cannot forge or usefully replay one (datagrams older than
//!   [`MAX_AGE`] and repeated nonces are dropped). What does not open is ignored and counted.
//! - **DNS** (a Kubernetes headless service): [`resolve_every`] looks a name up periodically
//!   and hands every address it resolves to.
//!
//! Both feed a `watch` channel of [`Target`]s that [`crate::node::follow`] keeps the node joined
//! to, moving when the Core's address changes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Target;

/// FunLess's gossip group and port (libcluster's Gossip defaults as FunLess configured them).
pub const DEFAULT_GOSSIP_ADDR: &str = "233.252.1.32:45892";
/// How often the Core announces itself.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// Datagrams whose timestamp is further than this from the receiver's clock are dropped.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// How often [`resolve_every`] looks its name up by default.
pub const DNS_INTERVAL: Duration = Duration::from_secs(5);

/// Domain label of the key derivation and the AEAD's associated data.
const LABEL: &[u8] = b"funless-gossip-v1";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Every plaintext is padded to this size, so announcements and probes look alike.
const PLAIN_LEN: usize = 96;
/// Size of every datagram on the wire.
pub const DATAGRAM_LEN: usize = NONCE_LEN + PLAIN_LEN + TAG_LEN;
/// Longest node name a datagram carries.
pub const MAX_NAME: usize = 64;
/// Fewest milliseconds between two announcements answering probes.
const PROBE_ANSWER_GAP: Duration = Duration::from_millis(200);
/// How often a worker that has heard no Core probes again.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How often the count of datagrams that did not open is logged as a warning.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What a gossip datagram says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The Core's cluster address.
    Announce {
        /// The sender's node name.
        node: String,
        /// Where its cluster node listens.
        address: SocketAddr,
    },
    /// A worker asks the Core to announce itself now.
    Probe {
        /// The sender's node name.
        node: String,
    },
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// It does not decrypt with this cookie's key (another cluster, a wrong cookie, noise or
    /// tampering).
    #[error("the datagram does not decrypt with this cluster's key")]
    Undecryptable,
    /// It decrypts but is not a message of this version.
    #[error("the datagram is not a gossip message of this version: {0}")]
    Malformed(&'static str),
    /// It is genuine but too old or from too far in the future (a replay, or clocks apart).
    #[error("the datagram is {skew_secs} s away from this node's clock (allowed: 30 s)")]
    Stale {
        /// Sender's time minus ours, seconds.
        skew_secs: i64,
    },
    /// Its nonce was seen already (a replay).
    #[error("the datagram was seen before")]
    Replayed,
}

/// Why a message cannot be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The node name does not fit a datagram.
    #[error("node name longer than {MAX_NAME} bytes")]
    NameTooLong,
    /// The cipher failed (it does not for inputs of this size).
    #[error("encryption failed")]
    Cipher,
}

/// The cluster's gossip key, derived from the cookie.
#[derive(Clone)]
pub struct GossipKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey")
    }
}

impl GossipKey {
    /// SHA-256 of a domain label and the cookie. The cookie is the only secret: use a long
    /// random one (the Core generates 256 bits when none is given), since captured datagrams
    /// allow guessing it offline.
    pub fn from_cookie(cookie: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(LABEL);
        hash.update([0u8]);
        hash.update(cookie.as_bytes());
        let key: [u8; 32] = hash.finalize().into();
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Seals `message` stamped with `now_ms` (milliseconds since the Unix epoch).
    pub fn seal(&self, message: &Message, now_ms: u64) -> Result<Vec<u8>, SealError> {
        let plain = encode(message, now_ms)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: LABEL,
                },
            )
            .map_err(|_| SealError::Cipher)?;
        let mut out = Vec::with_capacity(DATAGRAM_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a datagram received at `now_ms`: its message and its nonce (for a replay check).
    pub fn open(
        &self,
        datagram: &[u8],
        now_ms: u64,
    ) -> Result<(Message, [u8; NONCE_LEN]), OpenError> {
        if datagram.len() != DATAGRAM_LEN {
            return Err(OpenError::Undecryptable);
        }
        let (nonce, sealed) = datagram.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: LABEL,
                },
            )
            .map_err(|_| OpenError::Undecryptable)?;
        let (message, sent_ms) = decode(&plain)?;
        let skew_ms = i128::from(sent_ms) - i128::from(now_ms);
        if skew_ms.unsigned_abs() > MAX_AGE.as_millis() {
            return Err(OpenError::Stale {
                skew_secs: i64::try_from(skew_ms / 1000).unwrap_or(i64::MAX),
            });
        }
        let mut id = [0u8; NONCE_LEN];
        id.copy_from_slice(nonce);
        Ok((message, id))
    }
}

/// Plaintext layout (fixed [`PLAIN_LEN`] bytes): version, kind (1 announce, 2 probe),
/// timestamp (u64 ms, big-endian), address family (0 none, 4, 6), address (16 bytes), port
/// (u16), name length, name, zero padding.
fn encode(message: &Message, now_ms: u64) -> Result<[u8; PLAIN_LEN], SealError> {
    let mut out = [0u8; PLAIN_LEN];
    out[0] = VERSION;
    out[2..10].copy_from_slice(&now_ms.to_be_bytes());
    let name = match message {
        Message::Announce { node, address } => {
            out[1] = 1;
            match address.ip() {
                IpAddr::V4(ip) => {
                    out[10] = 4;
                    out[11..15].copy_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out[10] = 6;
                    out[11..27].copy_from_slice(&ip.octets());
                }
            }
            out[27..29].copy_from_slice(&address.port().to_be_bytes());
            node
        }
        Message::Probe { node } => {
            out[1] = 2;
            node
        }
    };
    let name = name.as_bytes();
    if name.len() > MAX_NAME {
        return Err(SealError::NameTooLong);
    }
    out[29] = name.len() as u8;
    out[30..30 + name.len()].copy_from_slice(name);
    Ok(out)
}

fn decode(plain: &[u8]) -> Result<(Message, u64), OpenError> {
    if plain.len() != PLAIN_LEN {
        return Err(OpenError::Malformed("length"));
    }
    if plain[0] != VERSION {
        return Err(OpenError::Malformed("version"));
    }
    let mut stamp = [0u8; 8];
    stamp.copy_from_slice(&plain[2..10]);
    let sent_ms = u64::from_be_bytes(stamp);
    let len = usize::from(plain[29]);
    if len > MAX_NAME {
        return Err(OpenError::Malformed("name length"));
    }
    let node = std::str::from_utf8(&plain[30..30 + len])
        .map_err(|_| OpenError::Malformed("name"))?
        .to_string();
    let message = match plain[1] {
        1 => {
            let ip = match plain[10] {
                4 => IpAddr::V4(Ipv4Addr::new(plain[11], plain[12], plain[13], plain[14])),
                6 => {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(&plain[11..27]);
                    IpAddr::V6(Ipv6Addr::from(octets))
                }
                _ => return Err(OpenError::Malformed("address family")),
            };
            let port = u16::from_be_bytes([plain[27], plain[28]]);
            Message::Announce {
                node,
                address: SocketAddr::new(ip, port),
            }
        }
        2 => Message::Probe { node },
        _ => return Err(OpenError::Malformed("kind")),
    };
    Ok((message, sent_ms))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Remembers the nonces of the last [`MAX_AGE`] × 2 so a captured datagram replayed inside
/// the time window is dropped too.
#[derive(Debug, Default)]
struct ReplayGuard {
    seen: HashMap<[u8; NONCE_LEN], Instant>,
}

impl ReplayGuard {
    /// Most nonces remembered; only genuine datagrams get here, about one a second per node.
    const CAP: usize = 16_384;

    fn first_time(&mut self, nonce: [u8; NONCE_LEN]) -> bool {
        let now = Instant::now();
        if self.seen.len() >= Self::CAP {
            self.seen
                .retain(|_, at| now.duration_since(*at) < MAX_AGE * 2);
            if self.seen.len() >= Self::CAP {
                self.seen.clear();
            }
        }
        self.seen.insert(nonce, now).is_none()
    }
}

/// Counts of received datagrams by what became of them.
#[derive(Debug, Default)]
pub struct GossipStats {
    /// Opened and used.
    pub accepted: AtomicU64,
    /// Did not decrypt (wrong cookie, another cluster, noise, tampering).
    pub undecryptable: AtomicU64,
    /// Decrypted but malformed.
    pub malformed: AtomicU64,
    /// Genuine but outside the time window.
    pub stale: AtomicU64,
    /// Genuine but seen before.
    pub replayed: AtomicU64,
}

impl GossipStats {
    /// `(outcome, count)` pairs, for metrics.
    pub fn snapshot(&self) -> [(&'static str, u64); 5] {
        [
            ("accepted", self.accepted.load(Ordering::Relaxed)),
            ("undecryptable", self.undecryptable.load(Ordering::Relaxed)),
            ("malformed", self.malformed.load(Ordering::Relaxed)),
            ("stale", self.stale.load(Ordering::Relaxed)),
            ("replayed", self.replayed.load(Ordering::Relaxed)),
        ]
    }
}

/// Where gossip goes.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// The interface to join and send on; `None`: the system's choice (the route for the
    /// group).
    pub interface: Option<Interface>,
    /// The cluster cookie (the key is derived from it).
    pub cookie: String,
    /// This node's name, carried in its datagrams.
    pub node: String,
}

/// Why gossip cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The socket cannot be set up.
    #[error("gossip socket on {group} (interface {interface}): {source}")]
    Socket {
        /// The group.
        group: SocketAddrV4,
        /// The interface, as given.
        interface: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The name does not fit a datagram.
    #[error("node name {0:?} is longer than {MAX_NAME} bytes, too long for gossip")]
    NameTooLong(String),
    /// The cluster port is not fixed.
    #[error("gossip announces the cluster port, so it needs a fixed --cluster-port (not 0)")]
    NoPort,
}

/// Parses `--gossip-addr`: an IPv4 multicast group and a port.
pub fn parse_group(text: &str) -> Result<SocketAddrV4, String> {
    let addr: SocketAddrV4 = text
        .parse()
        .map_err(|e| format!("{text:?} is not an IPv4 address:port ({e})"))?;
    if !addr.ip().is_multicast() {
        return Err(format!(
            "{} is not a multicast address (224.0.0.0/4)",
            addr.ip()
        ));
    }
    if addr.port() == 0 {
        return Err("the gossip port must not be 0".into());
    }
    Ok(addr)
}

/// The network interface gossip uses: by IPv4 address or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    /// The interface holding this address.
    Address(Ipv4Addr),
    /// The interface of this name (`eth0`, `wlan0`); Linux only.
    Name(String),
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::Address(ip) => ip.fmt(f),
            Interface::Name(name) => f.write_str(name),
        }
    }
}

fn shown(interface: &Option<Interface>) -> String {
    interface
        .as_ref()
        .map_or_else(|| "any".to_string(), ToString::to_string)
}

/// Parses `--gossip-interface`: an IPv4 address, or an interface name.
pub fn parse_interface(text: &str) -> Result<Interface, String> {
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(Interface::Address(ip));
    }
    let valid = !text.is_empty()
        && text.len() < 16
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
    if valid {
        Ok(Interface::Name(text.to_string()))
    } else {
        Err(format!(
            "{text:?} is neither an IPv4 address nor a network interface name"
        ))
    }
}

/// The index of the interface `name`.
fn interface_index(name: &str) -> std::io::Result<u32> {
    let path = format!("/sys/class/net/{name}/ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no network interface named {name:?} ({path}: {e})"),
        )
    })?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{path} does not hold an interface index"),
        )
    })
}

/// Binds `socket` to the interface `name` (SO_BINDTODEVICE).
fn bind_to(socket: &socket2::Socket, name: &str) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        socket.bind_device(Some(name.as_bytes()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = socket;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("interface names ({name}) need Linux: give the interface's IPv4 address"),
        ))
    }
}

/// Parses `--core-dns`: `NAME:PORT`.
pub fn parse_dns_target(text: &str) -> Result<(String, u16), String> {
    let (name, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not NAME:PORT"))?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() {
        return Err(format!("{text:?} has no name before the port"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} in {text:?} is not a port number"))?;
    if port == 0 {
        return Err(format!("the port in {text:?} must not be 0"));
    }
    Ok((name.to_string(), port))
}

fn socket(config: &GossipConfig) -> Result<UdpSocket, GossipError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let open = || -> std::io::Result<UdpSocket> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // A Core and a Worker on one host both listen on the gossip port.
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.group.port())).into())?;
        match &config.interface {
            None => socket.join_multicast_v4(config.group.ip(), &Ipv4Addr::UNSPECIFIED)?,
            Some(Interface::Address(ip)) => {
                socket.set_multicast_if_v4(ip)?;
                socket.join_multicast_v4(config.group.ip(), ip)?;
            }
            Some(Interface::Name(name)) => {
                let index = interface_index(name)?;
                bind_to(&socket, name)?;
                socket.join_multicast_v4_n(
                    config.group.ip(),
                    &socket2::InterfaceIndexOrAddress::Index(index),
                )?;
            }
        }
        // Nodes on the same host hear each other; the LAN only (routers do not forward).
        socket.set_multicast_loop_v4(true)?;
        socket.set_multicast_ttl_v4(1)?;
        UdpSocket::from_std(socket.into())
    };
    open().map_err(|source| GossipError::Socket {
        group: config.group,
        interface: shown(&config.interface),
        source,
    })
}

/// Receives, opens and checks datagrams; logs and counts what is dropped.
struct Receiver {
    key: GossipKey,
    guard: ReplayGuard,
    stats: Arc<GossipStats>,
    last_warning: Option<Instant>,
    last_stale_warning: Option<Instant>,
    dropped_since_warning: u64,
}

impl Receiver {
    fn new(key: GossipKey, stats: Arc<GossipStats>) -> Self {
        Self {
            key,
            guard: ReplayGuard::default(),
            stats,
            last_warning: None,
            last_stale_warning: None,
            dropped_since_warning: 0,
        }
    }

    fn accept(&mut self, datagram: &[u8], from: SocketAddr) -> Option<Message> {
        let outcome = self
            .key
            .open(datagram, now_ms())
            .and_then(|(message, nonce)| {
                if self.guard.first_time(nonce) {
                    Ok(message)
                } else {
                    Err(OpenError::Replayed)
                }
            });
        let error = match outcome {
            Ok(message) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                return Some(message);
            }
            Err(e) => e,
        };
        let counter = match &error {
            OpenError::Undecryptable => &self.stats.undecryptable,
            OpenError::Malformed(_) => &self.stats.malformed,
            OpenError::Stale { .. } => &self.stats.stale,
            OpenError::Replayed => &self.stats.replayed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%from, error = %error, "gossip datagram ignored");
        if let OpenError::Stale { skew_secs } = error {
            // Genuine (it decrypted), so the clocks disagree or it is a late replay.
            if self
                .last_stale_warning
                .is_none_or(|at| at.elapsed() >= WARN_INTERVAL)
            {
                self.last_stale_warning = Some(Instant::now());
                tracing::warn!(%from, skew_secs, "ignored a gossip datagram from a node whose clock is {skew_secs} s apart from ours (allowed: 30 s): check NTP");
            }
        }
        self.dropped_since_warning += 1;
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_INTERVAL);
        if due {
            tracing::warn!(
                dropped = self.dropped_since_warning,
                undecryptable = self.stats.undecryptable.load(Ordering::Relaxed),
                "ignored gossip datagrams that do not open with this node's cookie (another cluster on the LAN, a node with a wrong cookie, or replays)"
            );
            self.last_warning = Some(Instant::now());
            self.dropped_since_warning = 0;
        }
        None
    }
}

/// The address the Core announces: the cluster listen address when it is a specific one,
/// else the address this host sends gossip from (the interface's), which peers on the LAN
/// reach it by.
fn announced_ip(listen: IpAddr, config: &GossipConfig) -> std::io::Result<IpAddr> {
    if !listen.is_unspecified() {
        return Ok(listen);
    }
    if let Some(Interface::Address(ip)) = &config.interface {
        return Ok(IpAddr::V4(*ip));
    }
    // The kernel's choice of source for the group (on the named interface, if one is named):
    // connect a throwaway socket and ask.
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(Interface::Name(name)) = &config.interface {
        bind_to(&probe, name)?;
    }
    probe.connect(&SocketAddr::V4(config.group).into())?;
    probe
        .local_addr()?
        .as_socket()
        .map(|a| a.ip())
        .ok_or_else(|| std::io::Error::other("the gossip socket has no IP address"))
}

/// A running gossip task and its counters.
#[derive(Debug)]
pub struct Gossip {
    /// Counts of received datagrams.
    pub stats: Arc<GossipStats>,
    /// The task (abort to stop).
    pub task: JoinHandle<()>,
}

/// Starts the Core's side: announces `listen:port` every [`ANNOUNCE_INTERVAL`] and whenever a
/// worker's probe opens.
pub fn announce(config: GossipConfig, listen: IpAddr, port: u16) -> Result<Gossip, GossipError> {
    if config.node.len() > MAX_NAME {
        return Err(GossipError::NameTooLong(config.node));
    }
    if port == 0 {
        return Err(GossipError::NoPort);
    }
    let socket = socket(&config)?;
    let stats = Arc::new(GossipStats::default());
    let key = GossipKey::from_cookie(&config.cookie);
    let mut receiver = Receiver::new(key.clone(), stats.clone());
    tracing::info!(group = %config.group, interface = %shown(&config.interface), "gossip: announcing the cluster address");
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = [0u8; 512];
        let mut last_sent: Option<Instant> = None;
        let mut last_announced: Option<SocketAddr> = None;
        let mut failing = false;
        loop {
            let probed = tokio::select! {
                _ = tick.tick() => false,
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => match receiver.accept(&buf[..n], from) {
                        Some(Message::Probe { node }) => {
                            tracing::debug!(%from, %node, "gossip: probe");
                            true
                        }
                        // Our own announcements (multicast loop) and other Cores'.
                        Some(Message::Announce { .. }) | None => continue,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "gossip: receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if probed && last_sent.is_some_and(|at| at.elapsed() < PROBE_ANSWER_GAP) {
                continue;
            }
            let sent = async {
                let address = SocketAddr::new(announced_ip(listen, &config)?, port);
                let datagram = key
                    .seal(
                        &Message::Announce {
                            node: config.node.clone(),
                            address,
                        },
                        now_ms(),
                    )
                    .map_err(std::io::Error::other)?;
                socket.send_to(&datagram, config.group).await?;
                Ok::<_, std::io::Error>(address)
            }
            .await;
            match sent {
                Ok(address) => {
                    last_sent = Some(Instant::now());
                    if failing || last_announced != Some(address) {
                        tracing::info!(%address, group = %config.group, "gossip: announcing {address}");
                    }
                    failing = false;
                    last_announced = Some(address);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, group = %config.group, "gossip: cannot send announcements (no route to the group? give --gossip-interface); retrying every second");
                }
                Err(e) => tracing::debug!(error = %e, "gossip: send failed again"),
            }
        }
    });
    Ok(Gossip { stats, task })
}

/// Starts a worker's side: probes, listens, and publishes the announced Core address on the
/// returned channel (changing it when the Core moves).
pub fn listen(config: GossipConfig) -> Result<(Gossip, watch::Receiver<Vec<Target>>), GossipError> {
    if config.node.len() > MAX_NAME {
        return Err(GossipError::NameTooLong(config.node));
    }
    let socket = socket(&config)?;
    let stats = Arc::new(GossipStats::default());
    let key = GossipKey::from_cookie(&config.cookie);
    let mut receiver = Receiver::new(key.clone(), stats.clone());
    let (targets, watched) = watch::channel(Vec::new());
    tracing::info!(group = %config.group, interface = %shown(&config.interface), "gossip: listening for the Core");
    let task = tokio::spawn(async move {
        let mut probe = tokio::time::interval(PROBE_INTERVAL);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heard = false;
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = probe.tick(), if !heard => {
                    let datagram = key.seal(&Message::Probe { node: config.node.clone() }, now_ms());
                    match datagram {
                        Ok(datagram) => if let Err(e) = socket.send_to(&datagram, config.group).await {
                            tracing::debug!(error = %e, "gossip: cannot send a probe");
                        },
                        Err(e) => tracing::warn!(error = %e, "gossip: cannot seal a probe"),
                    }
                }
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        if let Some(Message::Announce { node, address }) = receiver.accept(&buf[..n], from) {
                            heard = true;
                            let target = Target::at(address);
                            let changed = targets.send_if_modified(|now| {
                                if now.as_slice() == std::slice::from_ref(&target) {
                                    false
                                } else {
                                    *now = vec![target.clone()];
                                    true
                                }
                            });
                            if changed {
                                tracing::info!(%address, %node, %from, "gossip: the Core announces {address}");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "gossip: receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
    Ok((Gossip { stats, task }, watched))
}

/// Resolves `name` (every A and AAAA record) every `interval` and publishes the addresses
/// with `port`; a failed lookup keeps the last answer (and is logged when it starts failing).
pub fn resolve_every(
    name: String,
    port: u16,
    interval: Duration,
) -> (JoinHandle<()>, watch::Receiver<Vec<Target>>) {
    let (targets, watched) = watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            match tokio::net::lookup_host((name.as_str(), port)).await {
                Ok(found) => {
                    let mut addresses: Vec<SocketAddr> = found.collect();
                    addresses.sort();
                    addresses.dedup();
                    if addresses.is_empty() {
                        if !failing {
                            tracing::warn!(%name, "DNS: {name} resolves to no address; keeping the last answer");
                        }
                        failing = true;
                        continue;
                    }
                    failing = false;
                    let list: Vec<Target> =
                        addresses.iter().map(|a| Target::named(*a, &name)).collect();
                    let changed = targets.send_if_modified(|now| {
                        if *now == list {
                            false
                        } else {
                            *now = list.clone();
                            true
                        }
                    });
                    if changed {
                        tracing::info!(%name, ?addresses, "DNS: {name} resolves to {addresses:?}");
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(%name, error = %e, "DNS: cannot resolve {name}; keeping the last answer and retrying");
                    }
                    failing = true;
                }
            }
        }
    });
    (task, watched)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn announce() -> Message {
        Message::Announce {
            node: "core".into(),
            address: "10.1.2.3:4001".parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_of_both_kinds_and_both_families() {
        let key = GossipKey::from_cookie("s3cret");
        let now = now_ms();
        let v6 = Message::Announce {
            node: "c".repeat(MAX_NAME),
            address: "[fd00::1]:4001".parse().unwrap(),
        };
        let probe = Message::Probe { node: "w1".into() };
        for message in [announce(), v6, probe] {
            let datagram = key.seal(&message, now).unwrap();
            assert_eq!(datagram.len(), DATAGRAM_LEN, "every datagram has one size");
            let (opened, _) = key.open(&datagram, now + 1500).unwrap();
            assert_eq!(opened, message);
        }
        let long = Message::Probe {
            node: "x".repeat(MAX_NAME + 1),
        };
        assert_eq!(key.seal(&long, now), Err(SealError::NameTooLong));
    }

    #[test]
    fn a_wrong_cookie_opens_nothing_and_sees_no_plaintext() {
        let now = now_ms();
        let datagram = GossipKey::from_cookie("s3cret")
            .seal(&announce(), now)
            .unwrap();
        assert_eq!(
            GossipKey::from_cookie("s3cret ").open(&datagram, now),
            Err(OpenError::Undecryptable)
        );
        // Neither the address nor the name appears on the wire.
        let text = String::from_utf8_lossy(&datagram);
        assert!(!text.contains("core"));
        assert!(
            !datagram.windows(4).any(|w| w == [10, 1, 2, 3]),
            "address in clear"
        );
        // Two seals of one message differ (random nonce).
        let again = GossipKey::from_cookie("s3cret")
            .seal(&announce(), now)
            .unwrap();
        assert_ne!(datagram, again);
    }

    #[test]
    fn tampered_or_truncated_datagrams_are_rejected() {
        let key = GossipKey::from_cookie("s3cret");
        let now = now_ms();
        let datagram = key.seal(&announce(), now).unwrap();
        for i in [0, NONCE_LEN, NONCE_LEN + 27, DATAGRAM_LEN - 1] {
            let mut bad = datagram.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                key.open(&bad, now),
                Err(OpenError::Undecryptable),
                "byte {i}"
            );
        }
        assert_eq!(
            key.open(&datagram[..DATAGRAM_LEN - 1], now),
            Err(OpenError::Undecryptable)
        );
        assert_eq!(key.open(&[], now), Err(OpenError::Undecryptable));
    }

    #[test]
    fn stale_and_future_datagrams_are_rejected() {
        let key = GossipKey::from_cookie("s3cret");
        let now = now_ms();
        let old = key.seal(&announce(), now - 31_000).unwrap();
        assert_eq!(
            key.open(&old, now),
            Err(OpenError::Stale { skew_secs: -31 })
        );
        let future = key.seal(&announce(), now + 45_000).unwrap();
        assert_eq!(
            key.open(&future, now),
            Err(OpenError::Stale { skew_secs: 45 })
        );
        let recent = key.seal(&announce(), now - 29_000).unwrap();
        assert!(key.open(&recent, now).is_ok());
    }

    #[test]
    fn a_replayed_datagram_is_counted_and_dropped() {
        let key = GossipKey::from_cookie("s3cret");
        let stats = Arc::new(GossipStats::default());
        let mut receiver = Receiver::new(key.clone(), stats.clone());
        let from: SocketAddr = "10.0.0.9:45892".parse().unwrap();
        let datagram = key.seal(&announce(), now_ms()).unwrap();
        assert_eq!(receiver.accept(&datagram, from), Some(announce()));
        assert_eq!(receiver.accept(&datagram, from), None);
        let wrong = GossipKey::from_cookie("other")
            .seal(&announce(), now_ms())
            .unwrap();
        assert_eq!(receiver.accept(&wrong, from), None);
        assert_eq!(receiver.accept(b"hello", from), None);
        let counts: HashMap<_, _> = stats.snapshot().into_iter().collect();
        assert_eq!(counts["accepted"], 1);
        assert_eq!(counts["replayed"], 1);
        assert_eq!(counts["undecryptable"], 2);
    }

    #[test]
    fn flag_values_are_checked() {
        assert_eq!(
            parse_group(DEFAULT_GOSSIP_ADDR).unwrap(),
            "233.252.1.32:45892".parse().unwrap()
        );
        assert!(
            parse_group("10.0.0.1:45892")
                .unwrap_err()
                .contains("multicast")
        );
        assert!(parse_group("233.252.1.32").is_err());
        assert_eq!(
            parse_dns_target("funless-core.default.svc:4001").unwrap(),
            ("funless-core.default.svc".to_string(), 4001)
        );
        assert!(parse_dns_target("core").is_err());
        assert!(parse_dns_target(":4001").is_err());
        assert!(parse_dns_target("core:http").is_err());
        assert_eq!(
            parse_interface("10.0.0.2").unwrap(),
            Interface::Address(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            parse_interface("wlan0").unwrap(),
            Interface::Name("wlan0".into())
        );
        assert!(parse_interface("").is_err());
        assert!(parse_interface("eth0/../x").is_err());
        assert!(parse_interface("a-very-long-interface").is_err());
    }

    #[tokio::test]
    async fn dns_publishes_every_address_of_the_name() {
        let (task, mut targets) =
            resolve_every("localhost".into(), 4001, Duration::from_millis(50));
        tokio::time::timeout(Duration::from_secs(5), targets.changed())
            .await
            .unwrap()
            .unwrap();
        let list = targets.borrow().clone();
        task.abort();
        assert!(!list.is_empty());
        assert!(
            list.iter()
                .all(|t| t.address.ends_with(":4001") && t.server_name == "localhost"),
            "{list:?}"
        );
        assert!(
            list.iter().any(|t| t.address == "127.0.0.1:4001"),
            "{list:?}"
        );
    }
}
