//! What a guest can reach: per-invocation host state and the linker that exposes it.
//! One file per capability under `host/`; adding one touches its file and [`linker`].

mod component;
mod funless;
mod http;
mod javascript;
mod wasi;

use wasmtime::{Engine, Linker, ResourceLimiter};

pub(crate) use component::{ComponentState, EgressHooks, HttpPool, grant_network, http_pool};
pub(crate) use funless::{FunlessIo, MAX_RESPONSE_BYTES};
pub(crate) use http::{Egress, egress_client};
pub(crate) use wasi::{MAX_STDOUT_BYTES, WasiIo};

/// Most log lines kept per invocation; later lines are counted, not kept.
pub(crate) const MAX_LOG_LINES: usize = 1000;
/// Most bytes of one log line kept.
pub(crate) const MAX_LOG_LINE_BYTES: usize = 4096;

/// Everything one invocation's `Store` holds. Built fresh for every invocation.
pub(crate) struct HostState {
    /// WASI preview 1 (both ABIs link it).
    pub(crate) wasi: wasmtime_wasi::p1::WasiP1Ctx,
    /// The FunLess ABI's input, response, error and logs.
    pub(crate) fl: FunlessIo,
    /// Memory and table limits of the store.
    pub(crate) limits: GuestLimits,
    /// Where `__http_request` may go.
    pub(crate) egress: Egress,
}

/// Most table elements one instance may have (function tables of real modules hold a few
/// thousand).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A store's data that carries its guest's [`GuestLimits`] (both forms of host state).
pub(crate) trait Limited {
    fn limits(&mut self) -> &mut GuestLimits;
}

impl Limited for HostState {
    fn limits(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

impl Limited for ComponentState {
    fn limits(&mut self) -> &mut GuestLimits {
        &mut self.limits
    }
}

/// The store's resource limits. Unlike Wasmtime's `StoreLimits` it remembers that the guest
/// hit its memory limit, so the failure that follows (usually an abort in the guest's
/// allocator) is reported as `memory_limit`, not as an anonymous trap.
#[derive(Debug)]
pub(crate) struct GuestLimits {
    /// Largest linear memory, bytes.
    pub(crate) memory_bytes: usize,
    /// Set when a growth past `memory_bytes` was refused.
    pub(crate) hit_memory: bool,
}

impl GuestLimits {
    pub(crate) fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            hit_memory: false,
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit_memory = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    // A component holds a few core instances (the program, libc shims, adapters).
    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// The linker of components.
pub(crate) use component::linker as component_linker;

/// The linker every core module is instantiated with: WASI preview 1 and the FunLess imports.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut HostState| &mut state.wasi)?;
    funless::add_to_linker(&mut linker)?;
    http::add_to_linker(&mut linker)?;
    javascript::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// Logs of one invocation, bounded in lines and line length.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    lines: Vec<String>,
    dropped: usize,
}

impl Logs {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        let bytes = &bytes[..bytes.len().min(MAX_LOG_LINE_BYTES)];
        self.lines.push(String::from_utf8_lossy(bytes).into_owned());
    }

    pub(crate) fn into_lines(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines
                .push(format!("[{} more log lines dropped]", self.dropped));
        }
        self.lines
    }
}
