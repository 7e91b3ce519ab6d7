//! End-to-end tests: real `funless-core`, `funless-worker` and `fl` processes on 127.0.0.1, on
//! ports chosen at run time, driven over HTTP. One test binary keeps link time down.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod abuse;
mod activations;
mod api;
mod browser;
mod canary;
mod cluster;
mod compat;
mod concurrency;
mod console;
mod discovery;
mod events;
mod failover;
mod faults;
mod fuzz;
mod harness;
mod health_check;
mod hostile;
mod javascript;
mod large_uploads;
mod lifecycle;
mod limits;
mod network;
mod python;
mod scheduling;
mod sdk_http;
mod secrets;
mod services;
mod several_cores;
mod sinks;
mod supervision;
mod tenancy;
mod tls;
mod versions;
