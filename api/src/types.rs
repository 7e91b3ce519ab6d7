//! Request and response bodies of the REST API, shared by the server and the `fl` CLI so the two
//! cannot drift. Shapes follow FunLess: successful answers wrap their payload in `{"data": ...}`,
//! errors are `{"errors": {"detail": "..."}}`.

use serde::{Deserialize, Serialize};

mod service;
pub use service::{ReplicaInfo, ServiceInfo, ServiceLogLine, ServiceSpec, ServiceSpecRequest};
mod version;
pub use version::{
    CanaryInfo, CanarySplit, CanaryTally, ConfigChange, ConfigInfo, RollbackRequest, SecretInfo,
    SecretRequest, VersionInfo,
};

/// `{"data": T}`: the envelope of every successful answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

impl<T> Data<T> {
    /// Wraps a payload.
    pub fn new(data: T) -> Self {
        Self { data }
    }
}

/// `{"errors": {"detail": "..."}}`: the envelope of every error answer, exactly FunLess's
/// (FunLess's own `fl` refuses error bodies with any other field). What kind of failure a 422
/// is travels in the [`REASON_HEADER`] response header, which FunLess clients ignore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub errors: ErrorMessage,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorMessage {
    /// Human-readable description.
    pub detail: String,
}

/// Response header naming the kind of a function's failure (422): `function_error`, `trap`,
/// `timeout`, `memory_limit`, `output_too_large` or `bad_output`.
pub const REASON_HEADER: &str = "x-funless-error-reason";

/// Response header of an invocation's answer (and of a function's failure, 422): the number
/// of the version that ran.
pub const VERSION_HEADER: &str = "x-funless-version";

/// Response header of an invocation's answer when its function has a canary: the side of the
/// split it took, `stable` (the current version) or `canary`.
pub const TRACK_HEADER: &str = "x-funless-track";

impl ErrorBody {
    /// An error body with this message.
    pub fn new(detail: impl Into<String>) -> Self {
        Self {
            errors: ErrorMessage {
                detail: detail.into(),
            },
        }
    }
}

/// The error of a finished activation: the answer's detail and the failure's kind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Human-readable description.
    pub detail: String,
    /// For a function's failure (422), what kind it was (as [`REASON_HEADER`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Something identified by name (modules, functions, subjects in listings).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Named {
    /// The name.
    pub name: String,
}

/// Body of `POST /v1/fn` and `PUT /v1/fn/:mod`: `{"module": {"name": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModuleRequest {
    /// The module.
    pub module: Named,
}

/// Body of `POST /v1/admin/subjects`: `{"subject": {"name": "..."}}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    /// The subject.
    pub subject: Named,
}

/// `POST /v1/admin/nodes`: the cluster address of a node for the Core to connect to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeRequest {
    /// `host:port` of the node's cluster port (a worker's `--cluster-port`).
    pub address: String,
}

/// A node the Core connected to by hand.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NodeConnected {
    /// The address as given.
    pub address: String,
    /// The node's name (a worker's name).
    pub node: String,
}

/// A newly created subject: its token is shown this once and stored only as a hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CreatedSubject {
    /// Subject name.
    pub name: String,
    /// Bearer token for the subject.
    pub token: String,
}

/// A module with its functions (`GET /v1/fn/:mod`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ModuleInfo {
    /// Module name.
    pub name: String,
    /// Its functions.
    pub functions: Vec<Named>,
}

/// Optional `metadata` part of a function upload (FunLess's fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FunctionMetadata {
    /// A free tag, used by scheduling scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Memory the function needs, bytes (every memory figure of the API is in bytes; FunLess's
    /// scheduler, too, compares it with the worker's available memory in bytes). The
    /// scheduler only picks a worker with at least this much free memory. `-1`, FunLess's
    /// default, is the same as leaving it out: [`DEFAULT_CAPACITY_BYTES`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "capacity"
    )]
    #[cfg_attr(feature = "server", schema(value_type = Option<i64>, minimum = -1))]
    pub capacity: Option<u64>,
    /// Whether an invocation may run again on another worker when its worker is lost
    /// mid-call (default true). Set false for functions with side effects that must not
    /// happen twice: their callers get a 503 instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Time limit of one invocation, milliseconds (default [`DEFAULT_TIMEOUT_MS`], at most
    /// what the operator allows with the Core's `--max-timeout-ms`). A run past it is a 422
    /// with reason `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Hosts the function may reach with `__http_request`, as `host` or `host:port`
    /// (default: none; every other destination is refused and logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_hosts: Option<Vec<String>>,
}

/// `capacity`: a byte count, or FunLess's `-1` for "not given".
fn capacity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None | Some(-1) => Ok(None),
        Some(n) => u64::try_from(n).map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "capacity must be a number of bytes, or -1 for the default, not {n}"
            ))
        }),
    }
}

