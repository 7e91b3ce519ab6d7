//! JavaScript functions: one QuickJS engine module (built from `js-engine/` by `build.rs` and
//! embedded in this binary) serves every JavaScript function; a function is only its source.
//!
//! The engine is made ready once per worker, on the first JavaScript function: pre-initialised
//! with Wizer (QuickJS's runtime, context and prelude built, then the module's memory
//! snapshotted, so each invocation starts with them in place), compiled, and kept in memory
//! and in the disk cache. Each invocation instantiates it afresh (copy-on-write memory) and
//! hands it the source through the `fl_js` imports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module, Store};

use crate::artifact::Artifact;
use crate::compiler::{self, Compiler, Job};
use crate::disk::{DiskCache, Lookup};
use crate::engine::EngineSettings;
use crate::host::{FunlessIo, GuestLimits, HostState, WasiIo};

/// The engine module as built (empty when this worker was built without clang/wasi-libc).
static ENGINE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/js_engine.wasm"));

/// Memory the engine may use while it pre-initialises.
const INIT_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// Time the pre-initialisation may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this worker carries the engine.
pub(crate) fn available() -> bool {
    !ENGINE_WASM.is_empty()
}

/// Why a JavaScript function cannot run when the engine is missing.
pub(crate) const NOT_BUILT: &str = "this worker was built without the JavaScript engine \
     (building it needs clang, lld and wasi-libc: see the README); it cannot run JavaScript functions";

/// The engine, compiled and ready to instantiate.
pub(crate) struct JsEngine {
    /// Imports resolved once.
    pub(crate) pre: InstancePre<HostState>,
    /// Whether this is the pre-initialised snapshot.
    pub(crate) snapshot: bool,
}

impl std::fmt::Debug for JsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsEngine")
            .field("snapshot", &self.snapshot)
            .finish()
    }
}

/// Makes the engine ready: from the disk cache if a previous run left it there, else
/// pre-initialised (when `snapshot`) and compiled, then stored on disk.
pub(crate) async fn prepare(
    engine: &Engine,
    linker: &Linker<HostState>,
    snapshot: bool,
    disk: Option<Arc<DiskCache>>,
    compiler: &Compiler,
    settings: &EngineSettings,
    children: &compiler::Children,
) -> Result<JsEngine, String> {
    if !available() {
        return Err(NOT_BUILT.into());
    }
    let started = Instant::now();
    // The disk cache keys files by a 64-hex hash: the engine's bytes and the snapshot choice.
    let key = hex::encode(Sha256::digest(
        [ENGINE_WASM, &[u8::from(snapshot)]].concat(),
    ));
    let cached = match disk.clone() {
        Some(disk) => {
            let (engine, key) = (engine.clone(), key.clone());
            tokio::task::spawn_blocking(move || match disk.load(&engine, &key) {
                Lookup::Hit(Artifact::Module(module)) => Some(module),
                _ => None,
            })
            .await
            .ok()
            .flatten()
        }
        None => None,
    };
    let (module, source) = match cached {
        Some(module) => (module, "disk"),
        None => {
            let module = match compiler {
                Compiler::Child(program) => {
                    in_child(engine, program, settings, snapshot, children).await?
                }
                Compiler::InProcess => build_module(engine, linker, snapshot).await?,
            };
            if let Some(disk) = disk {
                let artifact = Artifact::Module(module.clone());
                let written =
                    tokio::task::spawn_blocking(move || disk.store(&key, &artifact)).await;
                if let Ok(Err(e)) = written {
                    tracing::warn!(error = %e, "cannot write the JavaScript engine to the disk cache");
                }
            }
            (module, "compiled")
        }
    };
    let warmed = module.clone();
    // Building the copy-on-write image is file-sized work: off the async threads. Then the
    // compilers' freed scratch goes back to the kernel.
    let _ = tokio::task::spawn_blocking(move || {
        Artifact::Module(warmed).warm_image();
        crate::memory::release_freed_heap();
    })
    .await;
    let pre = linker
        .instantiate_pre(&module)
        .map_err(|e| format!("the JavaScript engine does not link: {e:#}"))?;
    tracing::info!(snapshot, source, elapsed = ?started.elapsed(), "JavaScript engine ready");
    Ok(JsEngine { pre, snapshot })
}

/// The engine module, pre-initialised (when `snapshot`) and compiled, in this process.
pub(crate) async fn build_module(
    engine: &Engine,
    linker: &Linker<HostState>,
    snapshot: bool,
) -> Result<Module, String> {
    let wasm = if snapshot {
        pre_initialise(engine, linker).await?
    } else {
        ENGINE_WASM.to_vec()
    };
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || Module::new(&engine, &wasm))
        .await
        .map_err(|e| format!("compiler task failed: {e}"))?
        .map_err(|e| format!("cannot compile the JavaScript engine: {e:#}"))
}

/// The engine module built by a compiler child (see `compiler.rs`).
async fn in_child(
    engine: &Engine,
    program: &std::path::Path,
    settings: &EngineSettings,
    snapshot: bool,
    children: &compiler::Children,
) -> Result<Module, String> {
    match compiler::compile_in_child(
        engine,
        program,
        settings,
        Job::JsEngine { snapshot },
        &[],
        children,
    )
    .await
    {
        Ok(Artifact::Module(module)) => Ok(module),
        Ok(_) => Err("the compiler process did not return a module".into()),
        Err(e) => Err(format!("cannot build the JavaScript engine: {e}")),
    }
}

/// Runs the engine's `wizer-initialize` and snapshots the result into a new module.
async fn pre_initialise(engine: &Engine, linker: &Linker<HostState>) -> Result<Vec<u8>, String> {
    let (engine, linker) = (engine.clone(), linker.clone());
    let handle = tokio::runtime::Handle::current();
    // Wizer compiles the instrumented engine inside its (async) run: a blocking thread keeps
    // that compilation off the async threads.
    tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let (wasi, _io) = WasiIo::build("js-engine", Vec::new(), &[]);
            let state = HostState {
                wasi,
                fl: FunlessIo::default(),
                limits: GuestLimits::new(INIT_MEMORY_BYTES),
                egress: crate::host::Egress::default(),
            };
            let mut store = Store::new(&engine, state);
            store.limiter(|state| &mut state.limits);
            store.epoch_deadline_async_yield_and_update(crate::slices::SLICE_TICKS);
            let wizer = wasmtime_wizer::Wizer::new();
            let run = wizer.run(
                &mut store,
                ENGINE_WASM,
                async |store: &mut Store<HostState>, module: &Module| {
                    linker.instantiate_async(store, module).await
                },
            );
            tokio::time::timeout(INIT_TIMEOUT, run)
                .await
                .map_err(|_| "pre-initialising the JavaScript engine timed out".to_string())?
                .map_err(|e| format!("cannot pre-initialise the JavaScript engine: {e:#}"))
        })
    })
    .await
    .map_err(|e| format!("pre-initialisation task failed: {e}"))?
}
