//! Everything Core and Worker say to each other.
//!
//! Few remotable actors exist and nothing else crosses the network: the worker's gateway (it
//! receives [`WorkerMessage`] and joins [`WORKER_GROUP`]), the core's registry (it receives
//! [`CoreMessage`] and joins [`CORE_GROUP`]) and the core's service manager (it receives
//! [`ServicesMessage`] and joins [`SERVICES_GROUP`]). Per-invocation work stays local to a
//! node. Payloads travel as [`Wire`] values (see [`crate::codec`]); variants are matched by name on
//! the wire, so renaming one is a protocol change.

use ractor::RpcReplyPort;
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use crate::codec::Wire;

/// Process group of worker gateways; the Core's registry monitors it to see joins and leaves.
pub const WORKER_GROUP: &str = "funless.workers";
/// Process group of the Core's registry; workers push their status to its members.
pub const CORE_GROUP: &str = "funless.core";

/// Largest cluster frame any FunLess node accepts, bytes. Code larger than one
/// [`CODE_CHUNK_BYTES`] never travels in one frame (see [`Code`]).
pub const MAX_FRAME_BYTES: u64 = 32 * 1024 * 1024;

/// Largest piece of code one message carries. Larger code is sent as [`CodeChunk`]s, one at a
/// time and each acknowledged, so a 64 MiB function costs the sender and the link about one
/// chunk of memory per worker at a time, not several copies of the whole code.
pub const CODE_CHUNK_BYTES: usize = 1024 * 1024;

/// Bytes of code all transfers together may hold staged on a worker. The Core's upload limit
/// may not exceed it (core/src/http.rs), so any upload can be staged on an idle worker.
pub const MAX_STAGED_CODE_BYTES: u64 = 256 * 1024 * 1024;

/// Code carried by a message: inline when it fits one chunk, else assembled on the worker from
/// the [`CodeChunk`]s sent just before under `transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    /// The code itself (at most [`CODE_CHUNK_BYTES`]).
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Code staged on the worker by [`WorkerMessage::Chunk`] messages.
    Staged {
        /// The transfer the chunks were sent under (chosen by the sender, unique per send).
        transfer: u64,
        /// The code's length, bytes.
        len: u64,
    },
}

impl Code {
    /// The code's length, bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(bytes) => bytes.len() as u64,
            Self::Staged { len, .. } => *len,
        }
    }

    /// True for empty inline code.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One piece of code larger than a chunk, staged on the worker until a [`Code::Staged`]
/// message names its transfer. Chunks of one transfer arrive in order (each is acknowledged
/// before the next is sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeChunk {
    /// The transfer (chosen by the sender, unique per send).
    pub transfer: u64,
    /// Length of the whole code, bytes.
    pub total: u64,
    /// Where this chunk starts in the code.
    pub offset: u64,
    /// The chunk's bytes (at most [`CODE_CHUNK_BYTES`]).
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Names a function and the exact code version meant to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FunctionId {
    /// Module name.
    pub module: String,
    /// Function name.
    pub name: String,
    /// SHA-256 of the code, lower-case hex. A worker runs code only under its own hash.
    pub hash: String,
}

impl std::fmt::Display for FunctionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.module, self.name)
    }
}

/// Run a function (steps 7 and 10b of the paper's flow).
#[derive(Clone, Serialize, Deserialize)]
pub struct InvokeRequest {
    /// The function and code version.
    pub function: FunctionId,
    /// Arguments, JSON text.
    pub args_json: String,
    /// The code, when the Core re-sends after a [`InvokeReply::NoCode`].
    pub code: Option<Code>,
    /// Wall-clock limit of the run, milliseconds.
    pub timeout_ms: u64,
    /// Largest linear memory the run may grow to, bytes (the worker's own cap applies too).
    pub memory_limit_bytes: u64,
    /// Hosts (`host` or `host:port`) the function may reach over HTTP; empty: none.
    pub allow_hosts: Vec<String>,
    /// The function's configuration, given to it as environment variables (an object for
    /// JavaScript); shared with the Core's cached copy, not copied per invocation.
    pub env: std::sync::Arc<[(String, String)]>,
}

