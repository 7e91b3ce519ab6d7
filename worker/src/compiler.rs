//! Compiling in a child process.
//!
//! Cranelift touches ~5 MB of the binary's code pages and leaves tens of MB of freed scratch in
//! glibc's arenas that `malloc_trim` cannot hand back (live allocations sit between the holes):
//! a worker that compiled the JavaScript engine itself held 58 MB, one that loaded the same
//! engine precompiled 24 MB (`bench/footprint.sh`). So the worker binary compiles in a
//! short-lived child of itself (`funless-worker __compile ...`): the code goes in on stdin,
//! Wasmtime's serialized artifact comes out on stdout, and the worker loads it like a file of
//! its disk cache. The compiler's memory, and a compile bomb's, dies with the child.
//!
//! Children are bounded: at most [`CompileLimits::concurrency`] run at once (the others wait
//! their turn), each for at most [`CompileLimits::timeout`] and within an address-space limit
//! (`RLIMIT_AS`, set between fork and exec), so a burst of cold uploads or a compile bomb cannot
//! take the machine's memory. Concurrent compiles of one code version share one child
//! ([`crate::runtime`]).
//!
//! The child builds an engine from the same settings (on-demand allocation changes nothing in
//! the code; Wasmtime checks the artifact's compatibility when loading it anyway). The worker's
//! own engine then has no compiler at all: no JIT compiler in the long-running process, and
//! ~1 MB less of its code touched at start-up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use funless_actors::protocol::InvokeError;
use tokio::io::AsyncWriteExt;
use wasmtime::Engine;

use crate::artifact::Artifact;
use crate::engine::{self, AllocatorChoice, EngineSettings};

/// First argument that makes the worker binary a compiler child.
pub const CHILD_ARG: &str = "__compile";

/// Exit status of a child whose input does not compile (the message is on stderr).
const EXIT_REFUSED: u8 = 1;
/// Exit status of a child that failed for another reason.
const EXIT_FAILED: u8 = 2;

/// Where code is compiled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// In this process (library use: tests, the benchmark's in-process floor).
    #[default]
    InProcess,
    /// In a child process of this program, which must handle [`CHILD_ARG`] with
    /// [`child_main`] (the `funless-worker` binary does).
    Child(PathBuf),
}

impl Compiler {
    /// A child of the running program (Linux: `/proc/self/exe`, which still works after the
    /// binary was replaced on disk by an upgrade).
    pub fn child_of_this_program() -> Self {
        if cfg!(target_os = "linux") {
            return Self::Child(PathBuf::from("/proc/self/exe"));
        }
        match std::env::current_exe() {
            Ok(path) => Self::Child(path),
            Err(_) => Self::InProcess,
        }
    }
}

/// Bounds of compiler children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// Children running at once; more compiles wait for a turn.
    pub concurrency: usize,
    /// Time one compile may take (waiting for a turn not counted).
    pub timeout: Duration,
    /// Address space of a child compiling guest code (`RLIMIT_AS`), bytes; 0: no limit.
    pub memory_bytes: u64,
}

/// Address space a compiler child may use by default. Compiling a 12 MB module peaks well
/// under it; the rest is headroom for glibc's per-thread arenas (reserved, not used).
pub const DEFAULT_COMPILE_MEMORY_BYTES: u64 = 2 << 30;
/// Time a compile may take by default: a Python function (CPython in one component) takes
/// ~25 s on two x86_64 cores, and several times that on a Raspberry-Pi-class board.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time a child building the JavaScript engine may take.
const ENGINE_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Memory one compiler child is budgeted when the default concurrency is derived.
const CHILD_BUDGET_BYTES: u64 = 384 << 20;

impl Default for CompileLimits {
    /// One child per CPU, but no more than the memory holds at [`CHILD_BUDGET_BYTES`] each.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let by_memory = crate::memory::system_memory()
            .map_or(1, |(total, _)| (total / CHILD_BUDGET_BYTES) as usize);
        Self {
            concurrency: cpus.min(by_memory).max(1),
            timeout: DEFAULT_COMPILE_TIMEOUT,
            memory_bytes: DEFAULT_COMPILE_MEMORY_BYTES,
        }
    }
}

