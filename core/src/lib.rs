//! FunLess Core: the API server, the function store, the worker registry and the scheduler.
//!
//! Supervision tree of a Core process (one-for-one, restart-limited, see [`start`]): the
//! root [`Supervisor`](funless_actors::supervisor::Supervisor) supervises the cluster node,
//! gossip, the worker [`registry`] (the one remotable Core actor), the supervisors of the
//! event connectors ([`events`]) and sinks ([`sinks`]), the manager of users' long-running
//! [`services`], and the API's acceptor; [`tree`]
//! shows the live trees. The API serves requests on their own tasks and reaches workers
//! directly ([`dispatch`]) using the table the registry keeps ([`workers`]). The same address
//! serves the web [`console`] at `/ui`.
#![deny(missing_docs)]

pub mod activations;
pub mod canary;
pub mod catalog;
mod children;
pub mod code_transfer;
pub mod config;
pub mod console;
pub mod dispatch;
pub mod egress;
pub mod events;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod peers;
pub mod pending;
pub mod platform;
pub mod quotas;
pub mod registry;
pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod sinks;
pub mod store;
pub mod tokens;
pub mod tree;
pub mod validate;
pub mod workers;

mod launch;

pub use launch::{COOKIE_FILE, CoreConfig, CoreHandle, GossipSettings, resolve_cookie, start};
