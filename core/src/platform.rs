//! The Core as the API sees it: [`Platform`] implements [`funless_api::Backend`] over the store,
//! the worker table and the dispatcher, and maps every failure to its HTTP meaning.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use funless_actors::protocol::{CacheReply, FunctionId, InvokeError};
use funless_api::types::{
    Abi, ActivationInfo, AppScriptInfo, BroadcastReport, ClusterTree, Crashed, CreatedSubject,
    DEFAULT_CAPACITY_BYTES, DEFAULT_TIMEOUT_MS, FunctionCreated, FunctionInfo, FunctionMetadata,
    ModuleInfo, Named, NodeConnected, WorkerFailure, WorkerInfo,
};
use funless_api::{ApiError, ApiResult, Backend, FunctionUpload, Invocation, Subject, Timings};

use crate::activations::{ActivationLimits, Activations, Finished, Outcome};
use crate::canary::{self, Route, Track};
use crate::catalog::{CachedFunction, Catalog};
use crate::dispatch::{self, DispatchError, Target};
use crate::events::{self, Connectors};
use crate::metrics::Metrics;
use crate::quotas::{Footprint, QuotaLimits, Quotas, Turn, Usage};
use crate::scheduler::NoWorker;
use crate::scheduler::app::Script;
use crate::sinks::{self, Sinks};
use crate::store::{
    DEFAULT_MODULE, FunctionRow, ModuleRow, NewFunction, PendingRow, ScriptRow, Store, StoreError,
    shown_module,
};
use crate::tokens;
use crate::validate;
use crate::workers::{Policy, Workers};

mod canaries;
mod connectors;
mod pending;
mod secrets;
mod versions;

pub(crate) use connectors::stored_sinks;

/// How long `POST /v1/admin/nodes` waits for a node to answer and pass the cookie check.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Default operator cap on a function's time limit, milliseconds (10 minutes).
pub const DEFAULT_MAX_TIMEOUT_MS: u64 = 600_000;

/// Default number of versions kept per function, the current one included.
pub const DEFAULT_KEEP_VERSIONS: u32 = 10;

/// The Core's services behind the API.
#[derive(Debug, Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    workers: Workers,
    metrics: Metrics,
    /// token hash → subject, filled on first use (tokens cannot change, only be revoked).
    sessions: RwLock<HashMap<String, Subject>>,
    /// Revocations so far: an authentication that read the store before a revocation does not
    /// cache what it read (it may be the revoked subject).
    revocations: std::sync::atomic::AtomicU64,
    /// Parsed APP scripts by name, filled on first use and dropped on delete.
    scripts: RwLock<HashMap<String, Arc<Script>>>,
    /// Operator cap on a function's time limit, milliseconds.
    max_timeout_ms: u64,
    /// How many versions of each function are kept (the current one included).
    keep_versions: std::sync::atomic::AtomicU32,
    /// Subjects whose own default module is known to exist (it is never deleted or renamed),
    /// so the invocation path skips that lookup.
    own_defaults: RwLock<std::collections::HashSet<i64>>,
    /// Function and module metadata in memory: the invocation path reads no store row.
    catalog: Catalog,
    /// This Core's changes to tell the Cores sharing its store (`crate::peers`).
    changes: Arc<crate::peers::Changes>,
    /// What each version of every running canary came to.
    tallies: canary::Tallies,
    /// Records of recent invocations.
    activations: Activations,
    /// Subjects' secrets, sealed in the store.
    secrets: crate::secrets::Secrets,
    /// MQTT, NATS and cron triggers of functions.
    connectors: Connectors,
    /// Whether this Core runs the functions' event connectors: always on SQLite; on
    /// PostgreSQL only while it holds the connectors' lease (`crate::lease`).
    runs_connectors: std::sync::atomic::AtomicBool,
    /// Where functions' results go.
    sinks: Sinks,
    /// Users' long-running services.
    services: crate::services::Services,
    /// Per-subject quotas and the invocations counted against them.
    quotas: Quotas,
    /// The Core's cluster node, for connecting to nodes by hand (set once it runs).
    node: std::sync::OnceLock<funless_actors::node::Node>,
    /// The Core's root supervisor and whether it obeys crash requests (set once it runs).
    tree: std::sync::OnceLock<(
        ractor::ActorRef<funless_actors::supervisor::SupervisorMessage>,
        bool,
    )>,
}

/// How long a create or update waits for new event connectors to connect before answering.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// An invocation checked and resolved, ready to run.
struct Prepared {
    /// Stored module name.
    module: String,
    name: String,
    target: Target,
    /// The version it runs, and the side of its function's canary it took.
    route: Route,
}

/// A secrets failure as the API reports it (never with a value in it: they hold none).
pub(crate) fn secrets_error(e: crate::secrets::SecretsError) -> ApiError {
    use crate::secrets::SecretsError;
    match e {
        SecretsError::NoKey => ApiError::Unavailable(e.to_string()),
        SecretsError::Store(e) => api(e),
        other => ApiError::Internal(other.to_string()),
    }
}

/// A store failure as the API reports it.
fn api(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(m) => ApiError::NotFound(m),
        StoreError::Conflict(m) => ApiError::Conflict(m),
        StoreError::Invalid(m) => ApiError::BadRequest(m),
        // The database is away (PostgreSQL down or unreachable): worth trying again later.
        StoreError::Database(
            e @ (sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)),
        ) => {
            tracing::warn!(error = %e, "the store is not answering");
            ApiError::Unavailable("the store is not answering; try again".into())
        }
        other => ApiError::Internal(other.to_string()),
    }
}

