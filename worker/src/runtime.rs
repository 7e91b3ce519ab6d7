//! The Wasmtime side of a worker: one [`Engine`], the code cache, and one invocation's run.
//!
//! Every invocation gets a fresh `Store`. Runs are async: a guest that sleeps (WASI
//! `poll_oneoff`) holds no thread, and a busy guest yields to the executor at the end of every
//! time slice (the first after 1 ms, then every 10 ms, [`crate::slices`]) and moves to the
//! compute pool at the first ([`crate::compute`]), so no invocation keeps a runtime thread from
//! the others. The time limit is a tokio timeout around the whole run, which therefore also
//! covers time spent in host calls.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use funless_actors::protocol::{
    CachePush, CacheReply, CacheReport, Code, CodeSource, FunctionId, InvokeError, InvokeOutput,
    InvokeReply, InvokeRequest, WorkerStatus,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use wasmtime::{Engine, Linker, Store};
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::abi::Abi;
use crate::artifact::{self, Artifact};
use crate::cache::{CodeCache, Compiled, Pre};
use crate::compiler::{self, Children, CompileLimits, Compiler, Job};
use crate::compute::ComputePool;
use crate::disk::{DiskCache, Lookup};
use crate::engine::{self, AllocatorChoice, Compiles, EngineSettings};
use crate::error::{Error, Result};
use crate::host::{
    self, ComponentState, EgressHooks, FunlessIo, GuestLimits, HostState, HttpPool, Logs,
    MAX_RESPONSE_BYTES, MAX_STDOUT_BYTES, WasiIo,
};
use crate::javascript::{self, JsEngine};
use crate::metrics::WorkerMetrics;
use crate::slices::TimeSlices;

/// Time a JavaScript syntax check may take.
const SCRIPT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Default byte threshold of the in-memory code cache: room for dozens of typical functions
/// (a Rust hello compiles to ~0.3 MB) while leaving most of a 1 GB device to invocations.
pub const DEFAULT_CACHE_MB: usize = 128;

/// Worker settings that shape the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Unique worker name, reported to the Core.
    pub name: String,
    /// Largest linear memory one invocation may grow to, bytes.
    pub max_memory_bytes: usize,
    /// Byte threshold of the in-memory code cache.
    pub cache_bytes: usize,
    /// Folder of precompiled modules; `None` keeps compiled code in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Instance allocator.
    pub allocator: AllocatorChoice,
    /// Instances that may run at once with the pooling allocator.
    pub pool_slots: u32,
    /// Tags reported to the Core for scheduling scripts.
    pub tags: Vec<String>,
    /// Start JavaScript invocations from the engine's pre-initialised snapshot (off: each
    /// invocation builds QuickJS's runtime and context itself; for measuring the snapshot).
    pub js_snapshot: bool,
    /// Where code is compiled: the worker binary compiles in a child process of itself.
    pub compiler: Compiler,
    /// The operator's egress allow-list for functions that declare none (`host`, `host:port`,
    /// `*` for any host); a function's own `allow_hosts` replaces it. Empty: no egress.
    pub allow_hosts: Vec<String>,
    /// PEM files of extra CA certificates trusted for functions' HTTPS requests, besides the
    /// built-in web roots (e.g. a private CA of the edge site).
    pub egress_roots: Vec<PathBuf>,
    /// Bounds of compiles: how many at once, how long, how much memory (children).
    pub compile: CompileLimits,
    /// Threads of the compute pool, where guests that use up a time slice and services'
    /// replicas run ([`crate::compute`]); `0`: no pool, guests run where they arrive.
    pub compute_threads: usize,
}

/// One compute thread per core.
pub fn default_compute_threads() -> usize {
    funless_actors::settings::cores()
}

impl RuntimeConfig {
    fn engine_settings(&self) -> EngineSettings {
        EngineSettings {
            allocator: self.allocator,
            pool_slots: self.pool_slots,
            max_memory_bytes: self.max_memory_bytes,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            name: "worker".into(),
            max_memory_bytes: 256 * 1024 * 1024,
            cache_bytes: DEFAULT_CACHE_MB * 1024 * 1024,
            cache_dir: None,
            allocator: AllocatorChoice::Auto,
            pool_slots: 1000,
            tags: Vec::new(),
            js_snapshot: true,
            compiler: Compiler::InProcess,
            allow_hosts: Vec::new(),
            egress_roots: Vec::new(),
            compile: CompileLimits::default(),
            compute_threads: default_compute_threads(),
        }
    }
}

