//! Errors of the worker as a host (the guest's own failures are [`funless_actors::protocol::InvokeError`]).

/// Result with the worker's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the worker itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wasmtime could not be configured or set up.
    #[error("wasmtime: {0}")]
    Wasmtime(String),
    /// A file or folder the worker needs is unusable.
    #[error("{0}")]
    Io(String),
    /// An actor failed to start.
    #[error("actor: {0}")]
    Actor(String),
}