/// Flags of compiles, flattened into the worker's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct CompileArgs {
    /// Compiles at once (more wait for a turn); 0: one per CPU, at most one per 384 MiB of
    /// memory.
    #[arg(long, env = "FUNLESS_COMPILE_CONCURRENCY", default_value_t = 0)]
    pub compile_concurrency: usize,
    /// Time one compile may take, milliseconds; longer is refused as code that cannot run.
    #[arg(long, env = "FUNLESS_COMPILE_TIMEOUT_MS", default_value_t = DEFAULT_COMPILE_TIMEOUT.as_millis() as u64)]
    pub compile_timeout_ms: u64,
    /// Address space of one compiler child, MiB (0: no limit).
    #[arg(long, env = "FUNLESS_COMPILE_MEMORY_MB", default_value_t = DEFAULT_COMPILE_MEMORY_BYTES >> 20)]
    pub compile_memory_mb: u64,
}

impl CompileArgs {
    /// The limits these flags give.
    pub fn limits(&self) -> CompileLimits {
        let auto = CompileLimits::default();
        CompileLimits {
            concurrency: if self.compile_concurrency == 0 {
                auto.concurrency
            } else {
                self.compile_concurrency
            },
            timeout: Duration::from_millis(self.compile_timeout_ms.max(1)),
            memory_bytes: self.compile_memory_mb.saturating_mul(1 << 20),
        }
    }
}

/// Turns for compiler children, shared by every compile of a worker.
#[derive(Debug)]
pub(crate) struct Children {
    limits: CompileLimits,
    turns: tokio::sync::Semaphore,
}

impl Children {
    pub(crate) fn new(limits: CompileLimits) -> Self {
        Self {
            turns: tokio::sync::Semaphore::new(limits.concurrency.max(1)),
            limits,
        }
    }

    /// Waits for a turn to run a compile (a child, or the compiler in this process).
    pub(crate) async fn turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.turns.acquire().await.ok()
    }

    pub(crate) fn limits(&self) -> CompileLimits {
        self.limits
    }
}

/// What a child compiles.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Job {
    /// A module or component, read from stdin.
    Code,
    /// The JavaScript engine, pre-initialised or not.
    JsEngine { snapshot: bool },
    /// Build the pooling allocator and use one slot (nothing on stdout).
    PoolProbe,
}

impl Job {
    fn name(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::JsEngine { snapshot: true } => "js-engine",
            Self::JsEngine { snapshot: false } => "js-engine-plain",
            Self::PoolProbe => "pool-probe",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "code" => Some(Self::Code),
            "js-engine" => Some(Self::JsEngine { snapshot: true }),
            "js-engine-plain" => Some(Self::JsEngine { snapshot: false }),
            "pool-probe" => Some(Self::PoolProbe),
            _ => None,
        }
    }
}

/// How a compile in a child went.
#[derive(Debug)]
enum ChildOutcome {
    /// Wasmtime's serialized artifact.
    Compiled(Vec<u8>),
    /// The input does not compile: the compiler's message.
    Refused(String),
    /// The child failed (killed, crashed, could not report).
    Failed(String),
    /// The child ran out of its time.
    TimedOut(Duration),
    /// The child ran out of its address space.
    OutOfMemory(u64),
    /// The child could not be started.
    NotStarted(std::io::Error),
}

/// `<program> __compile <job> <max memory bytes> <pool slots>`: the one command line of a child.
fn child_command(program: &Path, settings: &EngineSettings, job: Job) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command
        .arg(CHILD_ARG)
        .arg(job.name())
        .arg(settings.max_memory_bytes.to_string())
        .arg(settings.pool_slots.to_string());
    command
}