/// Everything but the environment's values (they may be secrets) and the code's bytes.
impl std::fmt::Debug for InvokeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeRequest")
            .field("function", &self.function)
            .field("args_bytes", &self.args_json.len())
            .field("code", &self.code.as_ref().map(|_| ".."))
            .field("timeout_ms", &self.timeout_ms)
            .field("memory_limit_bytes", &self.memory_limit_bytes)
            .field("allow_hosts", &self.allow_hosts)
            .field(
                "env",
                &self.env.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How an invocation found its code on the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeSource {
    /// Compiled module already in memory (warm).
    Memory,
    /// Precompiled module loaded from the worker's disk (disk-warm).
    Disk,
    /// Compiled just now from code sent with the request or pushed earlier (cold).
    Compiled,
}

/// A successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvokeOutput {
    /// The function's result: always valid JSON text.
    pub output_json: String,
    /// Lines the function logged (`__console_log`, stderr).
    pub logs: Vec<String>,
    /// Time spent in Wasmtime (instantiate and run), microseconds.
    pub run_us: u64,
    /// From the worker's gateway receiving the request to its invoker actor starting,
    /// microseconds.
    pub spawn_us: u64,
    /// From the worker's gateway receiving the request to the answer being ready, microseconds
    /// (the worker's whole share of the call; the rest of the Core's round trip is the
    /// cluster hop).
    pub worker_us: u64,
    /// Where the code came from.
    pub source: CodeSource,
}

/// The worker's answer to [`InvokeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvokeReply {
    /// The function ran and returned a result.
    Done(InvokeOutput),
    /// The worker lacks this code version: re-send the request with the code (step 9b).
    NoCode,
    /// The invocation failed.
    Failed(InvokeError),
}

/// Why an invocation failed. "The guest did something wrong" and "the host failed" stay apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum InvokeError {
    /// The function reported an error (`__insert_error`, or a non-zero exit of a WASI command).
    #[error("function error: {message}")]
    Function {
        /// What the function said (for a command: exit code and the tail of stderr).
        message: String,
        /// Lines it logged.
        logs: Vec<String>,
    },
    /// The guest trapped (out-of-bounds access, unreachable, stack overflow, ...).
    #[error("function trapped: {message}")]
    Trap {
        /// Wasmtime's description.
        message: String,
    },
    /// The run exceeded its time limit.
    #[error("function timed out after {timeout_ms} ms")]
    Timeout {
        /// The limit.
        timeout_ms: u64,
    },
    /// The guest tried to grow its memory past its limit.
    #[error("function exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The limit.
        limit_bytes: u64,
    },
    /// The function's result (or stdout) was larger than allowed.
    #[error("function output exceeds the limit of {limit_bytes} bytes")]
    OutputTooLarge {
        /// The limit.
        limit_bytes: u64,
    },
    /// The function finished without producing a result the platform can use.
    #[error("function gave no usable result: {message}")]
    BadOutput {
        /// What is wrong with it.
        message: String,
    },
    /// The code sent with the request does not compile or link here.
    #[error("code cannot run: {message}")]
    Code {
        /// Why.
        message: String,
    },
    /// The code sent does not match the hash it was sent under.
    #[error("code hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// Hash in the request.
        expected: String,
        /// Hash of the bytes received.
        actual: String,
    },
    /// Every instance slot of the worker is in use: the call did not start, and may go to
    /// another worker.
    #[error("the worker's {slots} instance slots are all in use")]
    NoSlot {
        /// The worker's instance slots.
        slots: u32,
    },
    /// The request could not be decoded or the worker failed internally.
    #[error("worker error: {message}")]
    Worker {
        /// Why.
        message: String,
    },
    /// The actor running the invocation crashed (a panic, or it was killed); its supervisor
    /// answered for it.
    #[error("the invocation crashed: {message}")]
    Crashed {
        /// The crash's reason.
        message: String,
    },
}

/// Compile and keep this code ready (broadcast on create and update, step 3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachePush {
    /// The function and code version.
    pub function: FunctionId,
    /// The code.
    pub code: Code,
}

/// The worker's answer to [`CachePush`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheReply {
    /// Compiled and cached.
    Cached {
        /// Compilation time, milliseconds (0 when it was cached already).
        compile_ms: u64,
    },
    /// Refused or failed.
    Failed {
        /// Why.
        reason: String,
    },
}

impl CacheReply {
    /// When the worker refused the code itself (it does not compile there: an
    /// [`InvokeError::Code`]), the reason without its prefix; `None` when the worker could not
    /// take it for another reason (busy, lost, no JavaScript engine).
    pub fn code_refusal(reason: &str) -> Option<&str> {
        reason.strip_prefix("code cannot run: ")
    }
}

/// Drop these code versions from the cache (function deleted or replaced).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evict {
    /// Code hashes to drop.
    pub hashes: Vec<String>,
}