/// The engine, linker and caches of one worker, shared by all invocations.
pub struct Runtime {
    config: RuntimeConfig,
    engine: Engine,
    allocator: String,
    linker: Linker<HostState>,
    /// Built on the first component: linking all of WASI 0.2 and wasi:http touches ~1 MB of
    /// code that a worker running only modules and scripts never needs.
    component_linker: std::sync::OnceLock<wasmtime::component::Linker<ComponentState>>,
    cache: Arc<CodeCache>,
    /// The actor that owns `cache`'s lifetime ([`crate::cache_owner`]), while it runs.
    cache_owner: std::sync::RwLock<Option<ractor::ActorRef<crate::cache_owner::CacheMessage>>>,
    disk: Option<Arc<DiskCache>>,
    in_flight: Arc<AtomicU64>,
    /// Code arriving in chunks, until the message that uses it names it.
    pub(crate) staging: crate::staging::Staging,
    metrics: WorkerMetrics,
    changed: Notify,
    /// Outgoing HTTP of FunLess-ABI functions (`__http_request`), one pool for all.
    http: reqwest::Client,
    /// Outgoing `wasi:http` requests of components, one pool for all.
    http_pool: HttpPool,
    /// The JavaScript engine, made ready on the first JavaScript function.
    js: tokio::sync::OnceCell<Arc<JsEngine>>,
    /// Time slices of busy guests (the epoch ticker).
    slices: TimeSlices,
    /// Where guests that compute, and services' replicas, run.
    compute: ComputePool,
    /// Turns for compiles.
    children: Children,
    /// Instance slots of the pooling allocator (`None`: on-demand, no fixed number). A call
    /// that finds none free is refused at once as [`InvokeError::NoSlot`], which the Core
    /// sends elsewhere, instead of failing inside Wasmtime as a trap.
    slots: Option<(tokio::sync::Semaphore, u32)>,
    /// Compiles under way, by code hash: concurrent requests for one code version share one.
    flights: std::sync::Mutex<HashMap<String, Flight>>,
    /// Service replicas running here and their logs ([`crate::services`]).
    services: crate::services::Registry,
}

/// One compile under way, which every request for its code version awaits.
type Flight = Arc<tokio::sync::OnceCell<Result<Arc<Compiled>, InvokeError>>>;

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.config.name)
            .finish()
    }
}

/// SHA-256 of code, lower-case hex: the identity of a code version everywhere.
pub fn code_hash(code: &[u8]) -> String {
    hex::encode(Sha256::digest(code))
}

/// Where `prepare` found the code.
enum Prepared {
    Ready(Arc<Compiled>, CodeSource),
    NoCode,
}

