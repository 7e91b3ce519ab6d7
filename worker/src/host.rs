//! What a guest can reach: per-invocation host state and the linker that exposes it.
//! One file per capability under `host/`; adding one touches its file and [`linker`].

mod funless;
mod wasi;

use wasmtime::{Engine, Linker, StoreLimits};

pub(crate) use funless::FunlessIo;
pub(crate) use wasi::WasiIo;

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
    pub(crate) limits: StoreLimits,
}

/// The linker every function is instantiated with: WASI preview 1 and the FunLess imports.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut HostState| &mut state.wasi)?;
    funless::add_to_linker(&mut linker)?;
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
