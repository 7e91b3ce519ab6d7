//! WASI for one invocation: stdin carries the JSON args of a WASI command or component, stdout
//! and stderr are captured in bounded in-memory pipes, and the environment holds the
//! function's configuration. Nothing else (files) is granted; components may get network
//! access from their allow-list (`component.rs`).

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
    /// A WASI preview 1 context reading `stdin`, capturing stdout and stderr, with `env` as
    /// its environment.
    pub(crate) fn build(
        program: &str,
        stdin: Vec<u8>,
        env: &[(String, String)],
    ) -> (WasiP1Ctx, WasiIo) {
        let (mut builder, io) = Self::builder(program, stdin, env);
        (builder.build_p1(), io)
    }

    /// The builder of such a context, for a component to add its grants to.
    pub(crate) fn builder(
        program: &str,
        stdin: Vec<u8>,
        env: &[(String, String)],
    ) -> (WasiCtxBuilder, WasiIo) {
        let io = WasiIo {
            stdout: MemoryOutputPipe::new(MAX_STDOUT_BYTES),
            stderr: MemoryOutputPipe::new(MAX_STDERR_BYTES),
        };
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&[program])
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(io.stdout.clone())
            .stderr(io.stderr.clone())
            .envs(env);
        (builder, io)
    }
}