impl Runtime {
    /// Builds the engine (probing for the pooling allocator), its epoch ticker, the linker and
    /// the caches.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let compiles = match &config.compiler {
            Compiler::Child(program) => Compiles::InChild(program),
            Compiler::InProcess => Compiles::Here,
        };
        let (engine, allocator) = engine::build(&config.engine_settings(), compiles)
            .map_err(|e| Error::Wasmtime(format!("{e:#}")))?;
        let slices = TimeSlices::start(&engine);
        let linker = host::linker(&engine).map_err(|e| Error::Wasmtime(e.to_string()))?;
        let disk = match &config.cache_dir {
            Some(dir) => Some(Arc::new(DiskCache::open(dir, &engine).map_err(|e| {
                Error::Io(format!("cache directory {}: {e}", dir.display()))
            })?)),
            None => None,
        };
        let cache = Arc::new(CodeCache::new(config.cache_bytes));
        let children = Children::new(config.compile);
        let slots = allocator.starts_with("pooling").then(|| {
            (
                tokio::sync::Semaphore::new(config.pool_slots as usize),
                config.pool_slots,
            )
        });
        let in_flight = Arc::new(AtomicU64::new(0));
        let metrics = WorkerMetrics::new(cache.clone(), in_flight.clone());
        let http = host::egress_client(&config.egress_roots)?;
        let compute = ComputePool::start(config.compute_threads)
            .map_err(|e| Error::Io(format!("starting the compute pool: {e}")))?;
        Ok(Self {
            config,
            engine,
            allocator,
            linker,
            component_linker: std::sync::OnceLock::new(),
            cache,
            cache_owner: std::sync::RwLock::new(None),
            disk,
            in_flight,
            staging: crate::staging::Staging::default(),
            metrics,
            changed: Notify::new(),
            http,
            http_pool: host::http_pool(),
            js: tokio::sync::OnceCell::new(),
            slices,
            compute,
            children,
            flights: std::sync::Mutex::default(),
            slots,
            services: crate::services::Registry::default(),
        })
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The service replicas running here.
    pub(crate) fn services(&self) -> &crate::services::Registry {
        &self.services
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> &str {
        &self.allocator
    }

    /// Prometheus text of the worker's metrics.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode()
    }

    /// Resolves when the set of cached code changed (for prompt status reports).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The linker of WASI 0.2 components, built on first use.
    fn component_linker(
        &self,
    ) -> Result<&wasmtime::component::Linker<ComponentState>, InvokeError> {
        if let Some(linker) = self.component_linker.get() {
            return Ok(linker);
        }
        let built = host::component_linker(&self.engine).map_err(|e| InvokeError::Worker {
            message: format!("cannot link WASI 0.2 for components: {e:#}"),
        })?;
        Ok(self.component_linker.get_or_init(|| built))
    }

    fn ready(
        &self,
        hash: &str,
        artifact: Artifact,
        preloaded: bool,
    ) -> Result<Arc<Compiled>, InvokeError> {
        let code_error = |e: wasmtime::Error| InvokeError::Code {
            message: format!("{e:#}"),
        };
        let (abi, pre) = match &artifact {
            Artifact::Module(module) => {
                let abi = Abi::detect(module).map_err(|message| InvokeError::Code { message })?;
                (
                    abi,
                    Pre::Module(self.linker.instantiate_pre(module).map_err(code_error)?),
                )
            }
            Artifact::Component(component) => {
                let pre = self
                    .component_linker()?
                    .instantiate_pre(component)
                    .map_err(code_error)?;
                let command = CommandPre::new(pre).map_err(|e| InvokeError::Code {
                    message: format!("the component does not export wasi:cli/run: {e:#}"),
                })?;
                (Abi::Component, Pre::Component(command))
            }
            Artifact::Script(source) => {
                let engine = self.js.get().cloned().ok_or_else(|| InvokeError::Worker {
                    message: "the JavaScript engine is not ready".into(),
                })?;
                (
                    Abi::JavaScript,
                    Pre::Script {
                        engine,
                        source: source.clone(),
                    },
                )
            }
        };
        let compiled = Arc::new(Compiled {
            artifact,
            pre,
            abi,
            preloaded: AtomicBool::new(preloaded),
        });
        let evicted = self.cache.insert(hash.to_string(), compiled.clone());
        if !evicted.is_empty() {
            tracing::info!(
                count = evicted.len(),
                "evicted least recently used code to stay under the cache threshold"
            );
        }
        self.changed.notify_one();
        Ok(compiled)
    }

    /// A fresh store for one guest run: its memory limiter, and the time slices it yields at.
    pub(crate) fn guest_store<T: host::Limited + Send + 'static>(&self, state: T) -> Store<T> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state.limits());
        self.slices.install(&mut store);
        store
    }

    /// The JavaScript engine, made ready once (concurrent first callers wait for one build).
    async fn js_engine(&self) -> Result<Arc<JsEngine>, InvokeError> {
        self.js
            .get_or_try_init(|| async {
                javascript::prepare(
                    &self.engine,
                    &self.linker,
                    self.config.js_snapshot,
                    self.disk
                        .as_ref()
                        .and_then(|disk| disk.sibling("js-engine")),
                    &self.config.compiler,
                    &self.engine_settings(),
                    &self.children,
                )
                .await
                .map(Arc::new)
            })
            .await
            .cloned()
            .map_err(|message| InvokeError::Worker { message })
    }

    /// Compiles a JavaScript function's source without running it: a syntax error is the
    /// upload's error, not its first invocation's.
    async fn check_script(&self, source: &Arc<[u8]>) -> Result<(), InvokeError> {
        let engine = self.js_engine().await?;
        // The check's instance takes a slot like an invocation's (waiting for one).
        let _slot = match &self.slots {
            Some((free, _)) => free.acquire().await.ok(),
            None => None,
        };
        let (wasi, _io) = WasiIo::build("js-check", Vec::new(), &[]);
        let state = HostState {
            wasi,
            fl: FunlessIo {
                source: Some(source.clone()),
                ..FunlessIo::default()
            },
            limits: GuestLimits::new(self.config.max_memory_bytes),
            egress: host::Egress::default(),
        };
        let mut store = self.guest_store(state);
        let call = async {
            let instance = engine.pre.instantiate_async(&mut store).await?;
            let check = instance.get_typed_func::<(), i32>(&mut store, "__check")?;
            check.call_async(&mut store, ()).await
        };
        let code = within(SCRIPT_CHECK_TIMEOUT, call)
            .await?
            .map_err(|e| InvokeError::Code {
                message: format!("{e:#}"),
            })?;
        match (code, store.into_data().fl.error) {
            (0, _) => Ok(()),
            (_, error) => Err(InvokeError::Code {
                message: error.map_or_else(
                    || "the JavaScript source does not compile".into(),
                    |e| String::from_utf8_lossy(&e).into_owned(),
                ),
            }),
        }
    }

    /// Loads a precompiled module from disk, if there is a good one.
    async fn load_from_disk(&self, hash: &str, preloaded: bool) -> Option<Arc<Compiled>> {
        let disk = self.disk.clone()?;
        let engine = self.engine.clone();
        // Reading and checking the artifact is file I/O: keep it off the async threads.
        let lookup = tokio::task::spawn_blocking({
            let disk = disk.clone();
            let hash = hash.to_string();
            move || match disk.load(&engine, &hash) {
                Lookup::Hit(artifact) => {
                    if !preloaded {
                        disk.touch(&hash);
                    }
                    // Build the copy-on-write memory image now rather than in the first
                    // instantiation: it is the larger part of a first run's extra cost.
                    artifact.warm_image();
                    Lookup::Hit(artifact)
                }
                other => other,
            }
        })
        .await
        .ok()?;
        match lookup {
            Lookup::Hit(artifact) => {
                self.metrics.disk_loads.inc();
                if matches!(artifact, Artifact::Script(_))
                    && let Err(e) = self.js_engine().await
                {
                    tracing::warn!(%hash, error = %e, "cannot run a cached JavaScript function");
                    return None;
                }
                match self.ready(hash, artifact, preloaded) {
                    Ok(compiled) => Some(compiled),
                    Err(e) => {
                        tracing::warn!(%hash, error = %e, "precompiled module unusable");
                        disk.remove(hash);
                        None
                    }
                }
            }
            Lookup::Miss => None,
            Lookup::Discarded => {
                self.metrics.disk_discards.inc();
                None
            }
        }
    }

    /// Compiles `code` (checked against the hash it came with), caches it in memory and on disk.
    /// Requests for a code version already being compiled wait for that compile.
    async fn compile(
        &self,
        function: &FunctionId,
        code: Vec<u8>,
    ) -> Result<Arc<Compiled>, InvokeError> {
        // Off the node's thread: hashing tens of MiB would stall every call behind it.
        let (code, actual) = tokio::task::spawn_blocking(move || {
            let hash = code_hash(&code);
            (code, hash)
        })
        .await
        .map_err(|e| InvokeError::Worker {
            message: format!("hashing the code: {e}"),
        })?;
        if actual != function.hash {
            return Err(InvokeError::HashMismatch {
                expected: function.hash.clone(),
                actual,
            });
        }
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(function.hash.clone())
            .or_default()
            .clone();
        // If the compiling request is dropped (its caller gave up), a waiting one takes over
        // with its own copy of the code.
        let result = flight
            .get_or_init(|| self.compile_once(function, code))
            .await
            .clone();
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if flights
            .get(&function.hash)
            .is_some_and(|f| Arc::ptr_eq(f, &flight))
        {
            // Done: the next request finds the code cached, or (after a failure) tries again.
            flights.remove(&function.hash);
        }
        result
    }

    async fn compile_once(
        &self,
        function: &FunctionId,
        code: Vec<u8>,
    ) -> Result<Arc<Compiled>, InvokeError> {
        if let Some(compiled) = self.cache.get(&function.hash) {
            return Ok(compiled);
        }
        let started = Instant::now();
        let artifact = match &self.config.compiler {
            Compiler::Child(program) if !artifact::is_script(&code) => {
                let settings = self.engine_settings();
                compiler::compile_in_child(
                    &self.engine,
                    program,
                    &settings,
                    Job::Code,
                    &code,
                    &self.children,
                )
                .await?
            }
            _ => {
                let turn = self.children.turn().await;
                let artifact = self.compile_here(code).await;
                drop(turn);
                artifact?
            }
        };
        if let Artifact::Script(source) = &artifact {
            self.check_script(source).await?;
        }
        self.metrics.compilations.inc();
        let compiled = self.ready(&function.hash, artifact, false)?;
        if let Some(disk) = self.disk.clone() {
            let artifact = compiled.artifact.clone();
            let hash = function.hash.clone();
            let written = tokio::task::spawn_blocking(move || disk.store(&hash, &artifact)).await;
            if let Ok(Err(e)) = written {
                tracing::warn!(function = %function, error = %e, "cannot write the precompiled module");
            }
        }
        tracing::info!(function = %function, hash = %function.hash, abi = ?compiled.abi, elapsed = ?started.elapsed(), "compiled and cached");
        Ok(compiled)
    }

    /// Compiles in this process (CPU-bound: on a blocking thread), then hands the compiler's
    /// freed scratch back to the kernel.
    async fn compile_here(&self, code: Vec<u8>) -> Result<Artifact, InvokeError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let compiled = Artifact::compile(&engine, &code);
            crate::memory::release_freed_heap();
            let artifact = compiled?;
            artifact.warm_image();
            Ok::<_, wasmtime::Error>(artifact)
        })
        .await
        .map_err(|e| InvokeError::Worker {
            message: format!("compiler task failed: {e}"),
        })?
        .map_err(|e| InvokeError::Code {
            message: format!("{e:#}"),
        })
    }

    /// The settings the engine was built with (for compiler children).
    fn engine_settings(&self) -> EngineSettings {
        self.config.engine_settings()
    }

    /// Records a use of a preloaded module in its file's time, off the async threads.
    fn touch_on_disk(&self, hash: &str) {
        if let Some(disk) = self.disk.clone() {
            let hash = hash.to_string();
            drop(tokio::task::spawn_blocking(move || disk.touch(&hash)));
        }
    }

    /// Finds the code for a request: memory, then disk, then the code sent along (taken out of
    /// staging first, so staged code never outlives the message that names it).
    async fn prepare(
        &self,
        function: &FunctionId,
        code: Option<Code>,
    ) -> Result<Prepared, InvokeError> {
        let code = code
            .map(|code| self.staging.take(code))
            .transpose()
            .map_err(|e| InvokeError::Worker {
                message: e.to_string(),
            })?;
        if let Some(compiled) = self.cache.get(&function.hash) {
            let source = if compiled.preloaded.swap(false, Ordering::Relaxed) {
                self.touch_on_disk(&function.hash);
                CodeSource::Disk
            } else {
                CodeSource::Memory
            };
            return Ok(Prepared::Ready(compiled, source));
        }
        if let Some(compiled) = self.load_from_disk(&function.hash, false).await {
            return Ok(Prepared::Ready(compiled, CodeSource::Disk));
        }
        match code {
            Some(code) => Ok(Prepared::Ready(
                self.compile(function, code).await?,
                CodeSource::Compiled,
            )),
            None => Ok(Prepared::NoCode),
        }
    }

    /// Loads precompiled modules from the disk cache into memory, most recently used first,
    /// while they fit in the memory cache: a restarted worker then serves its first
    /// invocations as fast as warm ones. Called before the worker joins the cluster.
    pub async fn preload(&self) -> usize {
        let Some(disk) = self.disk.clone() else {
            return 0;
        };
        let started = Instant::now();
        let recent = tokio::task::spawn_blocking(move || disk.recent())
            .await
            .unwrap_or_default();
        let mut loaded = 0;
        for (hash, file_bytes) in recent {
            // The loaded image is about the file's size; stop before evicting what we loaded.
            let held = self.cache.stats().bytes as usize;
            if held + file_bytes > self.config.cache_bytes {
                break;
            }
            if self.load_from_disk(&hash, true).await.is_some() {
                loaded += 1;
            }
        }
        if loaded > 0 {
            tracing::info!(modules = loaded, bytes = self.cache.stats().bytes, elapsed = ?started.elapsed(), "preloaded precompiled modules from the disk cache");
        }
        loaded
    }

    /// Compiles and caches pushed code (create/update broadcast).
    pub async fn cache_code(&self, push: CachePush) -> CacheReply {
        if self.cache.contains(&push.function.hash) {
            return CacheReply::Cached { compile_ms: 0 };
        }
        let started = Instant::now();
        match self.prepare(&push.function, Some(push.code)).await {
            Ok(_) => CacheReply::Cached {
                compile_ms: started.elapsed().as_millis() as u64,
            },
            Err(e) => CacheReply::Failed {
                reason: e.to_string(),
            },
        }
    }

    /// Drops code versions from memory and disk (function deleted or replaced).
    pub fn evict(&self, hashes: &[String]) -> usize {
        let n = self.cache.remove(hashes);
        if let Some(disk) = &self.disk {
            for hash in hashes {
                disk.remove(hash);
            }
        }
        tracing::info!(requested = hashes.len(), evicted = n, "evicted code");
        self.changed.notify_one();
        n
    }

    /// Records (or forgets) the code table's owner.
    pub(crate) fn set_cache_owner(
        &self,
        owner: Option<ractor::ActorRef<crate::cache_owner::CacheMessage>>,
    ) {
        *self.cache_owner.write().unwrap_or_else(|p| p.into_inner()) = owner;
    }

    /// Drops code versions through the table's owner, or here when it is between restarts
    /// (its table is empty then, but the files on disk must still go).
    pub(crate) fn evict_through_owner(self: &Arc<Self>, hashes: Vec<String>) {
        let owner = self
            .cache_owner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let hashes = match owner {
            Some(owner) => match owner.cast(crate::cache_owner::CacheMessage::Evict(hashes)) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(crate::cache_owner::CacheMessage::Evict(
                    hashes,
                ))) => hashes,
                Err(_) => return,
            },
            None => hashes,
        };
        let runtime = self.clone();
        drop(tokio::task::spawn_blocking(move || runtime.evict(&hashes)));
    }

    /// Empties the in-memory code table (its owner ended); the disk cache stays.
    pub(crate) fn clear_memory_cache(&self) {
        let n = self.cache.clear();
        if n > 0 {
            tracing::warn!(
                entries = n,
                "the code cache's owner ended: its table is emptied"
            );
            self.changed.notify_one();
        }
    }

    /// Whether a code version is cached in memory.
    pub fn is_cached(&self, hash: &str) -> bool {
        self.cache.contains(hash)
    }

    /// The worker's status for the Core.
    pub fn status(&self) -> WorkerStatus {
        // The reporter's tick: also when stalled code transfers give their bytes back.
        self.staging.sweep();
        let (memory_total, memory_free) = crate::memory::system_memory().unwrap_or((0, 0));
        let stats = self.cache.stats();
        let (cpus, cpu_load_permille) = crate::memory::cpu_load();
        WorkerStatus {
            name: self.config.name.clone(),
            memory_total,
            memory_free,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            slots_total: self.slots.as_ref().map_or(0, |(_, total)| *total),
            slots_free: self.slots.as_ref().map_or(0, |(free, _)| {
                u32::try_from(free.available_permits()).unwrap_or(u32::MAX)
            }),
            cached: self.cache.hashes(),
            cache: CacheReport {
                bytes: stats.bytes,
                capacity: stats.capacity,
                hits: stats.hits,
                misses: stats.misses,
                evictions: stats.evictions,
            },
            allocator: self.allocator.clone(),
            tags: self.config.tags.clone(),
            cpus,
            cpu_load_permille,
        }
    }

    /// Serves one invocation as [`Runtime::invoke`] does, on the calling task until its guest
    /// uses up a time slice and on the compute pool from then on ([`crate::compute`]).
    pub async fn invoke_here_then_pool(self: &Arc<Self>, request: InvokeRequest) -> InvokeReply {
        let runtime = self.clone();
        match self
            .compute
            .run(async move { runtime.invoke(request).await })
            .await
        {
            Ok((reply, moved)) => {
                if moved {
                    self.metrics.moved_to_pool.inc();
                }
                reply
            }
            Err(stopped) => InvokeReply::Failed(InvokeError::Worker {
                message: stopped.to_string(),
            }),
        }
    }

    /// The compute pool.
    pub(crate) fn compute(&self) -> &ComputePool {
        &self.compute
    }

    /// Serves one invocation: from memory, from disk, from code sent along, or "no code".
    pub async fn invoke(&self, request: InvokeRequest) -> InvokeReply {
        let started = Instant::now();
        let (compiled, source) = match self.prepare(&request.function, request.code).await {
            Ok(Prepared::Ready(compiled, source)) => (compiled, source),
            Ok(Prepared::NoCode) => return InvokeReply::NoCode,
            Err(e) => return InvokeReply::Failed(e),
        };
        let _slot = match &self.slots {
            Some((free, slots)) => match free.try_acquire() {
                Ok(permit) => Some(permit),
                Err(_) => return InvokeReply::Failed(InvokeError::NoSlot { slots: *slots }),
            },
            None => None,
        };
        // A guard, so an invocation whose invoker is killed or panics still gives its slot back.
        let in_flight = InFlight::enter(&self.in_flight);
        let timeout = Duration::from_millis(request.timeout_ms.max(1));
        let label = request.function.to_string();
        // The function's own limit, within the worker's cap (0: just the cap).
        let memory_limit = match usize::try_from(request.memory_limit_bytes) {
            Ok(0) | Err(_) => self.config.max_memory_bytes,
            Ok(limit) => limit.min(self.config.max_memory_bytes),
        };
        let allow = if request.allow_hosts.is_empty() {
            self.config.allow_hosts.clone()
        } else {
            request.allow_hosts
        };
        let egress = host::Egress {
            allow,
            client: Some(self.http.clone()),
        };
        let guest = Guest {
            label: &label,
            args_json: request.args_json,
            env: request.env,
            timeout,
            memory_limit,
            egress,
        };
        let result = self.run(&compiled, guest).await;
        drop(in_flight);
        self.metrics
            .invocation(source, result.is_ok(), started.elapsed().as_secs_f64());
        match result {
            Ok(mut output) => {
                output.source = source;
                InvokeReply::Done(output)
            }
            // A component holds several core instances: one slot per call does not cover it,
            // and Wasmtime's own refusal means the same as an empty pool.
            Err(InvokeError::Trap { message }) if message.contains("concurrent limit of") => {
                InvokeReply::Failed(InvokeError::NoSlot {
                    slots: self.slots.as_ref().map_or(0, |(_, slots)| *slots),
                })
            }
            Err(e) => {
                tracing::debug!(function = %label, error = %e, "invocation failed");
                InvokeReply::Failed(e)
            }
        }
    }

    /// Runs a compiled function once in a fresh store, within `timeout`.
    async fn run(
        &self,
        compiled: &Compiled,
        guest: Guest<'_>,
    ) -> Result<InvokeOutput, InvokeError> {
        let started = Instant::now();
        let memory_limit = guest.memory_limit;
        let ran = match &compiled.pre {
            Pre::Module(pre) => self.run_module(pre, compiled.abi, guest, None).await?,
            Pre::Script { engine, source } => {
                self.run_module(&engine.pre, Abi::JavaScript, guest, Some(source.clone()))
                    .await?
            }
            Pre::Component(pre) => self.run_component(pre, guest).await?,
        };
        let run_us = started.elapsed().as_micros() as u64;
        ran.into_output(compiled.abi, memory_limit, run_us)
    }

    /// A core module: FunLess ABI (`__invoke`), WASI command (`_start`), or the JavaScript
    /// engine (`__invoke`, with the function's `source`).
    async fn run_module(
        &self,
        pre: &wasmtime::InstancePre<HostState>,
        abi: Abi,
        guest: Guest<'_>,
        source: Option<Arc<[u8]>>,
    ) -> Result<Ran, InvokeError> {
        let (stdin, input) = if abi.uses_fl_imports() {
            (Vec::new(), guest.args_json.into_bytes())
        } else {
            (guest.args_json.into_bytes(), Vec::new())
        };
        let (wasi, io) = WasiIo::build(guest.label, stdin, &guest.env);
        let state = HostState {
            wasi,
            fl: FunlessIo {
                input,
                source,
                ..FunlessIo::default()
            },
            limits: GuestLimits::new(guest.memory_limit),
            egress: guest.egress,
        };
        let mut store = self.guest_store(state);

        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            if abi.uses_fl_imports() {
                let len = i32::try_from(store.data().fl.input.len())
                    .map_err(|_| wasmtime::format_err!("input too large"))?;
                let invoke = instance.get_typed_func::<i32, i32>(&mut store, "__invoke")?;
                invoke.call_async(&mut store, len).await.map(drop)
            } else {
                let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                start.call_async(&mut store, ()).await
            }
        };
        let outcome = within(guest.timeout, call).await?;
        let state = store.into_data();
        Ok(Ran::new(outcome, &io, state.limits.hit_memory, state.fl))
    }

    /// A WASI 0.2 component exporting `wasi:cli/run`, with its network grants.
    async fn run_component(
        &self,
        pre: &CommandPre<ComponentState>,
        guest: Guest<'_>,
    ) -> Result<Ran, InvokeError> {
        let (mut builder, io) =
            WasiIo::builder(guest.label, guest.args_json.into_bytes(), &guest.env);
        host::grant_network(&mut builder, &guest.egress);
        let state = ComponentState::new(
            builder.build(),
            EgressHooks::new(guest.egress, self.http_pool.clone()),
            GuestLimits::new(guest.memory_limit),
        );
        let mut store = self.guest_store(state);

        let call = async {
            let command = pre.instantiate_async(&mut store).await?;
            match command.wasi_cli_run().call_run(&mut store).await? {
                Ok(()) => Ok(()),
                // `run` returning an error is how a Rust `main` reports failure: exit code 1.
                Err(()) => Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(1))),
            }
        };
        let outcome = within(guest.timeout, call).await?;
        let state = store.into_data();
        let fl = FunlessIo {
            logs: state.hooks.logs,
            ..FunlessIo::default()
        };
        Ok(Ran::new(outcome, &io, state.limits.hit_memory, fl))
    }
}