/// A worker's state, pushed to the Core periodically and answered on request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Unique worker name.
    pub name: String,
    /// Memory of the machine (or cgroup limit), bytes.
    pub memory_total: u64,
    /// Memory available for more work, bytes.
    pub memory_free: u64,
    /// Invocations running now.
    pub in_flight: u64,
    /// Instances that may run at once (the pooling allocator's slots); 0: no fixed number
    /// (on-demand allocation, bounded by memory).
    pub slots_total: u32,
    /// Of those, free now.
    pub slots_free: u32,
    /// Code hashes held compiled in memory, most recently used first.
    pub cached: Vec<String>,
    /// The in-memory code cache.
    pub cache: CacheReport,
    /// Instance allocator in use (`pooling (N slots)` or `on-demand`).
    pub allocator: String,
    /// Operator-given tags (`--tag`), which scheduling scripts can name like worker names.
    pub tags: Vec<String>,
    /// CPUs the worker may use.
    pub cpus: u32,
    /// One-minute load average per CPU, in thousandths (1000: every CPU busy).
    pub cpu_load_permille: u32,
}

/// State of a worker's in-memory code cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Bytes of compiled code held.
    pub bytes: u64,
    /// Byte threshold.
    pub capacity: u64,
    /// Lookups that found the code.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Modules evicted to stay under the threshold.
    pub evictions: u64,
}

/// Messages to a worker's gateway.
#[derive(RactorClusterMessage)]
pub enum WorkerMessage {
    /// Run a function; answered when it finishes. The gateway never waits for the run itself.
    #[rpc]
    Invoke(Wire<InvokeRequest>, RpcReplyPort<Wire<InvokeReply>>),
    /// Compile and cache code; answered when ready.
    #[rpc]
    Cache(Wire<CachePush>, RpcReplyPort<Wire<CacheReply>>),
    /// Stage one chunk of code larger than [`CODE_CHUNK_BYTES`]; answered once it is held.
    #[rpc]
    Chunk(Wire<CodeChunk>, RpcReplyPort<Wire<Result<(), String>>>),
    /// Drop code from the cache.
    Evict(Wire<Evict>),
    /// Report the worker's status now.
    #[rpc]
    Status(RpcReplyPort<Wire<WorkerStatus>>),
    /// Describe the worker's supervision tree (the live view of `GET /v1/admin/tree`).
    #[rpc]
    Tree(RpcReplyPort<Wire<TreeNode>>),
    /// Fault injection: kill the actor at this path of the worker's tree (`gateway`,
    /// `invocations/*`). Refused unless the worker was started with fault injection on.
    #[rpc]
    Crash(Wire<String>, RpcReplyPort<Wire<Result<String, String>>>),
    /// Start (or replace) a replica of a long-running service under the worker's `services`
    /// supervisor; answered once its actor runs (its code is compiled inside it, and a failure
    /// there is reported as the replica's exit).
    #[rpc]
    StartReplica(Wire<ReplicaStart>, RpcReplyPort<Wire<Result<(), String>>>),
    /// Stop the replicas that match; answers how many were stopped.
    #[rpc]
    StopReplicas(Wire<ReplicaStop>, RpcReplyPort<Wire<u32>>),
    /// The newest output lines a service's replicas left on this worker.
    #[rpc]
    ReplicaLogs(Wire<LogsRequest>, RpcReplyPort<Wire<Vec<LogLine>>>),
}

/// One actor of a supervision tree, as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Its name, unique among its siblings (a path segment of [`WorkerMessage::Crash`]).
    pub name: String,
    /// What it does.
    pub role: String,
    /// `supervisor` or `worker` (OTP's child types).
    pub kind: String,
    /// For supervisors: `one_for_one`, `rest_for_one` or `one_for_all`.
    pub strategy: Option<String>,
    /// `permanent`, `transient` or `temporary`: when its supervisor restarts it.
    pub restart: String,
    /// `running`, or `stopped` while its supervisor is between stopping and restarting it.
    pub state: String,
    /// Times its supervisor restarted it.
    pub restarts: u64,
    /// Time since its current incarnation started, milliseconds.
    pub uptime_ms: u64,
    /// Short-lived actors linked to it now (an invocation supervisor's invokers).
    pub linked: u64,
    /// Its children, for supervisors.
    pub children: Vec<TreeNode>,
}

/// Process group of the Core's service manager; workers send it their replicas' exits and
/// lists of what they run ([`ServicesMessage`]).
pub const SERVICES_GROUP: &str = "funless.services";

/// One incarnation of one replica of a service. The Core gives every start a new
/// `incarnation`, so a late report about an earlier one is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplicaId {
    /// The service's stored name.
    pub service: String,
    /// Which replica (0-based).
    pub index: u32,
    /// Unique per start.
    pub incarnation: u64,
}

impl std::fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}#{}", self.service, self.index, self.incarnation)
    }
}

