//! FunLess Worker: runs functions in Wasmtime.
//!
//! - [`runtime`]: the Wasmtime engine, the compiled-code cache and one invocation's run.
//! - `host/`: one file per host capability linked into guests (the FunLess `fl_imps`, WASI,
//!   components with `wasi:http` and sockets).
//! - [`gateway`]: the worker's one remotable actor; it hands every invocation to its own
//!   short-lived invoker actor under the invocation supervisor (`invoker`).
//! - [`reporter`]: pushes the worker's status (and the service replicas it runs) to the Core.
//! - `services`: the `services` supervisor and the replicas of users' long-running services.
//! - [`start`]: builds the worker's actors; the binary adds the cluster node around it.
#![deny(missing_docs)]

mod abi;
mod artifact;
mod cache;
mod cache_owner;
pub mod compiler;
mod compute;
mod disk;
mod engine;
mod error;
pub mod gateway;
mod host;
mod invoker;
mod javascript;
mod memory;
mod metrics;
pub mod reporter;
pub mod runtime;
mod services;
mod slices;
pub mod staging;

use std::sync::Arc;
use std::time::Duration;

use funless_actors::supervisor::{
    ChildSpec, Intensity, Strategy, Supervisor, SupervisorArgs, SupervisorMessage, start_actor,
};
use ractor::{Actor, ActorRef};

pub use abi::Abi;
pub use compiler::{CompileLimits, Compiler};
pub use engine::AllocatorChoice;
pub use error::{Error, Result};
pub use runtime::{DEFAULT_CACHE_MB, Runtime, RuntimeConfig, default_compute_threads};

/// A running worker: its runtime and the root of its supervision tree.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The Wasmtime side.
    pub runtime: Arc<Runtime>,
    /// The root supervisor (see [`start_with`] for the tree).
    pub supervisor: ActorRef<SupervisorMessage>,
    /// Ends when the root supervisor stops (on request, or when it gives up).
    pub done: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the worker's actors.
    pub fn stop(&self) {
        self.supervisor.stop(Some("worker stopping".into()));
    }
}

/// How a worker's tree is built beyond its runtime.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Interval of the status reports to the Core.
    pub report_every: Duration,
    /// Whether the gateway obeys fault-injection requests (tests and drills only).
    pub fault_injection: bool,
    /// The root supervisor's restart intensity.
    pub intensity: Intensity,
    /// Children started before the worker's own: the binary's cluster node, discovery and
    /// Core link (a restart of one of them restarts everything after it).
    pub before: Vec<ChildSpec>,
    /// Children started after the worker's own (the metrics endpoint).
    pub after: Vec<ChildSpec>,
}

impl WorkerOptions {
    /// Options with nothing around the worker's own actors.
    pub fn reporting_every(report_every: Duration) -> Self {
        Self {
            report_every,
            fault_injection: false,
            intensity: Intensity::default(),
            before: Vec::new(),
            after: Vec::new(),
        }
    }
}

/// Starts a worker's runtime and actors in this process, with no cluster node of its own (in
/// the Core's embedded mode none is needed): see [`start_with`].
pub async fn start(config: RuntimeConfig, report_every: Duration) -> Result<WorkerHandle> {
    let runtime = Arc::new(Runtime::new(config)?);
    start_with(runtime, WorkerOptions::reporting_every(report_every)).await
}

/// Starts a worker's runtime and its supervision tree.
///
/// The root supervisor is `one_for_one`: its children share only the [`Runtime`] (engine,
/// compiled code on disk), which outlives every restart, and find each other through it, so
/// none needs another one restarted with it. In order: the options' `before` children (the
/// binary's `cluster` supervisor: node, discovery, Core link, `rest_for_one` among
/// themselves), `code-cache` (owns the code table, preloads it from disk before the gateway
/// joins), `invocations` (the invocation supervisor, one invoker per request), `services`
/// (one temporary actor per replica of a long-running service), `gateway` (the remotable
/// actor), `reporter` (status pushes), then the `after` children (metrics endpoint). A gateway or cache restart does not touch invocations in flight. At most
/// `options.intensity` restarts (default 5 in 30 s); beyond that the root fails and `done`
/// ends.
pub async fn start_with(runtime: Arc<Runtime>, options: WorkerOptions) -> Result<WorkerHandle> {
    let (supervisor, done) = Actor::spawn(None, Supervisor, tree_args(&runtime, &options))
        .await
        .map_err(|e| Error::Actor(e.to_string()))?;
    Ok(WorkerHandle {
        runtime,
        supervisor,
        done,
    })
}

/// The worker's tree as a child of another supervisor (the Core's, in the single-process
/// mode): the same tree as [`start_with`] builds, rebuilt at every restart.
pub fn tree(runtime: Arc<Runtime>, options: WorkerOptions) -> ChildSpec {
    let name = runtime.name().to_string();
    ChildSpec::supervisor(name, "worker node", move || {
        let args = tree_args(&runtime, &options);
        Box::pin(async move { Ok(args) })
    })
}

fn tree_args(runtime: &Arc<Runtime>, options: &WorkerOptions) -> SupervisorArgs {
    let runtime = runtime.clone();
    let name = runtime.name().to_string();
    let invocations: invoker::InvocationsSlot = Arc::default();
    let mut children = options.before.clone();
    let cache_runtime = runtime.clone();
    children.push(ChildSpec::worker(
        "code-cache",
        "owns the compiled-code table (ETS-style): preload, evictions",
        start_actor(move || (cache_owner::CacheOwner, cache_runtime.clone())),
    ));
    let slot = invocations.clone();
    children.push(ChildSpec::worker(
        "invocations",
        "invocation supervisor: one linked invoker per request",
        start_actor(move || (invoker::Invocations, slot.clone())),
    ));
    children.push(services::supervisor_child(runtime.clone()));
    let gateway_args = gateway::GatewayArgs {
        runtime: runtime.clone(),
        invocations,
        fault_injection: options.fault_injection,
    };
    children.push(ChildSpec::worker(
        "gateway",
        "remotable actor of the workers' group: invocations, code pushes, status",
        start_actor(move || (gateway::Gateway, gateway_args.clone())),
    ));
    let reporter_args = reporter::ReporterArgs {
        runtime: runtime.clone(),
        every: options.report_every,
    };
    children.push(ChildSpec::worker(
        "reporter",
        "pushes the worker's status to the Core",
        start_actor(move || (reporter::Reporter, reporter_args.clone())),
    ));
    children.extend(options.after.iter().cloned());
    SupervisorArgs {
        name,
        role: "worker node".into(),
        strategy: Strategy::OneForOne,
        children,
        max_restarts: options.intensity.max_restarts,
        within: options.intensity.within,
    }
}
