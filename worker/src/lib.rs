//! FunLess Worker: runs functions in Wasmtime.
//!
//! - [`runtime`]: the Wasmtime engine, the compiled-code cache and one invocation's run.
//! - `host/`: one file per host capability linked into guests (the FunLess `fl_imps`, WASI).
//! - [`gateway`]: the worker's one remotable actor; it hands every invocation to its own task.
//! - [`reporter`]: pushes the worker's status to the Core.
//! - [`start`]: builds the worker's actors; the binary adds the cluster node around it.
#![deny(missing_docs)]

mod abi;
mod cache;
mod error;
pub mod gateway;
mod host;
mod memory;
pub mod reporter;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};

pub use abi::Abi;
pub use error::{Error, Result};
pub use runtime::{Runtime, RuntimeConfig};

/// A running worker: its runtime and actors.
#[derive(Debug)]
pub struct WorkerHandle {
    /// The Wasmtime side.
    pub runtime: Arc<Runtime>,
    /// The gateway actor (member of [`funless_actors::WORKER_GROUP`]).
    pub gateway: ActorRef<funless_actors::protocol::WorkerMessage>,
    /// The status reporter.
    pub reporter: ActorRef<reporter::ReporterMessage>,
}

impl WorkerHandle {
    /// Stops the worker's actors.
    pub fn stop(&self) {
        self.gateway.stop(Some("worker stopping".into()));
        self.reporter.stop(Some("worker stopping".into()));
    }
}

/// Starts a worker's runtime and actors in this process (a node must be running for it to be
/// reachable from other processes; in the Core's embedded mode none is needed).
pub async fn start(config: RuntimeConfig, report_every: Duration) -> Result<WorkerHandle> {
    let runtime = Arc::new(Runtime::new(config)?);
    let (gateway, _) = Actor::spawn(None, gateway::Gateway, runtime.clone())
        .await
        .map_err(|e| Error::Actor(e.to_string()))?;
    let (reporter, _) = Actor::spawn(
        None,
        reporter::Reporter,
        reporter::ReporterArgs {
            runtime: runtime.clone(),
            every: report_every,
        },
    )
    .await
    .map_err(|e| Error::Actor(e.to_string()))?;
    Ok(WorkerHandle {
        runtime,
        gateway,
        reporter,
    })
}
