//! WASI preview 1 for one invocation: stdin carries the JSON args of a WASI command, stdout and
//! stderr are captured in bounded in-memory pipes. Nothing else (files, network, environment)
//! is granted.

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// Most stdout a function may write, bytes (its result for a WASI command).
pub(crate) const MAX_STDOUT_BYTES: usize = 8 * 1024 * 1024;
/// Most stderr kept, bytes.
pub(crate) const MAX_STDERR_BYTES: usize = 256 * 1024;

/// The captured output pipes of an invocation.
pub(crate) struct WasiIo {
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl WasiIo {
    /// A WASI context reading `stdin` and capturing stdout and stderr.
    pub(crate) fn build(program: &str, stdin: Vec<u8>) -> (WasiP1Ctx, WasiIo) {
        let io = WasiIo {
            stdout: MemoryOutputPipe::new(MAX_STDOUT_BYTES),
            stderr: MemoryOutputPipe::new(MAX_STDERR_BYTES),
        };
        let ctx = WasiCtxBuilder::new()
            .args(&[program])
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(io.stdout.clone())
            .stderr(io.stderr.clone())
            .build_p1();
        (ctx, io)
    }
}
