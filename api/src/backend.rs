//! The narrow interface between the HTTP layer and the Core.

use std::future::Future;

use crate::error::ApiResult;
use crate::types::{
    ActivationInfo, AppScriptInfo, ClusterTree, Crashed, CreatedSubject, FunctionCreated,
    FunctionInfo, FunctionMetadata, ModuleInfo, Named, NodeConnected, WorkerInfo,
};

/// Who is calling, as established from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Store id of the subject.
    pub id: i64,
    /// Subject name.
    pub name: String,
    /// Admins manage subjects and see every module.
    pub admin: bool,
}

/// A function upload (create or update), parsed from the multipart form.
#[derive(Debug, Clone)]
pub struct FunctionUpload {
    /// Function name.
    pub name: String,
    /// The Wasm binary or JavaScript source (shared with the request body, not copied).
    pub code: axum::body::Bytes,
    /// The language the upload named, if any.
    pub language: Option<crate::types::Language>,
    /// FunLess metadata.
    pub metadata: FunctionMetadata,
    /// FunLess `events` (kept as given, JSON).
    pub events: Option<serde_json::Value>,
    /// FunLess `sinks` (kept as given, JSON).
    pub sinks: Option<serde_json::Value>,
    /// Answer only after every worker has compiled the code.
    pub wait_for_workers: bool,
    /// On update: store the code as a new version that is not current but the function's
    /// canary, getting this percentage of invocations.
    pub canary: Option<u8>,
}

/// The result of a successful invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The function's output: valid JSON text (shared with the Core's activation record).
    pub output_json: std::sync::Arc<String>,
    /// Worker that ran it.
    pub worker: String,
    /// Id of its activation record.
    pub activation_id: String,
    /// Where the Core's time went, for the answer's `Server-Timing` header.
    pub timings: Timings,
    /// The version of the function that ran.
    pub version: u64,
    /// When the function has a canary, the side of its split this call took (`stable` or
    /// `canary`).
    pub track: Option<&'static str>,
}

/// An invocation's time, stage by stage, in the order the stages ran. The answer carries it as
/// a `Server-Timing` header (W3C Server Timing: `name;dur=<ms>`), so a client, a browser's
/// developer tools or `funless-bench hops` can see where each microsecond went without a
/// profiler.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings(pub Vec<(&'static str, std::time::Duration)>);

impl Timings {
    /// Adds a stage.
    pub fn push(&mut self, stage: &'static str, took: std::time::Duration) {
        self.0.push((stage, took));
    }

    /// The `Server-Timing` header's value: `auth;dur=0.004, lookup;dur=0.001, ...`
    /// (milliseconds, microsecond precision).
    pub fn header_value(&self) -> String {
        let mut value = String::with_capacity(self.0.len() * 20);
        for (i, (stage, took)) in self.0.iter().enumerate() {
            if i > 0 {
                value.push_str(", ");
            }
            use std::fmt::Write as _;
            let _ = write!(value, "{stage};dur={:.3}", took.as_secs_f64() * 1e3);
        }
        value
    }
}