pub(crate) fn rfc3339(ms: i64) -> String {
    // Civil-from-days (H. Hinnant), to avoid a date crate for one format.
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn function_info(row: FunctionRow) -> FunctionInfo {
    let canary = row
        .canary()
        .map(|(version, percent)| funless_api::types::CanarySplit {
            version: version.max(0) as u64,
            percent,
        });
    FunctionInfo {
        canary,
        abi: Abi::parse(&row.abi).unwrap_or(Abi::Funless),
        size: row.size.max(0) as u64,
        metadata: FunctionMetadata {
            tag: row.tag,
            capacity: Some(row.capacity_bytes.max(0) as u64),
            retryable: Some(row.retryable),
            timeout_ms: Some(row.timeout_ms.max(0) as u64),
            allow_hosts: Some(serde_json::from_str(&row.allow_hosts).unwrap_or_default()),
        },
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        version: row.version.max(0) as u64,
        name: row.name,
        module: shown_module(&row.module).to_string(),
        hash: row.hash,
        connectors: Vec::new(),
        sinks: Vec::new(),
    }
}

/// The egress allow-list as stored (JSON), after checking each entry is `host` or `host:port`.
pub(crate) fn allow_hosts(hosts: Option<&[String]>) -> ApiResult<String> {
    let hosts = hosts.unwrap_or_default();
    for entry in hosts {
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry.as_str(), None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
        if !host_ok || !port_ok {
            return Err(ApiError::BadRequest(format!(
                "allow_hosts entry {entry:?} is not a host name or address, with an optional :port"
            )));
        }
    }
    serde_json::to_string(hosts).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A subject's own default module lives as long as the subject (the platform remembers it
/// exists): even the admin may not remove or rename it.
fn refuse_own_default(stored: &str, what: &str) -> ApiResult<()> {
    if stored.starts_with("_~") {
        return Err(ApiError::BadRequest(format!(
            "a subject's default module cannot be {what}"
        )));
    }
    Ok(())
}

/// Whether an upload's code is checked by the workers before it is stored: JavaScript, whose
/// syntax only the workers' engine knows, when the caller waits for the workers.
fn checked_on_workers(abi: Abi, upload: &FunctionUpload) -> bool {
    abi == Abi::JavaScript && upload.wait_for_workers
}

/// A 422 and its metrics outcome, both named by `reason`.
fn function_failed(reason: &'static str, message: String) -> (ApiError, &'static str) {
    (
        ApiError::FunctionError {
            reason,
            message,
            version: None,
        },
        reason,
    )
}

fn not_found_module(name: &str) -> ApiError {
    ApiError::NotFound(format!("module '{name}' not found"))
}

/// The stored name of a subject's own default module. `~` is outside the naming rule, so no
/// module created through the API can take it.
fn own_default_module(who: &Subject) -> String {
    stored_module(who, DEFAULT_MODULE)
}

/// Where a module `name` of `who` is stored. Each subject has its own namespace (`name~<id>`,
/// outside the naming rule), so names never collide across subjects and no answer tells that
/// another subject has a module of that name. The admin's modules are stored as named.
fn stored_module(who: &Subject, name: &str) -> String {
    if who.admin {
        name.to_string()
    } else {
        format!("{name}~{}", who.id)
    }
}

fn not_found_function(module: &str, name: &str) -> ApiError {
    let module = shown_module(module);
    ApiError::NotFound(format!("function '{module}/{name}' not found"))
}

impl Platform {
    /// A platform over this store and worker table; functions may ask for at most
    /// `max_timeout_ms` per invocation; activation records are kept within `activations`;
    /// subjects are held to `quotas`.
    pub fn new(
        store: Store,
        workers: Workers,
        metrics: Metrics,
        max_timeout_ms: u64,
        activations: ActivationLimits,
        quotas: QuotaLimits,
        secrets_key: Option<crate::secrets::SecretsKey>,
    ) -> Self {
        let changes = Arc::new(crate::peers::Changes::default());
        let runs_connectors = store.backend() != "postgres";
        let sinks = Sinks::new(store.clone(), changes.id().to_string());
        Self {
            inner: Arc::new(Inner {
                catalog: Catalog::telling(changes.clone()),
                changes,
                secrets: crate::secrets::Secrets::new(store.clone(), secrets_key),
                services: crate::services::Services::new(store.clone(), workers.clone(), &metrics),
                quotas: Quotas::new(quotas, metrics.clone()),
                store,
                workers,
                metrics,
                sessions: RwLock::new(HashMap::new()),
                revocations: std::sync::atomic::AtomicU64::new(0),
                scripts: RwLock::new(HashMap::new()),
                max_timeout_ms,
                keep_versions: std::sync::atomic::AtomicU32::new(DEFAULT_KEEP_VERSIONS),
                own_defaults: RwLock::default(),
                tallies: canary::Tallies::default(),
                activations: Activations::new(activations),
                connectors: Connectors::default(),
                runs_connectors: std::sync::atomic::AtomicBool::new(runs_connectors),
                sinks,
                node: std::sync::OnceLock::new(),
                tree: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The Core's root supervisor (the live tree's root) and whether fault injection is on.
    pub fn set_tree(
        &self,
        root: ractor::ActorRef<funless_actors::supervisor::SupervisorMessage>,
        fault_injection: bool,
    ) {
        let _ = self.inner.tree.set((root, fault_injection));
    }

    /// The supervisors of the function's event connectors and sinks, and the service
    /// manager: children of the root.
    pub fn supervised(&self) -> Vec<funless_actors::supervisor::ChildSpec> {
        let mut children = vec![
            self.inner.connectors.child_spec(),
            self.inner.sinks.child_spec(),
            self.inner.services.child_spec(),
        ];
        children.extend(crate::peers::children(
            &self.inner.store,
            self.inner.changes.clone(),
            self.clone(),
        ));
        children.extend(crate::lease::child(&self.inner.store, self.clone()));
        children.push(crate::pending::child(self.clone()));
        children.push(crate::sinks::keeper::child(self.clone()));
        children
    }

    /// The functions' sinks.
    pub(crate) fn sinks(&self) -> &Sinks {
        &self.inner.sinks
    }

    /// This Core's changes, told to the Cores sharing its store.
    pub(crate) fn changes(&self) -> &crate::peers::Changes {
        &self.inner.changes
    }

    /// Drops every in-memory copy of stored state (metadata, sessions, parsed scripts, opened
    /// secrets): another Core sharing the store changed it. Each is read again on its next use.
    pub(crate) fn forget_cached(&self) {
        self.inner.catalog.clear();
        let mut sessions = self
            .inner
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.inner.revocations.fetch_add(1, Ordering::SeqCst);
        sessions.clear();
        drop(sessions);
        self.inner
            .scripts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.inner.secrets.forget_all();
    }

    /// Checks, before the Core serves, that stored secrets open with its key (none stored:
    /// nothing to check).
    pub async fn check_secrets(&self) -> Result<(), crate::secrets::SecretsError> {
        self.inner.secrets.check().await
    }

    /// Subjects' secrets.
    pub(crate) fn secrets(&self) -> &crate::secrets::Secrets {
        &self.inner.secrets
    }

    /// Users' long-running services.
    pub fn services(&self) -> &crate::services::Services {
        &self.inner.services
    }

    /// The per-subject quotas.
    pub(crate) fn quotas(&self) -> &Quotas {
        &self.inner.quotas
    }

    fn root(
        &self,
    ) -> ApiResult<&(
        ractor::ActorRef<funless_actors::supervisor::SupervisorMessage>,
        bool,
    )> {
        self.inner
            .tree
            .get()
            .ok_or_else(|| ApiError::Unavailable("the supervision tree is not running".into()))
    }

    /// Where sinks and event connectors may connect; set before any is started.
    pub fn set_egress(&self, policy: crate::egress::EgressPolicy) {
        self.inner.sinks.set_egress(policy.clone());
        self.inner.connectors.set_egress(policy);
    }

    /// How many versions of each function are kept, the current one included (at least 1);
    /// older ones are deleted at the next update or rollback.
    pub fn set_keep_versions(&self, keep: u32) {
        self.inner
            .keep_versions
            .store(keep.max(1), Ordering::Relaxed);
    }

    pub(crate) fn keep_versions(&self) -> u32 {
        self.inner.keep_versions.load(Ordering::Relaxed)
    }

    /// The cluster node that `POST /v1/admin/nodes` connects from.
    pub fn set_node(&self, node: funless_actors::node::Node) {
        let _ = self.inner.node.set(node);
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The stored module a subject means by `name`. Tenancy: a subject sees only the modules it
    /// created, and `_` is its own default module (created on first use); the admin sees every
    /// module and `_` is the shared one. A module the subject may not see is a 404, like one
    /// that does not exist, so names do not leak.
    async fn module_for(&self, who: &Subject, name: &str) -> ApiResult<String> {
        let store = &self.inner.store;
        if name == DEFAULT_MODULE && !who.admin {
            let own = own_default_module(who);
            let known = self
                .inner
                .own_defaults
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&who.id);
            if !known {
                if store.get_module(&own).await.map_err(api)?.is_none() {
                    match store.create_module(&own, Some(who.id)).await {
                        Ok(_) | Err(StoreError::Conflict(_)) => {}
                        Err(e) => return Err(api(e)),
                    }
                }
                self.inner
                    .own_defaults
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(who.id);
            }
            return Ok(own);
        }
        if !who.admin
            && let Some(row) = self.module_row(&stored_module(who, name)).await?
        {
            return Ok(row.name.clone());
        }
        // The admin's modules, and subjects' modules created before namespaces, are stored
        // under the name itself.
        let row = self
            .module_row(name)
            .await?
            .ok_or_else(|| not_found_module(name))?;
        if who.admin || row.owner_id == Some(who.id) {
            Ok(row.name.clone())
        } else {
            Err(not_found_module(name))
        }
    }

    /// A module's row, from memory when it was read before.
    async fn module_row(&self, name: &str) -> ApiResult<Option<Arc<ModuleRow>>> {
        let catalog = &self.inner.catalog;
        if let Some(row) = catalog.module(name) {
            return Ok(Some(row));
        }
        let ticket = catalog.ticket();
        let row = self.inner.store.get_module(name).await.map_err(api)?;
        Ok(row.map(|row| catalog.remember_module(ticket, row)))
    }

    /// A function's metadata, from memory when it was read before, or the API's 404.
    async fn cached_function(&self, module: &str, name: &str) -> ApiResult<Arc<CachedFunction>> {
        let catalog = &self.inner.catalog;
        if let Some(function) = catalog.function(module, name) {
            return Ok(function);
        }
        let ticket = catalog.ticket();
        let row = self.function_row(module, name).await?;
        let module_config = self.module_config(module).await?;
        Ok(catalog.remember_function(ticket, row, &module_config))
    }

    /// A module's stored configuration (none for a module deleted meanwhile).
    async fn module_config(&self, module: &str) -> ApiResult<String> {
        Ok(self.module_row(module).await?.map_or_else(
            || crate::store::EMPTY_CONFIG.to_string(),
            |m| m.config.clone(),
        ))
    }

    /// A function's row as stored now, or the API's 404 for it.
    async fn function_row(&self, module: &str, name: &str) -> ApiResult<FunctionRow> {
        self.inner
            .store
            .get_function(module, name)
            .await
            .map_err(api)?
            .ok_or_else(|| not_found_function(module, name))
    }

    async fn new_function(
        &self,
        who: &Subject,
        module: &str,
        upload: &FunctionUpload,
    ) -> ApiResult<(NewFunction, Abi)> {
        let (abi, hash) = validate::validate_and_hash(upload.code.clone(), upload.language)
            .await
            .map_err(ApiError::BadRequest)?;
        // Where the Core itself would connect: refused at upload when written as an address
        // the egress policy refuses; names are checked on every connection.
        let egress = self.inner.sinks.egress();
        if let Some(events) = &upload.events {
            let triggers = events::parse(events).map_err(ApiError::BadRequest)?;
            events::check_triggers(&egress, &triggers).map_err(ApiError::BadRequest)?;
        }
        if let Some(sinks) = &upload.sinks {
            for sink in sinks::parse(sinks).map_err(ApiError::BadRequest)? {
                sinks::check_url(&egress, &sink.url).map_err(ApiError::BadRequest)?;
            }
        }
        let to_text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
        Ok((
            NewFunction {
                module: module.to_string(),
                name: upload.name.clone(),
                code: upload.code.clone(),
                hash,
                abi: abi.as_str().to_string(),
                capacity_bytes: i64::try_from(
                    upload.metadata.capacity.unwrap_or(DEFAULT_CAPACITY_BYTES),
                )
                .map_err(|_| ApiError::BadRequest("capacity is too large".into()))?,
                retryable: upload.metadata.retryable.unwrap_or(true),
                timeout_ms: self.timeout_ms(upload.metadata.timeout_ms)?,
                allow_hosts: allow_hosts(upload.metadata.allow_hosts.as_deref())?,
                tag: upload.metadata.tag.clone(),
                events: to_text(&upload.events),
                sinks: to_text(&upload.sinks),
                created_by: Some(who.name.clone()),
                config: crate::store::EMPTY_CONFIG.to_string(),
            },
            abi,
        ))
    }

    /// The policy for an invocation: the named APP script (parsed once, then cached) or the
    /// default policy.
    async fn policy(&self, script: Option<String>, tag: Option<String>) -> ApiResult<Policy> {
        let Some(name) = script else {
            return Ok(Policy::Default);
        };
        let cached = self
            .inner
            .scripts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        let parsed = match cached {
            Some(parsed) => parsed,
            None => {
                let row = self.inner.store.get_script(&name).await.map_err(api)?;
                let row = row.ok_or_else(|| {
                    ApiError::NotFound(
                        NoWorker::UnknownScript {
                            script: name.clone(),
                        }
                        .to_string(),
                    )
                })?;
                let parsed = Arc::new(Script::parse(&row.source).map_err(|e| {
                    ApiError::Internal(format!("stored script '{name}' no longer parses: {e}"))
                })?);
                self.inner
                    .scripts
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), parsed.clone());
                parsed
            }
        };
        Ok(Policy::App {
            name,
            script: parsed,
            tag,
        })
    }

    /// A function's time limit: its own, within the operator's cap.
    fn timeout_ms(&self, asked: Option<u64>) -> ApiResult<i64> {
        let max = self.inner.max_timeout_ms;
        let ms = asked.unwrap_or(DEFAULT_TIMEOUT_MS.min(max));
        if ms == 0 || ms > max {
            return Err(ApiError::BadRequest(format!(
                "timeout_ms must be between 1 and {max} (the operator's cap), not {ms}"
            )));
        }
        i64::try_from(ms).map_err(|_| ApiError::BadRequest("timeout_ms is too large".into()))
    }

    /// JavaScript's syntax is checked by the workers' engine, so its code is distributed before
    /// anything is stored: a source that does not compile is a 400 and leaves no trace. Other
    /// forms were checked by [`validate`] and are distributed after storing (`None`).
    async fn check_on_workers(
        &self,
        new: &NewFunction,
        abi: Abi,
        upload: &FunctionUpload,
    ) -> ApiResult<Option<BroadcastReport>> {
        if !checked_on_workers(abi, upload) {
            return Ok(None);
        }
        let function = FunctionId {
            module: new.module.clone(),
            name: new.name.clone(),
            hash: new.hash.clone(),
        };
        let report = self.distribute(function, upload.code.clone(), true).await;
        let refused = report.failed.iter().find_map(|failure| {
            CacheReply::code_refusal(&failure.reason)
                .map(|why| format!("{why} (worker {})", failure.worker))
        });
        if let Some(why) = refused {
            dispatch::evict(&self.inner.workers, vec![new.hash.clone()]);
            return Err(ApiError::BadRequest(format!(
                "the JavaScript source does not compile: {why}"
            )));
        }
        Ok(Some(report))
    }

    /// Refuses a new module `stored` of `who` past its module quota (409 when it exists
    /// already); called in `who`'s turn.
    async fn module_quota(&self, who: &Subject, stored: &str, name: &str) -> ApiResult<()> {
        let quotas = &self.inner.quotas;
        if !quotas.limits_modules(who) {
            return Ok(());
        }
        let own = own_default_module(who);
        let owned = self.inner.store.owned_modules(who.id).await.map_err(api)?;
        if owned.iter().any(|m| m == stored) {
            return Err(ApiError::Conflict(format!(
                "module '{name}' already exists"
            )));
        }
        quotas.check_module(who, owned.iter().filter(|m| **m != own).count() as u64)
    }

    /// Refuses the function `name` of footprint `new` in the stored module `module` past
    /// `who`'s quotas, replacing `replacing` (an update) or none (a create); 409 when another
    /// function has that name already. Called in `who`'s turn.
    async fn function_quota(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        replacing: Option<&FunctionRow>,
        new: Footprint,
    ) -> ApiResult<()> {
        let quotas = &self.inner.quotas;
        if !quotas.limits_functions(who) {
            return Ok(());
        }
        let rows = self
            .inner
            .store
            .owned_functions(who.id)
            .await
            .map_err(api)?;
        let replaced = replacing.map(|r| (r.module.as_str(), r.name.as_str()));
        let taken = rows
            .iter()
            .any(|r| r.module == module && r.name == name && Some((module, name)) != replaced);
        if taken {
            return Err(ApiError::Conflict(format!(
                "function '{}/{name}' already exists",
                shown_module(module)
            )));
        }
        let old = replaced.map(|(module, name)| {
            rows.iter()
                .find(|r| r.module == module && r.name == name)
                .map(Footprint::of_stored)
                .unwrap_or_default()
        });
        quotas.check_function(who, Usage::of(&rows, replaced), old, new)
    }

    /// Checks an upload against `who`'s quotas before any worker sees its code, then has the
    /// workers check it (JavaScript), then checks the quotas again in `who`'s turn, which the
    /// caller holds until the function is stored: two uploads cannot both take the last slot.
    async fn admit_upload(
        &self,
        who: &Subject,
        new: &NewFunction,
        abi: Abi,
        upload: &FunctionUpload,
        replacing: Option<&FunctionRow>,
    ) -> ApiResult<(Option<BroadcastReport>, Turn)> {
        let footprint =
            Footprint::of_upload(&upload.code, upload.events.as_ref(), upload.sinks.as_ref());
        let (module, name) = (new.module.as_str(), new.name.as_str());
        let turn = self.inner.quotas.turn(who).await;
        self.function_quota(who, module, name, replacing, footprint)
            .await?;
        if !checked_on_workers(abi, upload) {
            return Ok((None, turn));
        }
        // The workers' check can take long: the subject's other writes are not held up by it.
        drop(turn);
        let checked = self.check_on_workers(new, abi, upload).await?;
        let turn = self.inner.quotas.turn(who).await;
        if let Err(e) = self
            .function_quota(who, module, name, replacing, footprint)
            .await
        {
            if replacing.is_none_or(|old| old.hash != new.hash) {
                dispatch::evict(&self.inner.workers, vec![new.hash.clone()]);
            }
            return Err(e);
        }
        Ok((checked, turn))
    }

    /// Sends the new code to every worker; waits for them when asked to.
    async fn distribute(&self, function: FunctionId, code: Bytes, wait: bool) -> BroadcastReport {
        let workers = self.inner.workers.clone();
        if !wait {
            tokio::spawn(async move {
                let deliveries = dispatch::broadcast(&workers, &function, &code).await;
                for d in deliveries.iter().filter(|d| d.result.is_err()) {
                    tracing::warn!(worker = %d.worker, function = %function, error = ?d.result, "background broadcast failed");
                }
            });
            return BroadcastReport::default();
        }
        let mut report = BroadcastReport {
            waited: true,
            ..BroadcastReport::default()
        };
        for delivery in dispatch::broadcast(&workers, &function, &code).await {
            match delivery.result {
                Ok(()) => report.cached.push(delivery.worker),
                Err(reason) => report.failed.push(WorkerFailure {
                    worker: delivery.worker,
                    reason,
                }),
            }
        }
        report.cached.sort();
        report
    }

    /// Resolves and checks an invocation: the caller's module, the function, the policy.
    async fn prepare(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        version: Option<u64>,
        script: Option<String>,
    ) -> ApiResult<Prepared> {
        let module = self.module_for(who, module).await?;
        let current = self.cached_function(&module, name).await?;
        let pinned = version.filter(|v| i64::try_from(*v).ok() != Some(current.row.version));
        let (function, route) = if let Some(v) = pinned {
            let pinned = Arc::new(self.pinned(&current.row, v).await?);
            let route = Route::plain(pinned.row.version);
            (pinned, route)
        } else if version.is_none()
            && let Some(canary) = &current.canary
        {
            let track = canary::draw(canary.percent);
            let function = match track {
                Track::Canary => self.canary_function(&current, canary).await?,
                Track::Stable => None,
            };
            let (function, track) = match function {
                Some(function) => (function, track),
                // The canary ended meanwhile (its version then may go): the current one.
                None => (current.clone(), Track::Stable),
            };
            let route = Route {
                version: function.row.version,
                split: Some((track, canary.since)),
            };
            (function, route)
        } else {
            // A call pinned to the current version, or a function without a canary.
            let route = Route::plain(current.row.version);
            (current, route)
        };
        let row = &function.row;
        let policy = self.policy(script, row.tag.clone()).await?;
        let target = Target {
            function: FunctionId {
                module: row.module.clone(),
                name: row.name.clone(),
                hash: row.hash.clone(),
            },
            need_bytes: row.capacity_bytes.max(0) as u64,
            timeout_ms: row.timeout_ms.max(1) as u64,
            retryable: row.retryable,
            policy,
            allow_hosts: function.allow_hosts.clone(),
            env: self.environment(&function.env).await?,
        };
        Ok(Prepared {
            module,
            name: name.to_string(),
            target,
            route,
        })
    }

    /// The entry of `current`'s canary version (read once per catalog entry), or `None` when
    /// that version is no longer kept.
    async fn canary_function(
        &self,
        current: &CachedFunction,
        canary: &crate::catalog::Canary,
    ) -> ApiResult<Option<Arc<CachedFunction>>> {
        let version = u64::try_from(canary.version).unwrap_or(0);
        let read = canary
            .function
            .get_or_try_init(|| async { self.pinned(&current.row, version).await.map(Arc::new) })
            .await;
        match read {
            Ok(function) => Ok(Some(function.clone())),
            Err(ApiError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An invocation's environment: the settings' values, and the secrets they refer to,
    /// opened (from memory after their first use).
    async fn environment(&self, env: &crate::config::Environment) -> ApiResult<crate::config::Env> {
        if env.secrets.is_empty() {
            return Ok(env.values.clone());
        }
        let mut all = Vec::with_capacity(env.values.len() + env.secrets.len());
        all.extend(env.values.iter().cloned());
        for reference in env.secrets.iter() {
            let value = self
                .inner
                .secrets
                .value(reference.owner, &reference.name)
                .await
                .map_err(secrets_error)?
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "setting {} refers to secret '{}', which does not exist",
                        reference.key, reference.name
                    ))
                })?;
            all.push((reference.key.clone(), value.to_string()));
        }
        Ok(all.into())
    }

    /// A kept version of `function`, as the invocation path needs it (read from the store:
    /// pinned calls are not the hot path).
    async fn pinned(&self, function: &FunctionRow, version: u64) -> ApiResult<CachedFunction> {
        let kept = self
            .kept_version(&function.module, &function.name, version)
            .await?;
        let module_config = self.module_config(&function.module).await?;
        Ok(CachedFunction::new(
            kept.applied_to(function),
            &module_config,
        ))
    }

    /// Runs a prepared invocation: its answer (output and worker, or the caller's error) and
    /// its activation record.
    async fn execute(
        &self,
        prepared: &Prepared,
        args_json: String,
    ) -> (ApiResult<Answered>, Finished) {
        let started = Instant::now();
        let Prepared {
            module,
            name,
            target,
            route,
        } = prepared;
        let store = &self.inner.store;
        let hash = &target.function.hash;
        let load_code = || async {
            match store.function_code(module, name, hash).await {
                Ok(Some(code)) => Ok(Bytes::from(code)),
                Ok(None) => Err(
                    "the function, or this version of it, was deleted during the invocation"
                        .to_string(),
                ),
                Err(e) => Err(e.to_string()),
            }
        };
        let result = dispatch::invoke(&self.inner.workers, target, args_json, load_code).await;
        let dispatched = Instant::now();
        let duration = dispatched - started;
        let seconds = duration.as_secs_f64();
        match result {
            Ok(ran) => {
                let timings = hops(&ran);
                if ran.retried {
                    self.inner.metrics.retry();
                }
                self.inner
                    .metrics
                    .invocation(module, name, "ok", Some(seconds));
                self.count_route(module, name, *route, "ok");
                // The lines are in the activation record (`fl activation logs`); writing each to
                // the Core's own log as well would cost every call a formatted write to stderr
                // on the node's thread (docs/BENCHMARKS.md, "Where a warm invocation's time
                // goes"), so only at debug level.
                for line in &ran.output.logs {
                    tracing::debug!(target: "funless::function", function = %target.function, worker = %ran.worker, "{line}");
                }
                self.inner
                    .sinks
                    .send(module, name, &ran.output.output_json)
                    .await;
                // One copy of the output serves the answer and the activation record.
                let output_json = Arc::new(ran.output.output_json);
                let finished = Finished {
                    outcome: Outcome::Success {
                        output_json: output_json.clone(),
                    },
                    worker: Some(ran.worker.clone()),
                    logs: ran.output.logs,
                    duration,
                };
                let answered = Answered {
                    output_json,
                    worker: ran.worker,
                    timings,
                    dispatched,
                };
                (Ok(answered), finished)
            }
            Err(e) => {
                let logs = match &e {
                    DispatchError::Invoke(InvokeError::Function { logs, .. }) => logs.clone(),
                    _ => Vec::new(),
                };
                for line in &logs {
                    tracing::debug!(target: "funless::function", function = %target.function, "{line}");
                }
                let (error, outcome) = self.outcome_error(e);
                // A failure of the function says which version failed (canaries).
                let error = match error {
                    ApiError::FunctionError {
                        reason, message, ..
                    } => ApiError::FunctionError {
                        reason,
                        message,
                        version: u64::try_from(route.version).ok(),
                    },
                    other => other,
                };
                self.count_route(module, name, *route, outcome);
                let ran = matches!(
                    outcome,
                    "function_error"
                        | "trap"
                        | "timeout"
                        | "memory_limit"
                        | "output_too_large"
                        | "bad_output"
                );
                self.inner
                    .metrics
                    .invocation(module, name, outcome, ran.then_some(seconds));
                let finished = Finished {
                    outcome: Outcome::Error {
                        detail: match &error {
                            ApiError::Internal(_) => "internal server error".to_string(),
                            other => other.to_string(),
                        },
                        reason: outcome.to_string(),
                    },
                    worker: None,
                    logs,
                    duration,
                };
                (Err(error), finished)
            }
        }
    }

    /// How many activation records are kept, and for how long.
    pub(crate) fn activation_limits(&self) -> ActivationLimits {
        self.inner.activations.limits()
    }

    fn outcome_error(&self, e: DispatchError) -> (ApiError, &'static str) {
        match e {
            DispatchError::NoWorker(e) => (
                ApiError::Unavailable(format!("no worker can run the function: {e}")),
                "no_worker",
            ),
            DispatchError::Invoke(InvokeError::Function { message, .. }) => {
                function_failed("function_error", message)
            }
            DispatchError::Invoke(e @ InvokeError::Trap { .. }) => {
                function_failed("trap", e.to_string())
            }
            DispatchError::Invoke(e @ InvokeError::Timeout { .. }) => {
                function_failed("timeout", e.to_string())
            }
            DispatchError::Invoke(e @ InvokeError::MemoryLimit { .. }) => {
                function_failed("memory_limit", e.to_string())
            }
            DispatchError::Invoke(e @ InvokeError::OutputTooLarge { .. }) => {
                function_failed("output_too_large", e.to_string())
            }
            DispatchError::Invoke(e @ InvokeError::BadOutput { .. }) => {
                function_failed("bad_output", e.to_string())
            }
            DispatchError::Invoke(e @ InvokeError::Crashed { .. }) => {
                (ApiError::Crashed(e.to_string()), "crashed")
            }
            DispatchError::Invoke(e) => (ApiError::Internal(e.to_string()), "worker_error"),
            e @ DispatchError::Timeout { .. } => (ApiError::Timeout(e.to_string()), "no_answer"),
            e @ DispatchError::WorkerLost { .. } => {
                (ApiError::Unavailable(e.to_string()), "worker_lost")
            }
            e @ DispatchError::Code(_) => (ApiError::Internal(e.to_string()), "code_error"),
        }
    }
}

impl Backend for Platform {
    async fn authenticate(&self, token: &str) -> ApiResult<Subject> {
        let key = tokens::hash(token);
        if let Some(subject) = self
            .inner
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(subject.clone());
        }
        let revocations = self.inner.revocations.load(Ordering::SeqCst);
        let row = self
            .inner
            .store
            .subject_by_token_hash(&key)
            .await
            .map_err(api)?
            .ok_or_else(|| ApiError::Unauthorized("invalid token".into()))?;
        let subject = Subject {
            id: row.id,
            name: row.name,
            admin: row.admin,
        };
        let mut sessions = self
            .inner
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // Revocations count under this lock: none happened since the read, or it is not cached.
        if self.inner.revocations.load(Ordering::SeqCst) == revocations {
            sessions.insert(key, subject.clone());
        }
        Ok(subject)
    }

    async fn list_modules(&self, who: &Subject) -> ApiResult<Vec<Named>> {
        let modules = self.inner.store.list_modules().await.map_err(api)?;
        if who.admin {
            return Ok(modules
                .into_iter()
                .map(|m| Named { name: m.name })
                .collect());
        }
        let own = own_default_module(who);
        let mut names: Vec<Named> = std::iter::once(Named {
            name: DEFAULT_MODULE.to_string(),
        })
        .chain(
            modules
                .into_iter()
                .filter(|m| m.owner_id == Some(who.id) && m.name != own)
                .map(|m| Named {
                    name: shown_module(&m.name).to_string(),
                }),
        )
        .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(names)
    }

    async fn create_module(&self, who: &Subject, name: &str) -> ApiResult<()> {
        let conflict = || ApiError::Conflict(format!("module '{name}' already exists"));
        let store = &self.inner.store;
        // One created before namespaces, under the name itself.
        if !who.admin
            && let Some(row) = store.get_module(name).await.map_err(api)?
            && row.owner_id == Some(who.id)
        {
            return Err(conflict());
        }
        let stored = stored_module(who, name);
        let _turn = self.inner.quotas.turn(who).await;
        self.module_quota(who, &stored, name).await?;
        match store.create_module(&stored, Some(who.id)).await {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) => Err(conflict()),
            Err(e) => Err(api(e)),
        }
    }

    async fn get_module(&self, who: &Subject, name: &str) -> ApiResult<ModuleInfo> {
        let stored = self.module_for(who, name).await?;
        let functions = self
            .inner
            .store
            .list_functions(&stored)
            .await
            .map_err(api)?;
        Ok(ModuleInfo {
            name: name.to_string(),
            functions: functions
                .into_iter()
                .map(|f| Named { name: f.name })
                .collect(),
        })
    }

    async fn rename_module(&self, who: &Subject, name: &str, new_name: &str) -> ApiResult<()> {
        // `_` (anyone's) is refused by the store with its own message.
        let stored = if name == DEFAULT_MODULE {
            name.to_string()
        } else {
            self.module_for(who, name).await?
        };
        refuse_own_default(&stored, "renamed")?;
        let new_stored = stored_module(who, new_name);
        match self.inner.store.rename_module(&stored, &new_stored).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::Conflict(format!(
                    "module '{new_name}' already exists"
                )));
            }
            Err(e) => return Err(api(e)),
        }
        self.inner.catalog.module_changed(&stored);
        self.inner.catalog.module_changed(&new_stored);
        self.inner.tallies.forget_module(&stored);
        // Connectors are keyed by module name: move them with it.
        self.inner.connectors.remove_module(&stored);
        self.inner.sinks.remove_module(&stored);
        self.restore_module_connectors(&new_stored).await
    }

    async fn delete_module(&self, who: &Subject, name: &str) -> ApiResult<()> {
        let stored = if name == DEFAULT_MODULE {
            name.to_string()
        } else {
            self.module_for(who, name).await?
        };
        refuse_own_default(&stored, "deleted")?;
        let removed = self.inner.store.delete_module(&stored).await.map_err(api)?;
        self.inner.catalog.module_changed(&stored);
        self.inner.tallies.forget_module(&stored);
        self.inner.connectors.remove_module(&stored);
        self.inner.sinks.remove_module(&stored);
        dispatch::evict(
            &self.inner.workers,
            removed.into_iter().map(|f| f.hash).collect(),
        );
        Ok(())
    }

    async fn create_function(
        &self,
        who: &Subject,
        module: &str,
        upload: FunctionUpload,
    ) -> ApiResult<FunctionCreated> {
        let module = &self.module_for(who, module).await?;
        let (new, abi) = self.new_function(who, module, &upload).await?;
        let (checked, turn) = self.admit_upload(who, &new, abi, &upload, None).await?;
        let row = self.inner.store.create_function(new).await.map_err(api)?;
        drop(turn);
        self.inner.catalog.function_changed(module, &row.name);
        tracing::info!(function = %format!("{module}/{}", row.name), hash = %row.hash, ?abi, "function created");
        let workers = match checked {
            Some(report) => report,
            None => {
                self.distribute(function_id(&row), upload.code, upload.wait_for_workers)
                    .await
            }
        };
        let events = self.start_connectors(&row).await;
        let sinks = self.sinks_metadata(&row);
        Ok(FunctionCreated {
            name: row.name,
            hash: row.hash,
            abi,
            version: row.version.max(0) as u64,
            canary: None,
            workers,
            sinks,
            events,
        })
    }

    async fn update_function(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        upload: FunctionUpload,
    ) -> ApiResult<FunctionCreated> {
        let module = &self.module_for(who, module).await?;
        let (mut new, abi) = self.new_function(who, module, &upload).await?;
        let old = self.function_row(module, function).await?;
        // New code keeps the function's configuration (changed through its own route).
        new.config.clone_from(&old.config);
        let (checked, turn) = self
            .admit_upload(who, &new, abi, &upload, Some(&old))
            .await?;
        if let Some(percent) = upload.canary {
            let staged = self
                .inner
                .store
                .stage_canary(new, percent, self.keep_versions())
                .await
                .map_err(api)?;
            drop(turn);
            return Ok(self.staged(module, staged, abi, checked, upload).await);
        }
        let changed = self
            .inner
            .store
            .update_function(function, new, self.keep_versions())
            .await
            .map_err(api)?;
        let row = changed.row;
        drop(turn);
        self.inner.catalog.function_changed(module, &old.name);
        if old.name != row.name {
            self.inner.tallies.forget(module, &old.name);
        }
        self.inner.catalog.function_changed(module, &row.name);
        if row.name != old.name {
            // Renamed: the old name's connectors and sinks go; the new name's start below.
            self.inner.connectors.remove(module, &old.name);
            self.inner.sinks.remove(module, &old.name);
        }
        let workers = match checked {
            Some(report) => report,
            None => {
                self.distribute(function_id(&row), upload.code, upload.wait_for_workers)
                    .await
            }
        };
        // The previous version's code stays in the workers' caches (a rollback to it is warm)
        // until they need the room; code no kept version holds goes now.
        if !changed.dropped_hashes.is_empty() {
            dispatch::evict(&self.inner.workers, changed.dropped_hashes);
        }
        let events = self.start_connectors(&row).await;
        let sinks = self.sinks_metadata(&row);
        Ok(FunctionCreated {
            name: row.name,
            hash: row.hash,
            abi,
            version: row.version.max(0) as u64,
            canary: None,
            workers,
            sinks,
            events,
        })
    }

    async fn get_function(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
    ) -> ApiResult<FunctionInfo> {
        let stored = self.module_for(who, module).await?;
        let mut row = self.function_row(&stored, name).await?;
        row.module = module.to_string();
        let mut info = function_info(row);
        info.connectors = self.inner.connectors.info(&stored, name);
        info.sinks = self.inner.sinks.info(&stored, name);
        Ok(info)
    }

    async fn delete_function(&self, who: &Subject, module: &str, name: &str) -> ApiResult<()> {
        let module = &self.module_for(who, module).await?;
        let (_, hashes) = self
            .inner
            .store
            .delete_function(module, name)
            .await
            .map_err(api)?;
        self.inner.catalog.function_changed(module, name);
        self.inner.tallies.forget(module, name);
        self.inner.connectors.remove(module, name);
        self.inner.sinks.remove(module, name);
        dispatch::evict(&self.inner.workers, hashes);
        Ok(())
    }

    async fn invoke(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        version: Option<u64>,
        args_json: String,
        script: Option<String>,
    ) -> ApiResult<Invocation> {
        let looking_up = Instant::now();
        // Counted until this call ends, however it ends (the caller gone included: the
        // request's future, and the slot with it, is dropped).
        let _slot = self.inner.quotas.invocation(who)?;
        let prepared = self.prepare(who, module, name, version, script).await?;
        let lookup = looking_up.elapsed();
        let (result, finished) = self.execute(&prepared, args_json).await;
        let activation_id = self.inner.activations.record(
            who.id,
            &prepared.module,
            &prepared.name,
            prepared.route,
            finished,
        );
        result.map(|answered| {
            let mut timings = Timings(Vec::with_capacity(2 + answered.timings.0.len()));
            timings.push("lookup", lookup);
            timings.0.extend(answered.timings.0);
            timings.push("record", answered.dispatched.elapsed());
            Invocation {
                output_json: answered.output_json,
                worker: answered.worker,
                activation_id,
                timings,
                version: u64::try_from(prepared.route.version).unwrap_or(0),
                track: prepared.route.track().map(Track::as_str),
            }
        })
    }

    async fn invoke_async(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        version: Option<u64>,
        args_json: String,
        script: Option<String>,
    ) -> ApiResult<String> {
        // Everything the caller can get wrong is answered now; only the run is deferred.
        let slot = self.inner.quotas.invocation(who)?;
        let prepared = self
            .prepare(who, module, name, version, script.clone())
            .await?;
        let id = crate::activations::new_id();
        // Stored before it is answered: it outlives this Core (`crate::pending`).
        let now = crate::store::now_ms();
        let row = PendingRow {
            id: id.clone(),
            owner_id: who.id,
            module: prepared.module.clone(),
            function: prepared.name.clone(),
            version: version.and_then(|v| i64::try_from(v).ok()),
            args: args_json.clone(),
            script,
            state: "running".into(),
            core: self.inner.changes.id().to_string(),
            heartbeat_at: now,
            attempts: 1,
            created_at: now,
            finished_at: None,
            record: None,
        };
        self.inner.store.insert_pending(&row).await.map_err(api)?;
        self.inner.activations.start_as(
            id.clone(),
            who.id,
            &prepared.module,
            &prepared.name,
            prepared.route,
        );
        let platform = self.clone();
        tokio::spawn(async move {
            platform.run_pending(&row, &prepared, args_json).await;
            drop(slot);
        });
        Ok(id)
    }

    async fn activation(&self, who: &Subject, id: &str) -> ApiResult<ActivationInfo> {
        if let Some(info) = self.inner.activations.get(who.id, who.admin, id) {
            return Ok(info);
        }
        // An asynchronous one accepted by another Core, or by this one before a restart.
        let not_found = || ApiError::NotFound(format!("activation '{id}' not found (or expired)"));
        let row = self
            .inner
            .store
            .get_pending(id)
            .await
            .map_err(api)?
            .ok_or_else(not_found)?;
        let ttl = i64::try_from(self.activation_limits().ttl.as_millis()).unwrap_or(i64::MAX);
        let expired =
            row.state == "done" && crate::store::now_ms().saturating_sub(row.created_at) > ttl;
        if (row.owner_id != who.id && !who.admin) || expired {
            return Err(not_found());
        }
        Ok(crate::pending::stored_info(row))
    }

    async fn list_activations(
        &self,
        who: &Subject,
        module: &str,
        name: &str,
        limit: usize,
    ) -> ApiResult<Vec<ActivationInfo>> {
        let module = self.module_for(who, module).await?;
        Ok(self
            .inner
            .activations
            .list(who.id, who.admin, &module, name, limit))
    }

    async fn list_subjects(&self) -> ApiResult<Vec<Named>> {
        let subjects = self.inner.store.list_subjects().await.map_err(api)?;
        Ok(subjects
            .into_iter()
            .filter(|s| s.revoked_at.is_none())
            .map(|s| Named { name: s.name })
            .collect())
    }

    async fn create_subject(&self, name: &str) -> ApiResult<CreatedSubject> {
        let token = tokens::generate();
        self.inner
            .store
            .create_subject(name, &tokens::hash(&token), false)
            .await
            .map_err(api)?;
        Ok(CreatedSubject {
            name: name.to_string(),
            token,
        })
    }

    async fn revoke_subject(&self, name: &str) -> ApiResult<()> {
        // The last admin cannot lock everyone out (there would be no way back in).
        let subjects = self.inner.store.list_subjects().await.map_err(api)?;
        let active_admins = subjects
            .iter()
            .filter(|s| s.admin && s.revoked_at.is_none());
        if active_admins.clone().count() == 1 && active_admins.clone().any(|s| s.name == name) {
            return Err(ApiError::Conflict(format!(
                "subject '{name}' holds the last admin token, which cannot be revoked"
            )));
        }
        self.inner.store.revoke_subject(name).await.map_err(api)?;
        // Effective at once: drop the subject's cached sessions too.
        let mut sessions = self
            .inner
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        self.inner.revocations.fetch_add(1, Ordering::SeqCst);
        sessions.retain(|_, subject| subject.name != name);
        drop(sessions);
        self.inner.changes.changed();
        tracing::warn!(subject = %name, "token revoked");
        Ok(())
    }

    async fn list_workers(&self) -> ApiResult<Vec<WorkerInfo>> {
        let mut workers: Vec<WorkerInfo> = self
            .inner
            .workers
            .all()
            .into_iter()
            .filter_map(|e| {
                let state = e.state().to_string();
                let s = e.status?;
                Some(WorkerInfo {
                    state,
                    tags: s.tags,
                    cpus: s.cpus,
                    cpu_load_permille: s.cpu_load_permille,
                    name: s.name,
                    memory_total: s.memory_total,
                    memory_free: s.memory_free,
                    in_flight: s.in_flight,
                    cached: s.cached,
                    cache_bytes: s.cache.bytes,
                    cache_capacity: s.cache.capacity,
                    cache_evictions: s.cache.evictions,
                    allocator: s.allocator,
                })
            })
            .collect();
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(workers)
    }

    async fn connect_node(&self, address: &str) -> ApiResult<NodeConnected> {
        use funless_actors::node::ConnectError;
        let node = self
            .inner
            .node
            .get()
            .ok_or_else(|| ApiError::Unavailable("the cluster node is not running".into()))?;
        match funless_actors::node::connect_once(node, address, CONNECT_TIMEOUT).await {
            Ok(name) => {
                tracing::info!(%address, node = %name, "connected to a node by hand");
                Ok(NodeConnected {
                    address: address.to_string(),
                    node: name,
                })
            }
            Err(e @ ConnectError::BadAddress(_)) => Err(ApiError::BadRequest(e.to_string())),
            Err(e) => {
                tracing::warn!(%address, error = %e, "cannot connect to a node by hand");
                Err(ApiError::BadGateway(e.to_string()))
            }
        }
    }

    async fn create_app_script(&self, name: &str, source: String) -> ApiResult<AppScriptInfo> {
        let parsed = Script::parse(&source)
            .map_err(|e| ApiError::BadRequest(format!("invalid APP script: {e}")))?;
        let row = self
            .inner
            .store
            .create_script(name, &source)
            .await
            .map_err(api)?;
        self.inner
            .scripts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::new(parsed.clone()));
        self.inner.changes.changed();
        Ok(script_info(row, Some(&parsed)))
    }

    async fn list_app_scripts(&self) -> ApiResult<Vec<Named>> {
        let rows = self.inner.store.list_scripts().await.map_err(api)?;
        Ok(rows.into_iter().map(|r| Named { name: r.name }).collect())
    }

    async fn get_app_script(&self, name: &str) -> ApiResult<AppScriptInfo> {
        let row = self.inner.store.get_script(name).await.map_err(api)?;
        row.map(|row| script_info(row, None))
            .ok_or_else(|| ApiError::NotFound(format!("scheduling script '{name}' not found")))
    }

    async fn delete_app_script(&self, name: &str) -> ApiResult<()> {
        self.inner.store.delete_script(name).await.map_err(api)?;
        self.inner
            .scripts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        self.inner.changes.changed();
        Ok(())
    }

    async fn tree(&self) -> ApiResult<ClusterTree> {
        let (root, _) = self.root()?;
        crate::tree::gather(root, &self.inner.workers).await
    }

    async fn crash(&self, node: Option<&str>, path: &str) -> ApiResult<Crashed> {
        let (root, fault_injection) = self.root()?;
        crate::tree::crash(root, *fault_injection, &self.inner.workers, node, path).await
    }

    fn metrics_text(&self) -> String {
        let (connected, total) = self.inner.connectors.counts();
        self.inner.metrics.set_connectors(connected, total);
        self.inner.metrics.set_sinks(self.inner.sinks.totals());
        self.inner.metrics.encode()
    }
}