/// What one run needs, whatever the function's form.
/// One invocation counted in flight while it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Guest<'a> {
    label: &'a str,
    args_json: String,
    /// The function's configuration, as its environment.
    env: std::sync::Arc<[(String, String)]>,
    timeout: Duration,
    memory_limit: usize,
    egress: host::Egress,
}

/// Runs `call` within `timeout`; the time limit covers host calls too.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, InvokeError> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| InvokeError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        })
}

/// What a finished run left: how it ended, its output pipes and its FunLess-side state.
struct Ran {
    outcome: wasmtime::Result<()>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    hit_memory: bool,
    fl: FunlessIo,
}

impl Ran {
    fn new(outcome: wasmtime::Result<()>, io: &WasiIo, hit_memory: bool, fl: FunlessIo) -> Self {
        Self {
            outcome,
            stdout: io.stdout.contents().to_vec(),
            stderr: io.stderr.contents().to_vec(),
            hit_memory,
            fl,
        }
    }

    /// The invocation's result by the function's ABI.
    fn into_output(
        self,
        abi: Abi,
        memory_limit: usize,
        run_us: u64,
    ) -> Result<InvokeOutput, InvokeError> {
        let Ran {
            outcome,
            stdout,
            stderr,
            hit_memory,
            fl,
        } = self;
        // Limits first: what they cause (a trap, an abort, a failed write) is only a symptom.
        if fl.output_too_large || (abi.stdout_is_result() && stdout.len() >= MAX_STDOUT_BYTES) {
            let limit = if abi.stdout_is_result() {
                MAX_STDOUT_BYTES
            } else {
                MAX_RESPONSE_BYTES
            };
            return Err(InvokeError::OutputTooLarge {
                limit_bytes: limit as u64,
            });
        }
        // A JavaScript engine refused memory reports it as its own error ("out of memory").
        if hit_memory && (outcome.is_err() || fl.error.is_some()) {
            return Err(InvokeError::MemoryLimit {
                limit_bytes: memory_limit as u64,
            });
        }
        let mut logs = fl.logs;
        if abi.uses_fl_imports() {
            push_lines(&mut logs, &stdout);
        }
        push_lines(&mut logs, &stderr);

        // A WASI `proc_exit` surfaces as an `I32Exit` error: 0 is a normal end.
        if let Err(e) = outcome {
            match e
                .downcast_ref::<wasmtime_wasi::I32Exit>()
                .map(|exit| exit.0)
            {
                Some(0) => {}
                Some(code) => {
                    let message = match (abi, &fl.error) {
                        (Abi::Funless | Abi::JavaScript, Some(error)) => {
                            String::from_utf8_lossy(error).into_owned()
                        }
                        _ => match stated_error(&stdout) {
                            Some(error) => error,
                            None => format!("exit code {code}: {}", tail(&stderr, 1024)),
                        },
                    };
                    return Err(InvokeError::Function {
                        message,
                        logs: logs.into_lines(),
                    });
                }
                // QuickJS has no stack check on WASI: deep recursion ends in Wasmtime's.
                None if abi == Abi::JavaScript
                    && e.downcast_ref::<wasmtime::Trap>()
                        == Some(&wasmtime::Trap::StackOverflow) =>
                {
                    return Err(InvokeError::Function {
                        message: JS_STACK_OVERFLOW.into(),
                        logs: logs.into_lines(),
                    });
                }
                None => {
                    return Err(InvokeError::Trap {
                        message: trap_message(&e),
                    });
                }
            }
        }
        let output = if abi.stdout_is_result() {
            as_json(stdout)?
        } else {
            if let Some(error) = fl.error {
                return Err(InvokeError::Function {
                    message: String::from_utf8_lossy(&error).into_owned(),
                    logs: logs.into_lines(),
                });
            }
            match fl.response {
                Some(bytes) => as_json(bytes)?,
                None => "null".to_string(),
            }
        };
        Ok(InvokeOutput {
            output_json: output,
            logs: logs.into_lines(),
            run_us,
            spawn_us: 0,
            worker_us: 0,
            source: CodeSource::Memory,
        })
    }
}

