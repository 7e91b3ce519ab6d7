//! The FunLess REST API.
//!
//! [`types`] holds the request and response bodies shared with the `fl` CLI. With the `server`
//! feature (default) the crate also provides the axum [`router`], which serves the API path for
//! path like FunLess and talks to the Core through the narrow [`Backend`] trait, so this crate
//! knows nothing of actors, databases or Wasmtime.
#![deny(missing_docs)]

pub mod names;
pub mod types;

#[cfg(feature = "server")]
mod admission;
#[cfg(feature = "server")]
mod backend;
#[cfg(feature = "server")]
mod canary;
#[cfg(feature = "server")]
mod error;
#[cfg(feature = "server")]
mod extract;
mod limits;
#[cfg(feature = "server")]
mod openapi;
#[cfg(feature = "server")]
mod routes;
#[cfg(feature = "server")]
mod secrets;
#[cfg(feature = "server")]
mod serve;
#[cfg(feature = "server")]
mod services;
#[cfg(feature = "server")]
mod versions;

#[cfg(feature = "server")]
pub use backend::{Backend, FunctionUpload, Invocation, Subject, Timings};
#[cfg(feature = "server")]
pub use canary::CanaryBackend;
#[cfg(feature = "server")]
pub use error::{ApiError, ApiResult};
#[cfg(feature = "server")]
pub use limits::{HttpLimits, MAX_INVOKE_BODY, MAX_UPLOAD_BYTES};
#[cfg(feature = "server")]
pub use routes::{router, router_with};
#[cfg(feature = "server")]
pub use secrets::SecretsBackend;
#[cfg(feature = "server")]
pub use serve::{Server, serve};
#[cfg(feature = "server")]
pub use services::{MAX_LOG_LINES, ServicesBackend};
#[cfg(feature = "server")]
pub use versions::VersionsBackend;
