//! What the in-process Core tests share: a Core's settings on loopback ports chosen by the
//! system, SQLite in `dir`, loopback allowed as an egress target.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use funless_core::CoreConfig;

/// A Core with `cookie`, declaring workers lost after `heartbeat_timeout`.
pub(crate) fn config(dir: &Path, cookie: &str, heartbeat_timeout: Duration) -> CoreConfig {
    CoreConfig {
        data_dir: dir.to_path_buf(),
        database_url: None,
        sqlite_sync: funless_core::store::SqliteSync::default(),
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        cluster_listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
        cluster_port: 0,
        node_name: "core".into(),
        cookie: cookie.into(),
        heartbeat_timeout,
        max_timeout_ms: 60_000,
        keep_versions: funless_core::platform::DEFAULT_KEEP_VERSIONS,
        secrets_key: None,
        tls: None,
        activations: Default::default(),
        http: Default::default(),
        egress: funless_core::egress::EgressPolicy::allowing(vec![
            "127.0.0.0/8".parse().expect("a CIDR"),
        ]),
        quotas: Default::default(),
        gossip: None,
        fault_injection: false,
        intensity: Default::default(),
        extra_children: Vec::new(),
    }
}