/// Time limit of a function that declares none, milliseconds (FunLess's 60 s).
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// Memory need of a function that declares none, bytes (64 MiB: room for a typical Rust or
/// JavaScript function's linear memory and stack).
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// How a function's code is called, detected from the module at upload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Abi {
    /// Exports `__invoke` and imports `fl_imps` (the original FunLess ABI).
    Funless,
    /// A WASI command (`_start`): JSON args on stdin, JSON result on stdout.
    WasiCommand,
    /// A WASI 0.2 component exporting `wasi:cli/run`: the same stdin/stdout contract, plus
    /// `wasi:http` and `wasi:sockets` within the function's egress allow-list.
    WasiComponent,
    /// JavaScript source defining `fl_main(input)` (or a default export), run by the
    /// workers' shared QuickJS engine.
    #[serde(rename = "javascript")]
    JavaScript,
}

impl Abi {
    /// The name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Funless => "funless",
            Abi::WasiCommand => "wasi_command",
            Abi::WasiComponent => "wasi_component",
            Abi::JavaScript => "javascript",
        }
    }

    /// Parses [`Abi::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "funless" => Some(Abi::Funless),
            "wasi_command" => Some(Abi::WasiCommand),
            "wasi_component" => Some(Abi::WasiComponent),
            "javascript" => Some(Abi::JavaScript),
            _ => None,
        }
    }
}

/// The language of uploaded code, when the upload names it (form field `language`); without
/// it the Core tells WebAssembly (its magic bytes) from JavaScript source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// A WebAssembly module or component.
    Wasm,
    /// JavaScript source.
    JavaScript,
}

impl Language {
    /// Parses the form field: `wasm`, `js` or `javascript` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "wasm" | "webassembly" => Some(Language::Wasm),
            "js" | "javascript" => Some(Language::JavaScript),
            _ => None,
        }
    }
}

/// A function as shown by `GET /v1/fn/:mod/:fn`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct FunctionInfo {
    /// Function name.
    pub name: String,
    /// Module name.
    pub module: String,
    /// SHA-256 of the code, hex.
    pub hash: String,
    /// Detected ABI.
    pub abi: Abi,
    /// Code size in bytes.
    pub size: u64,
    /// Metadata as stored (capacity filled with its default).
    pub metadata: FunctionMetadata,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last update time, RFC 3339 UTC.
    pub updated_at: String,
    /// Number of the current version (`GET .../versions` lists the kept ones).
    #[serde(default)]
    pub version: u64,
    /// Its event connectors and their state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connectors: Vec<ConnectorInfo>,
    /// Its data sinks and their state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkInfo>,
    /// Its canary, when one runs: a share of its invocations run another kept version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySplit>,
}

/// The state of one data sink of a function.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SinkInfo {
    /// `couchdb` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where results are POSTed.
    pub url: String,
    /// Results delivered.
    pub delivered: u64,
    /// Results queued and not delivered yet.
    pub pending: u64,
    /// Delivery attempts that failed and were retried.
    pub failed_attempts: u64,
    /// Results refused by the sink (4xx) or dropped because the queue was full.
    pub dropped: u64,
    /// The last failure, until a delivery succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What the workers did with code sent to them on create or update.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct BroadcastReport {
    /// Whether the answer waited for the workers (`wait_for_workers`).
    pub waited: bool,
    /// Workers that compiled and cached the code.
    pub cached: Vec<String>,
    /// Workers that failed, with why.
    pub failed: Vec<WorkerFailure>,
}

/// One worker's failure to cache code.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerFailure {
    /// The worker.
    pub worker: String,
    /// Why.
    pub reason: String,
}

/// Answer of function create and update.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct FunctionCreated {
    /// Function name.
    pub name: String,
    /// SHA-256 of the code, hex.
    pub hash: String,
    /// Detected ABI.
    pub abi: Abi,
    /// Number of the version this made current (or, with `canary`, made the canary).
    #[serde(default)]
    pub version: u64,
    /// The function's canary, when this upload started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySplit>,
    /// What the workers did with the code.
    pub workers: BroadcastReport,
    /// The function's event connectors shortly after they started (when it has events): a
    /// connector not connected yet makes the answer a 207; it keeps retrying.
    #[serde(
        rename = "events_metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub events: Option<Vec<ConnectorInfo>>,
    /// The function's data sinks (when it has sinks).
    #[serde(
        rename = "sinks_metadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sinks: Option<Vec<SinkInfo>>,
}

/// The live state of one event connector of a function.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ConnectorInfo {
    /// `mqtt`, `nats` or `cron`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Broker and topic, server and subject, or the schedule.
    pub source: String,
    /// Connected (for cron: scheduled) now.
    pub connected: bool,
    /// Why it last failed, if it is not connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Messages (or schedule ticks) that started an invocation.
    pub messages: u64,
    /// Connections lost and retried since it started.
    pub reconnects: u64,
}

/// Body of an invocation: `{"args": {...}, "scheduling": {...}}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// Arguments handed to the function as JSON (default `{}`).
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// `false`: answer 202 with an activation id at once and run in the background (also
    /// `?blocking=false`); default: wait for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking: Option<bool>,
    /// How to choose the worker (FunLess's field); default: the platform's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduling: Option<Scheduling>,
}