/// Runs `job` in a child process of `program`, with `input` on its stdin, within `limits`.
async fn run_child(
    program: &Path,
    settings: &EngineSettings,
    job: Job,
    input: &[u8],
    limits: CompileLimits,
) -> ChildOutcome {
    let mut command = tokio::process::Command::from(child_command(program, settings, job));
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Guest code is bounded by the limits. Building the JavaScript engine (our own code)
    // instantiates a linear memory, which reserves gigabytes of address space by design, and
    // may take long on a slow board.
    let (memory, timeout) = match job {
        Job::Code => (limits.memory_bytes, limits.timeout),
        _ => (0, ENGINE_BUILD_TIMEOUT),
    };
    if memory > 0 {
        limit_address_space(&mut command, memory);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return ChildOutcome::NotStarted(e),
    };
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // The child reads all of its input before writing anything: no deadlock.
            if let Err(e) = stdin.write_all(input).await {
                return Err(format!("cannot hand the code to the compiler: {e}"));
            }
        }
        child
            .wait_with_output()
            .await
            .map_err(|e| format!("lost the compiler process: {e}"))
    };
    // On time-out the child is dropped, which kills it.
    let output = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => output,
        Ok(Err(message)) => return ChildOutcome::Failed(message),
        Err(_) => return ChildOutcome::TimedOut(timeout),
    };
    let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
    match output.status.code() {
        Some(0) => ChildOutcome::Compiled(output.stdout),
        Some(code) if code == i32::from(EXIT_REFUSED) => ChildOutcome::Refused(message),
        // An allocation over the limit aborts the child (SIGABRT), or its runtime reports it.
        _ if memory > 0 && out_of_memory(&output.status, &message) => {
            ChildOutcome::OutOfMemory(memory)
        }
        Some(code) => ChildOutcome::Failed(format!(
            "the compiler process failed (exit status {code}): {message}"
        )),
        None => ChildOutcome::Failed(killed(&output.status)),
    }
}

fn out_of_memory(status: &std::process::ExitStatus, message: &str) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGABRT) {
            return true;
        }
    }
    let _ = status;
    message.contains("memory allocation") || message.contains("out of memory")
}

/// Sets `RLIMIT_AS` of the child between fork and exec.
#[cfg(unix)]
fn limit_address_space(command: &mut tokio::process::Command, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe, on a value built
    // before the fork; it allocates nothing and touches no lock.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(unix))]
fn limit_address_space(_: &mut tokio::process::Command, _: u64) {}

/// Compiles `input` as `job` in a child of `program` and loads the artifact into `engine`:
/// what the worker does instead of compiling. Loading is file-sized work, so it runs on a
/// blocking thread, which then hands the freed buffers back to the kernel.
pub(crate) async fn compile_in_child(
    engine: &Engine,
    program: &Path,
    settings: &EngineSettings,
    job: Job,
    input: &[u8],
    children: &Children,
) -> Result<Artifact, InvokeError> {
    let turn = children.turn().await;
    let outcome = run_child(program, settings, job, input, children.limits()).await;
    drop(turn);
    let bytes = match outcome {
        ChildOutcome::Compiled(bytes) => bytes,
        ChildOutcome::Refused(message) => return Err(InvokeError::Code { message }),
        ChildOutcome::Failed(message) => return Err(InvokeError::Worker { message }),
        ChildOutcome::TimedOut(limit) => {
            return Err(InvokeError::Code {
                message: format!(
                    "compiling took longer than the limit of {} s",
                    limit.as_secs_f64()
                ),
            });
        }
        ChildOutcome::OutOfMemory(limit) => {
            return Err(InvokeError::Code {
                message: format!(
                    "compiling needs more than the compiler's memory limit of {} MiB",
                    limit >> 20
                ),
            });
        }
        ChildOutcome::NotStarted(e) => {
            return Err(InvokeError::Worker {
                message: format!(
                    "cannot start a compiler process ({}): {e}",
                    program.display()
                ),
            });
        }
    };
    let engine = engine.clone();
    tokio::task::spawn_blocking(move || {
        // SAFETY: the bytes are `Artifact::serialize` of our own binary's compiler child,
        // built with this engine's settings; Wasmtime checks the header and the settings.
        #[allow(unsafe_code)]
        let loaded = unsafe { Artifact::deserialize(&engine, &bytes) };
        drop(bytes);
        crate::memory::release_freed_heap();
        let artifact = loaded?;
        artifact.warm_image();
        Ok::<_, wasmtime::Error>(artifact)
    })
    .await
    .map_err(|e| InvokeError::Worker {
        message: format!("loader task failed: {e}"),
    })?
    .map_err(|e| InvokeError::Worker {
        message: format!("cannot load the compiler's output: {e:#}"),
    })
}

#[cfg(unix)]
fn killed(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "the compiler process was killed (SIGKILL: out of memory?)".into(),
        Some(signal) => format!("the compiler process was killed by signal {signal}"),
        None => "the compiler process ended without a status".into(),
    }
}

#[cfg(not(unix))]
fn killed(_: &std::process::ExitStatus) -> String {
    "the compiler process ended without a status".into()
}

/// Why the pooling allocator cannot be used, as a child found.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// The child tried and failed: the reason.
    Refused(String),
    /// No child could be started.
    NotStarted(std::io::Error),
}