/// A failing program's own statement of its error: stdout holding exactly
/// `{"error": "..."}` (how fl's Python entry reports an exception, whose traceback went to
/// stderr, i.e. the logs), cut to 1,024 characters; `None` for any other output.
fn stated_error(stdout: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Stated {
        error: String,
    }
    let stated: Stated = serde_json::from_slice(stdout).ok()?;
    Some(stated.error.chars().take(1024).collect())
}

/// What a JavaScript function that exhausted the stack gets.
pub(crate) const JS_STACK_OVERFLOW: &str =
    "RangeError: Maximum call stack size exceeded (the function recursed too deeply)";

/// Most characters of a trap's message (and of a service's exit reason).
const MAX_TRAP_MESSAGE: usize = 512;

/// A trap's message without Wasmtime's backtrace (kilobytes of frame addresses that mean
/// nothing to the caller), naming the function it happened in.
fn trap_message(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = e
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        .collect();
    parts.dedup();
    let mut message = parts.join(": ");
    if let Some(name) = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|trace| trace.frames().first())
        .and_then(|frame| frame.func_name())
    {
        message.push_str(&format!(" (in {name})"));
    }
    shorten(message, MAX_TRAP_MESSAGE)
}

/// `text` cut to at most `max` characters, the cut marked.
fn shorten(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The function's output as JSON text: JSON as is, any other UTF-8 as a JSON string.
fn as_json(bytes: Vec<u8>) -> Result<String, InvokeError> {
    let text = String::from_utf8(bytes).map_err(|_| InvokeError::BadOutput {
        message: "the output is not valid UTF-8".into(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok("null".into());
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
        return Ok(trimmed.to_string());
    }
    serde_json::to_string(&text).map_err(|e| InvokeError::BadOutput {
        message: e.to_string(),
    })
}

fn push_lines(logs: &mut Logs, bytes: &[u8]) {
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        logs.push(line);
    }
}

fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

mod service;

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