/// Run a replica of a service (a WASI command or `wasi:cli/run` component) until it exits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStart {
    /// Which replica and incarnation.
    pub id: ReplicaId,
    /// SHA-256 of the code, lower-case hex.
    pub hash: String,
    /// The code.
    pub code: Code,
    /// Largest linear memory the replica may grow to, bytes.
    pub memory_limit_bytes: u64,
    /// Hosts the replica may reach (components: wasi:http and sockets); empty: none.
    pub allow_hosts: Vec<String>,
    /// Environment variables of the program (its configuration).
    pub env: Vec<(String, String)>,
    /// `permanent`, `transient` or `temporary`, for the tree view.
    pub restart: String,
    /// Times the Core restarted this replica before, for the tree view.
    pub restarts: u64,
    /// How long a stopping replica has to end by itself once its stdin reaches end-of-file,
    /// milliseconds, before it is killed.
    pub stop_grace_ms: u64,
}

/// Which replicas to stop: every replica of `service`, or one, or one incarnation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStop {
    /// The service's stored name.
    pub service: String,
    /// Only this replica.
    pub index: Option<u32>,
    /// Only this incarnation.
    pub incarnation: Option<u64>,
    /// Forget the replicas' logs too (the service was deleted).
    pub forget_logs: bool,
}

/// Asks for a service's newest output lines on one worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsRequest {
    /// The service's stored name.
    pub service: String,
    /// Most lines per replica.
    pub lines: u32,
}

/// One line a replica wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Which replica.
    pub index: u32,
    /// Its incarnation.
    pub incarnation: u64,
    /// When the line was written, unix milliseconds.
    pub at_ms: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line, without its newline (cut at 4 KiB).
    pub line: String,
}

/// A replica ended on a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaExited {
    /// The worker it ran on.
    pub worker: String,
    /// Which replica and incarnation.
    pub id: ReplicaId,
    /// A normal exit (`_start` returned, or exit code 0), which a `transient` service does
    /// not restart.
    pub normal: bool,
    /// How it ended: `exit code 1: ...`, a trap, `memory limit`, `killed`, ...
    pub reason: String,
}

/// Everything a worker runs, sent every report interval: the Core adopts what it does not
/// know yet (after its own restart) and stops what it no longer wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The worker.
    pub worker: String,
    /// Its running replicas and their uptimes, milliseconds.
    pub running: Vec<(ReplicaId, u64)>,
}

/// Messages to the Core's service manager.
#[derive(RactorClusterMessage)]
pub enum ServicesMessage {
    /// A replica ended.
    Exited(Wire<ReplicaExited>),
    /// What a worker runs now.
    Running(Wire<ReplicaReport>),
    /// A start request finished (from the manager's own start tasks): `Err` when the worker
    /// did not take the replica.
    Started(Wire<(String, ReplicaId, Result<(), String>)>),
    /// The stored services changed (from the API): read them again; answered once the
    /// manager acts on what it read (starts new services, forgets deleted ones).
    #[rpc]
    Reload(RpcReplyPort<Wire<Result<(), String>>>),
    /// Time to look at placements, back-offs and lost workers.
    Tick,
}

/// Messages to the Core's registry.
#[derive(RactorClusterMessage)]
pub enum CoreMessage {
    /// A worker's periodic status.
    Status(Wire<WorkerStatus>),
}

#[cfg(test)]
mod code_refusal_tests {
    use super::{CacheReply, InvokeError};

    #[test]
    fn a_code_error_reads_as_a_refusal_and_nothing_else_does() {
        let code = InvokeError::Code {
            message: "SyntaxError: unexpected token".into(),
        };
        assert_eq!(
            CacheReply::code_refusal(&code.to_string()),
            Some("SyntaxError: unexpected token")
        );
        let worker = InvokeError::Worker {
            message: "no engine".into(),
        };
        assert_eq!(CacheReply::code_refusal(&worker.to_string()), None);
    }
}

#[cfg(test)]
mod code_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::codec::{decode, encode};

    #[test]
    fn code_and_chunks_travel_unchanged_and_a_chunk_fits_a_frame() {
        let chunk = CodeChunk {
            transfer: u64::MAX,
            total: 3 * CODE_CHUNK_BYTES as u64,
            offset: CODE_CHUNK_BYTES as u64,
            bytes: (0..CODE_CHUNK_BYTES).map(|i| i as u8).collect(),
        };
        let encoded = encode(&chunk).unwrap();
        assert!(encoded.len() < CODE_CHUNK_BYTES + 64, "{}", encoded.len());
        assert!((encoded.len() as u64) < MAX_FRAME_BYTES);
        let back: CodeChunk = decode(&encoded).unwrap();
        assert_eq!(
            (back.transfer, back.total, back.offset),
            (chunk.transfer, chunk.total, chunk.offset)
        );
        assert_eq!(back.bytes, chunk.bytes);
        for code in [
            Code::Inline(b"\0asm".to_vec()),
            Code::Staged {
                transfer: 9,
                len: 60 << 20,
            },
        ] {
            assert_eq!(decode::<Code>(&encode(&code).unwrap()).unwrap(), code);
        }
    }
}
