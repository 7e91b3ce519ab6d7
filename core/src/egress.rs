//! Where the Core itself may connect for users: data sinks (webhooks, CouchDB) and event
//! connectors (MQTT, NATS). Without it a user could make the Core reach its own host or the
//! site's private network (a metadata service at 169.254.169.254, an admin port on loopback)
//! and learn from the answers which ports are open.
//!
//! Loopback, private, link-local, shared (CGNAT), unspecified, broadcast, multicast and
//! documentation addresses are refused unless an operator allows their network
//! (`--egress-allow-net`). Names are checked after DNS resolution, on every connection: HTTP
//! clients resolve through [`Resolver`], which drops refused addresses, so a name that later
//! resolves elsewhere (DNS rebinding) is refused then too; connectors resolve once per
//! connection with [`resolve`] and connect to the checked address itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// A network, `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Net {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`: a /32).
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or network (a.b.c.d/n)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self {
            addr: canonical(addr),
            prefix,
        })
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is refused, when it is.
fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("broadcast, multicast or reserved")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("documentation or benchmarking")
    } else {
        None
    }
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first == 0x2001 && ip.segments()[1] == 0x0db8 {
        Some("documentation")
    } else if first == 0x0064 && ip.segments()[1] == 0xff9b {
        // NAT64 can reach any IPv4 address, private ones included.
        Some("NAT64")
    } else {
        None
    }
}

/// Flags of the egress policy, flattened into the Core's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct EgressArgs {
    /// A network (`10.0.0.0/8`, `127.0.0.1`, `fd00::/8`) that sinks and event connectors may
    /// reach although it is loopback, private, link-local or otherwise special (repeat for
    /// several, or comma-separate). By default the Core connects only to public addresses.
    #[arg(long, env = "FUNLESS_EGRESS_ALLOW_NET", value_delimiter = ',')]
    pub egress_allow_net: Vec<Net>,
}

impl EgressArgs {
    /// The policy these flags give.
    pub fn policy(&self) -> EgressPolicy {
        EgressPolicy::allowing(self.egress_allow_net.clone())
    }
}

/// The Core's egress policy.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed: Arc<Vec<Net>>,
}

/// A refused destination. Its text names the rule, never anything learnt from the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// The address is of a refused kind.
    #[error(
        "{host} is a {kind} address, which the Core does not connect to for users (an operator can allow its network with --egress-allow-net)"
    )]
    Refused {
        /// The host as given.
        host: String,
        /// The kind of address.
        kind: &'static str,
    },
    /// The name did not resolve, or only to refused addresses.
    #[error("{host} does not resolve to an address the Core may connect to")]
    Unresolved {
        /// The host as given.
        host: String,
    },
}

impl EgressPolicy {
    /// A policy that also allows these networks.
    pub fn allowing(nets: Vec<Net>) -> Self {
        Self {
            allowed: Arc::new(nets),
        }
    }

    /// Why `ip` is refused, or `None` when it may be dialled.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let kind = special(ip)?;
        if self.allowed.iter().any(|net| net.contains(ip)) {
            return None;
        }
        Some(kind)
    }

    /// Checks a host as written in a URL: an address literal is checked now; a name only when
    /// it is resolved (at each connection).
    pub fn check_host(&self, host: &str) -> Result<(), EgressError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>()
            && let Some(kind) = self.refusal(ip)
        {
            return Err(EgressError::Refused {
                host: host.to_string(),
                kind,
            });
        }
        if bare.eq_ignore_ascii_case("localhost")
            || bare.to_ascii_lowercase().ends_with(".localhost")
        {
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            if let Some(kind) = self.refusal(ip) {
                return Err(EgressError::Refused {
                    host: host.to_string(),
                    kind,
                });
            }
        }
        Ok(())
    }

    /// Resolves `host:port` and keeps the addresses the policy allows (an error when none).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        self.check_host(host)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = match tokio::net::lookup_host((bare, port)).await {
            Ok(addrs) => addrs.collect(),
            Err(_) => Vec::new(),
        };
        let allowed: Vec<SocketAddr> = found
            .iter()
            .copied()
            .filter(|a| self.refusal(a.ip()).is_none())
            .collect();
        match (allowed.is_empty(), found.first()) {
            (false, _) => Ok(allowed),
            (true, Some(first)) => Err(match self.refusal(first.ip()) {
                Some(kind) => EgressError::Refused {
                    host: host.to_string(),
                    kind,
                },
                None => EgressError::Unresolved {
                    host: host.to_string(),
                },
            }),
            (true, None) => Err(EgressError::Unresolved {
                host: host.to_string(),
            }),
        }
    }

    /// A DNS resolver for reqwest that applies this policy to every resolution.
    pub fn resolver(&self) -> Arc<Resolver> {
        Arc::new(Resolver {
            policy: self.clone(),
        })
    }
}

/// reqwest's resolver under an [`EgressPolicy`]. reqwest does not resolve address literals;
/// check those with [`EgressPolicy::check_host`] before each request.
#[derive(Debug)]
pub struct Resolver {
    policy: EgressPolicy,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs = policy
                .resolve(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn special_addresses_are_refused_unless_their_network_is_allowed() {
        let policy = EgressPolicy::default();
        for refused in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(policy.refusal(ip).is_some(), "{refused}");
        }
        for allowed in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(policy.refusal(allowed.parse().unwrap()), None, "{allowed}");
        }
        let policy = EgressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(policy.refusal("127.0.0.2".parse().unwrap()), None);
        assert_eq!(policy.refusal("::ffff:127.0.0.1".parse().unwrap()), None);
        assert!(policy.refusal("169.254.169.254".parse().unwrap()).is_some());
    }

    #[test]
    fn hosts_are_checked_as_literals_and_after_resolution() {
        let policy = EgressPolicy::default();
        assert!(policy.check_host("[::1]").is_err());
        assert!(policy.check_host("localhost").is_err());
        assert!(policy.check_host("example.org").is_ok());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // A name that resolves to loopback is refused after resolution.
        let refused = runtime.block_on(policy.resolve("localhost.", 80));
        assert!(refused.is_err(), "{refused:?}");
        let open =
            EgressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        let addrs = runtime.block_on(open.resolve("localhost", 80)).unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Net = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("169.254.169.254".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("nonsense".parse::<Net>().is_err());
        let one: Net = "fd00::1".parse().unwrap();
        assert!(one.contains("fd00::1".parse().unwrap()));
        assert!(!one.contains("fd00::2".parse().unwrap()));
    }
}
