//! FunLess Worker: runs functions in Wasmtime.
//!
//! - [`runtime`]: the Wasmtime engine, the compiled-code cache and one invocation's run.
//! - `host/`: one file per host capability linked into guests (the FunLess `fl_imps`, WASI,
//!   components with `wasi:http` and sockets).
//! - [`gateway`]: the worker's one remotable actor; it hands every invocation to its own task.
//! - [`reporter`]: pushes the worker's status to the Core.
//! - [`start`]: builds the worker's actors; the binary adds the cluster node around it.
#![deny(missing_docs)]

mod abi;
mod artifact;
mod cache;
pub mod compiler;
mod disk;
mod engine;
mod error;
pub mod gateway;
mod host;
mod javascript;
mod memory;
mod metrics;
pub mod reporter;
pub mod runtime;
mod slices;

use std::sync::Arc;
use std::time::Duration;

use funless_actors::supervisor::{ChildSpec, Supervisor, SupervisorArgs, SupervisorMessage};
use ractor::{Actor, ActorRef};

pub use abi::Abi;
pub use compiler::{CompileLimits, Compiler};
pub use engine::AllocatorChoice;
pub use error::{Error, Result};
pub use runtime::{DEFAULT_CACHE_MB, Runtime, RuntimeConfig};

/// A running worker: its runtime and the supervisor of its actors.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The Wasmtime side.
    pub runtime: Arc<Runtime>,
    /// Supervises the gateway (member of [`funless_actors::WORKER_GROUP`]) and the reporter.
    pub supervisor: ActorRef<SupervisorMessage>,
    /// Ends when the supervisor stops (on request, or when a child keeps failing).
    pub done: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops the worker's actors.
    pub fn stop(&self) {
        self.supervisor.stop(Some("worker stopping".into()));
    }
}

/// Starts a worker's runtime and actors in this process (a node must be running for it to be
/// reachable from other processes; in the Core's embedded mode none is needed).
///
/// Supervision tree: a one-for-one supervisor (at most 5 restarts in 30 s) over the gateway
/// and the reporter. Both rebuild their state from the shared [`Runtime`], whose compiled
/// code survives their restarts.
pub async fn start(config: RuntimeConfig, report_every: Duration) -> Result<WorkerHandle> {
    let runtime = Arc::new(Runtime::new(config)?);
    // Before the gateway joins the cluster, so the Core never sees a half-loaded worker.
    runtime.preload().await;
    let gateway_runtime = runtime.clone();
    let gateway = ChildSpec {
        name: "gateway".into(),
        start: Arc::new(move |supervisor| {
            let runtime = gateway_runtime.clone();
            Box::pin(async move {
                let (actor, _) =
                    Actor::spawn_linked(None, gateway::Gateway, runtime, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    };
    let reporter_runtime = runtime.clone();
    let reporter = ChildSpec {
        name: "reporter".into(),
        start: Arc::new(move |supervisor| {
            let args = reporter::ReporterArgs {
                runtime: reporter_runtime.clone(),
                every: report_every,
            };
            Box::pin(async move {
                let (actor, _) =
                    Actor::spawn_linked(None, reporter::Reporter, args, supervisor).await?;
                Ok(actor.get_cell())
            })
        }),
    };
    let (supervisor, done) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            children: vec![gateway, reporter],
            max_restarts: 5,
            within: Duration::from_secs(30),
        },
    )
    .await
    .map_err(|e| Error::Actor(e.to_string()))?;
    Ok(WorkerHandle {
        runtime,
        supervisor,
        done,
    })
}