/// What the API needs from the Core. Every method answers an [`crate::ApiError`] that the router
/// turns into the FunLess status code and error body. The service routes' methods are in
/// [`crate::ServicesBackend`].
pub trait Backend:
    crate::services::ServicesBackend
    + crate::versions::VersionsBackend
    + crate::secrets::SecretsBackend
    + crate::canary::CanaryBackend
    + Send
    + Sync
    + 'static
{
    /// Resolves a bearer token to its subject (401 when unknown).
    fn authenticate(&self, token: &str) -> impl Future<Output = ApiResult<Subject>> + Send;
    /// Modules visible to `who`.
    fn list_modules(&self, who: &Subject) -> impl Future<Output = ApiResult<Vec<Named>>> + Send;
    /// Creates a module owned by `who`.
    fn create_module(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// A module with its functions.
    fn get_module(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<ModuleInfo>> + Send;
    /// Renames a module.
    fn rename_module(
        &self,
        who: &Subject,
        name: &str,
        new_name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Deletes a module and its functions.
    fn delete_module(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Creates a function in a module.
    fn create_function(
        &self,
        who: &Subject,
        module: &str,
        upload: FunctionUpload,
    ) -> impl Future<Output = ApiResult<FunctionCreated>> + Send;
    /// Replaces the code and metadata of the function `function`, and renames it to
    /// `upload.name` when that differs (409 when the new name is taken).
    fn update_function(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        upload: FunctionUpload,
    ) -> impl Future<Output = ApiResult<FunctionCreated>> + Send;
    /// A function's description.
    fn get_function(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
    ) -> impl Future<Output = ApiResult<FunctionInfo>> + Send;
    /// Deletes a function.
    fn delete_function(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// Runs a function with JSON arguments (`args_json` is valid JSON text), placed by the
    /// APP script named `script`, or by the platform's policy when `None`: its current
    /// version, or the kept `version` when given (404 when it is not kept).
    fn invoke(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        version: Option<u64>,
        args_json: String,
        script: Option<String>,
    ) -> impl Future<Output = ApiResult<Invocation>> + Send;
    /// Starts a function in the background (the same checks as [`Backend::invoke`] first) and
    /// answers its activation id at once.
    fn invoke_async(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        version: Option<u64>,
        args_json: String,
        script: Option<String>,
    ) -> impl Future<Output = ApiResult<String>> + Send;
    /// One activation record (404 when unknown, expired or not the caller's).
    fn activation(
        &self,
        who: &Subject,
        id: &str,
    ) -> impl Future<Output = ApiResult<ActivationInfo>> + Send;
    /// The newest activation records of a function, newest first.
    fn list_activations(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        limit: usize,
    ) -> impl Future<Output = ApiResult<Vec<ActivationInfo>>> + Send;
    /// Stores an APP scheduling script after checking it (400 with where and why).
    fn create_app_script(
        &self,
        name: &str,
        source: String,
    ) -> impl Future<Output = ApiResult<AppScriptInfo>> + Send;
    /// Names of the APP scripts.
    fn list_app_scripts(&self) -> impl Future<Output = ApiResult<Vec<Named>>> + Send;
    /// One APP script.
    fn get_app_script(&self, name: &str) -> impl Future<Output = ApiResult<AppScriptInfo>> + Send;
    /// Deletes an APP script.
    fn delete_app_script(&self, name: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// Every subject (admin only; tokens are never listed).
    fn list_subjects(&self) -> impl Future<Output = ApiResult<Vec<Named>>> + Send;
    /// Creates a subject and returns its token, shown this once.
    fn create_subject(&self, name: &str) -> impl Future<Output = ApiResult<CreatedSubject>> + Send;
    /// Revokes a subject's token, effective for the next request.
    fn revoke_subject(&self, name: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// Workers connected now.
    fn list_workers(&self) -> impl Future<Output = ApiResult<Vec<WorkerInfo>>> + Send;
    /// Connects the Core's cluster node to the node at `address` (`host:port`) and waits for
    /// the cookie check: 400 for an address that is not `host:port`, 502 when nothing
    /// answers there or it refuses the cookie.
    fn connect_node(&self, address: &str) -> impl Future<Output = ApiResult<NodeConnected>> + Send;
    /// The supervision trees of the Core and of every worker.
    fn tree(&self) -> impl Future<Output = ApiResult<ClusterTree>> + Send;
    /// Kills the actor at `path` of the node named `node` (`None`: the Core). 403 unless the
    /// node was started with fault injection on; 404 for no such node or actor.
    fn crash(
        &self,
        node: Option<&str>,
        path: &str,
    ) -> impl Future<Output = ApiResult<Crashed>> + Send;
    /// Prometheus text exposition of the Core's metrics.
    fn metrics_text(&self) -> String;
}
