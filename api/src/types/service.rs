//! Bodies of the service routes (`/v1/svc`): long-running programs kept alive by the platform
//! under an OTP-style child spec.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A service's child spec as uploaded (the `spec` field of the form); every field is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpecRequest {
    /// `permanent` (default: always restarted), `transient` (restarted only after an abnormal
    /// exit: a trap, a non-zero exit code, a lost worker) or `temporary` (never).
    pub restart: Option<String>,
    /// Most restarts within `period_ms` (default 3); one more and the service is `failed`.
    pub max_restarts: Option<u32>,
    /// The window of `max_restarts`, milliseconds (default 5000).
    pub period_ms: Option<u64>,
    /// Delay before the first restart of a replica, milliseconds (default 200); it doubles
    /// with each restart in a row, up to 30 s. A replica moved off a lost worker starts at once.
    pub backoff_ms: Option<u64>,
    /// How many copies run, on different workers when possible (default 1, at most 16).
    pub replicas: Option<u32>,
    /// Memory each replica may use, bytes (default 64 MiB); workers must have it free.
    pub memory_bytes: Option<u64>,
    /// Hosts (`host` or `host:port`) the program may reach (components: wasi:http, sockets).
    pub allow_hosts: Option<Vec<String>>,
    /// Environment variables of the program (its configuration).
    pub env: Option<BTreeMap<String, String>>,
    /// How long a replica asked to stop (delete, update) may take to end by itself,
    /// milliseconds (default 1000, at most 4000): its stdin, open and empty while it runs,
    /// reaches end-of-file, and once the grace period is over it is killed.
    pub stop_grace_ms: Option<u64>,
    /// Run only on workers with this name or `--tag` (default: any worker).
    pub tag: Option<String>,
}

/// A service's child spec with every default filled in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ServiceSpec {
    /// `permanent`, `transient` or `temporary`.
    pub restart: String,
    /// Most restarts within `period_ms`.
    pub max_restarts: u32,
    /// The window of `max_restarts`, milliseconds.
    pub period_ms: u64,
    /// First restart delay of a replica, milliseconds (doubling, up to 30 s).
    pub backoff_ms: u64,
    /// How many copies run.
    pub replicas: u32,
    /// Memory per replica, bytes.
    pub memory_bytes: u64,
    /// Hosts the program may reach.
    pub allow_hosts: Vec<String>,
    /// Environment variables of the program.
    pub env: BTreeMap<String, String>,
    /// How long a stopping replica may take to end after its stdin closes, milliseconds.
    pub stop_grace_ms: u64,
    /// Only workers with this name or tag run it.
    pub tag: Option<String>,
}

/// One replica of a service (`GET /v1/svc/{name}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ReplicaInfo {
    /// Which replica (0-based).
    pub index: u32,
    /// `pending` (waiting for a worker), `starting`, `running`, `backoff` (waiting to be
    /// restarted), `exited` (ended and not restarted, by its restart type) or `stopped` (the
    /// service failed).
    pub state: String,
    /// The worker it runs (or last ran) on.
    pub worker: Option<String>,
    /// Times it was restarted.
    pub restarts: u64,
    /// How long its current run has lasted, milliseconds (running replicas).
    pub uptime_ms: Option<u64>,
    /// How its last run ended (`exit code 1`, `trapped: ...`, `worker w1 lost`, ...).
    pub last_exit: Option<String>,
}

/// A service (`GET /v1/svc/{name}`, and the answer of a create).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ServiceInfo {
    /// Its name.
    pub name: String,
    /// SHA-256 of its code.
    pub hash: String,
    /// `wasi_command` or `wasi_component`.
    pub abi: String,
    /// Size of its code, bytes.
    pub size: u64,
    /// `running` (its replicas are kept alive), `exited` (every replica ended and, by its
    /// restart type, is not restarted) or `failed` (its restart intensity was exceeded;
    /// nothing runs).
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Its child spec.
    pub spec: ServiceSpec,
    /// Its replicas.
    pub replicas: Vec<ReplicaInfo>,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// One output line of a service's replica (`GET /v1/svc/{name}/logs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ServiceLogLine {
    /// The replica that wrote it.
    pub replica: u32,
    /// The worker it ran on.
    pub worker: String,
    /// When, unix milliseconds.
    pub at_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line.
    pub line: String,
}