/// FunLess's scheduling choice of an invocation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Scheduling {
    /// `app` (an APP script named by `script`) or `none` (the platform's policy; the default,
    /// as in FunLess's OpenAPI document).
    #[serde(default)]
    pub language: SchedulingLanguage,
    /// The APP script's name (required with `app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
}

/// Scheduling languages.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SchedulingLanguage {
    /// The platform's default policy.
    #[default]
    None,
    /// A FunLess APP script.
    App,
}

/// A FunLess APP scheduling script, as shown by `GET /v1/scripts/app/:name` and answered by
/// its creation: FunLess's `id`, `name` and parsed `script`, plus the YAML as uploaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct AppScriptInfo {
    /// Store id.
    pub id: i64,
    /// Script name.
    pub name: String,
    /// The parsed script, in FunLess's shape: `{"tags": {"<tag>": {"blocks": [{"workers",
    /// "strategy", "affinity": {"affinity", "antiaffinity"}, "invalidate":
    /// {"capacity_used", "max_concurrent_invocations"}}], "followup"}}}` (limits not given
    /// are `"infinity"`).
    pub script: serde_json::Value,
    /// The YAML source as uploaded.
    pub source: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
}

/// A worker as listed by `GET /v1/workers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    /// Worker name (unique in the cluster).
    pub name: String,
    /// Total memory of the worker's machine, bytes.
    pub memory_total: u64,
    /// Memory available, bytes.
    pub memory_free: u64,
    /// Invocations running on it now.
    pub in_flight: u64,
    /// Code hashes it holds compiled in memory, most recently used first.
    pub cached: Vec<String>,
    /// Bytes of compiled code it holds in memory.
    pub cache_bytes: u64,
    /// Its cache's byte threshold.
    pub cache_capacity: u64,
    /// Modules it evicted to stay under the threshold.
    pub cache_evictions: u64,
    /// Its instance allocator (`pooling (N slots)` or `on-demand`).
    pub allocator: String,
    /// `ready`, `joining` (no status yet) or `lost` (silent past the heartbeat time-out).
    pub state: String,
    /// Its operator-given tags.
    pub tags: Vec<String>,
    /// CPUs it may use.
    pub cpus: u32,
    /// One-minute load per CPU, thousandths.
    pub cpu_load_permille: u32,
}

/// One actor of a supervision tree (`GET /v1/admin/tree`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ActorNode {
    /// Its name, unique among its siblings; joined with `/` it is the path
    /// `POST /v1/admin/crash` takes.
    pub name: String,
    /// What it does.
    pub role: String,
    /// `supervisor` or `worker` (OTP's child types).
    pub kind: String,
    /// For supervisors: `one_for_one`, `rest_for_one` or `one_for_all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// `permanent`, `transient` or `temporary`.
    pub restart: String,
    /// `running`, or `stopped` between a stop and its restart.
    pub state: String,
    /// Times its supervisor restarted it.
    pub restarts: u64,
    /// Time since it (re)started, milliseconds.
    pub uptime_ms: u64,
    /// Short-lived actors linked to it now (running invokers, for the invocation supervisor).
    pub linked: u64,
    /// Its children.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "server", schema(no_recursion))]
    pub children: Vec<ActorNode>,
}

/// A worker's tree, as gathered over the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerTree {
    /// The worker.
    pub name: String,
    /// Its state in the Core's registry.
    pub state: String,
    /// Its tree, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<ActorNode>,
    /// Why its tree is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The supervision trees of the cluster: the Core's and each worker's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ClusterTree {
    /// The Core's tree.
    pub core: ActorNode,
    /// Every connected worker's.
    pub workers: Vec<WorkerTree>,
}

/// Body of `POST /v1/admin/crash`: which actor to kill (fault injection).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CrashRequest {
    /// `core` (the default) or a worker's name.
    #[serde(default)]
    pub node: Option<String>,
    /// The actor's path below the node's root, e.g. `registry`, `sinks/m.f.0`,
    /// `invocations/*` (one running invoker).
    pub actor: String,
}

/// Answer of `POST /v1/admin/crash`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Crashed {
    /// The node.
    pub node: String,
    /// The full path of the actor killed.
    pub actor: String,
}

/// Where an activation is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActivationStatus {
    /// Still running (asynchronous invocations).
    Running,
    /// Finished with a result.
    Success,
    /// Finished with an error (the `error` the caller got, or would have got).
    Error,
}

/// One invocation's record, as shown by `GET /v1/activations/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ActivationInfo {
    /// Id (32 hex digits).
    pub activation_id: String,
    /// Module of the function.
    pub module: String,
    /// Function name.
    pub function: String,
    /// Where it is.
    pub status: ActivationStatus,
    /// When it started, Unix milliseconds.
    pub started_at_ms: u64,
    /// How long it took, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Worker that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The function's result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// The function's log lines (`__console_log`, stderr).
    #[serde(default)]
    pub logs: Vec<String>,
    /// The version of the function it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// When its function had a canary: the side of the split it took, `stable` or `canary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
}

/// The answer to an asynchronous invocation (202).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ActivationStarted {
    /// Id to fetch the activation with.
    pub activation_id: String,
}