/// Tries the pooling allocator of `settings` in a child of `program` (blocking: start-up only).
pub(crate) fn probe_pool(
    program: &std::path::Path,
    settings: &EngineSettings,
) -> Result<(), ProbeError> {
    let output = child_command(program, settings, Job::PoolProbe)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(ProbeError::NotStarted)?;
    match output.status.code() {
        Some(0) => Ok(()),
        Some(_) => Err(ProbeError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        )),
        None => Err(ProbeError::Refused(killed(&output.status))),
    }
}

/// The compiler child: `<program> __compile <job> <max memory bytes> <pool slots>`. Writes the serialized
/// artifact to stdout; a refusal or failure goes to stderr with its exit status.
pub fn child_main(args: &[String]) -> ExitCode {
    match child(args) {
        Ok(artifact) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(&artifact).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(EXIT_FAILED, &format!("cannot write the artifact: {e}")),
            }
        }
        Err((status, message)) => fail(status, &message),
    }
}

fn fail(status: u8, message: &str) -> ExitCode {
    // The parent reads this; nothing else is on stderr (the child has no tracing subscriber).
    let _ = writeln!(std::io::stderr(), "{message}");
    ExitCode::from(status)
}

fn child(args: &[String]) -> Result<Vec<u8>, (u8, String)> {
    let failed = |message: String| (EXIT_FAILED, message);
    let (Some(job), Some(max_memory), Some(slots)) = (args.first(), args.get(1), args.get(2))
    else {
        return Err(failed(format!(
            "usage: {CHILD_ARG} <job> <max memory bytes> <pool slots>"
        )));
    };
    let job = Job::parse(job).ok_or_else(|| failed(format!("unknown job {job}")))?;
    let max_memory_bytes = max_memory
        .parse()
        .map_err(|_| failed(format!("not a byte count: {max_memory}")))?;
    let pool_slots = slots
        .parse()
        .map_err(|_| failed(format!("not a slot count: {slots}")))?;
    if let Job::PoolProbe = job {
        let settings = EngineSettings {
            allocator: AllocatorChoice::Auto,
            pool_slots,
            max_memory_bytes,
        };
        return engine::pooling_engine(&settings, true, true)
            .map(|_| Vec::new())
            .map_err(|e| failed(format!("{e:#}")));
    }
    let (engine, _) = engine::build(
        &EngineSettings {
            allocator: AllocatorChoice::OnDemand,
            pool_slots,
            max_memory_bytes,
        },
        engine::Compiles::Here,
    )
    .map_err(|e| failed(format!("cannot build the engine: {e:#}")))?;
    match job {
        Job::Code => {
            let mut code = Vec::new();
            std::io::stdin()
                .read_to_end(&mut code)
                .map_err(|e| failed(format!("cannot read the code: {e}")))?;
            let artifact =
                Artifact::compile(&engine, &code).map_err(|e| (EXIT_REFUSED, format!("{e:#}")))?;
            artifact
                .serialize()
                .map_err(|e| failed(format!("cannot serialize: {e:#}")))
        }
        Job::JsEngine { snapshot } => {
            let linker = crate::host::linker(&engine)
                .map_err(|e| failed(format!("cannot link the host functions: {e:#}")))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| failed(format!("cannot start a runtime: {e}")))?;
            let module = runtime
                .block_on(crate::javascript::build_module(&engine, &linker, snapshot))
                .map_err(failed)?;
            module
                .serialize()
                .map_err(|e| failed(format!("cannot serialize: {e:#}")))
        }
        Job::PoolProbe => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_round_trip() {
        for job in [
            Job::Code,
            Job::PoolProbe,
            Job::JsEngine { snapshot: true },
            Job::JsEngine { snapshot: false },
        ] {
            assert_eq!(Job::parse(job.name()).map(Job::name), Some(job.name()));
        }
        assert!(Job::parse("rm -rf").is_none());
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_as_not_started() {
        let outcome = run_child(
            std::path::Path::new("/nonexistent/funless-worker"),
            &EngineSettings {
                allocator: AllocatorChoice::OnDemand,
                pool_slots: 0,
                max_memory_bytes: 1 << 20,
            },
            Job::Code,
            b"\0asm\x01\0\0\0",
            CompileLimits::default(),
        )
        .await;
        assert!(
            matches!(outcome, ChildOutcome::NotStarted(_)),
            "{outcome:?}"
        );
    }
}