/// A stored script as the API shows it; `parsed` saves parsing it again.
fn script_info(row: ScriptRow, parsed: Option<&Script>) -> AppScriptInfo {
    let script = match parsed {
        Some(parsed) => parsed.to_json(),
        // Stored scripts were checked at upload; one that no longer parses shows as null.
        None => Script::parse(&row.source)
            .map(|s| s.to_json())
            .unwrap_or(serde_json::Value::Null),
    };
    AppScriptInfo {
        id: row.id,
        name: row.name,
        script,
        source: row.source,
        created_at: rfc3339(row.created_at),
    }
}

/// The identity of a stored function's code version.
/// A successful run as the invocation path hands it on.
struct Answered {
    output_json: Arc<String>,
    worker: String,
    /// The dispatch's stages.
    timings: Timings,
    /// When the dispatch ended (what follows is recording it).
    dispatched: Instant,
}

/// The stages of a dispatch: choosing the worker, the cluster hop there and back (the call's
/// round trip less the worker's own share), and the worker's share split into starting its
/// invoker actor, Wasmtime (instantiate and run) and the rest (code lookup, slot, metrics).
fn hops(ran: &dispatch::Ran) -> Timings {
    let micros = std::time::Duration::from_micros;
    let output = &ran.output;
    let worker = micros(output.worker_us);
    let mut timings = Timings(Vec::with_capacity(5));
    timings.push("schedule", ran.schedule);
    timings.push("cluster", ran.call.saturating_sub(worker));
    timings.push("spawn", micros(output.spawn_us));
    timings.push("run", micros(output.run_us));
    timings.push(
        "worker",
        worker.saturating_sub(micros(output.spawn_us + output.run_us)),
    );
    timings
}

fn function_id(row: &FunctionRow) -> FunctionId {
    FunctionId {
        module: row.module.clone(),
        name: row.name.clone(),
        hash: row.hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_833_296_000), "2026-11-28T02:34:56Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
