//! The shared vocabulary of FunLess nodes.
//!
//! Core and Worker never depend on each other: everything they exchange is defined here once.
//! - [`protocol`]: the typed messages and their payloads (read it in one sitting).
//! - [`codec`]: the one place that encodes and decodes payloads (bincode today).
//! - [`node`]: starting a cluster node with the cookie, joining a peer and staying joined.
//! - [`discovery`]: finding the Core without its address (encrypted multicast gossip, DNS).
//! - [`probe`]: the `--health-check` of images with no shell.
#![deny(missing_docs)]

pub mod codec;
pub mod discovery;
pub mod node;
pub mod probe;
pub mod process;
pub mod protocol;
pub mod settings;
pub mod supervisor;
pub mod tls;

pub use codec::{CodecError, Wire};
pub use protocol::{CORE_GROUP, WORKER_GROUP};
