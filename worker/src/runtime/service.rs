//! Running a service's replica: a WASI command, a `wasi:cli/run` component or a JavaScript
//! main run until it exits, with no time limit, its output streamed into the replica's log
//! ring. A JavaScript replica gets its environment as its configuration object, and the stop
//! request through the engine (its `service.stopped` promise) rather than on stdin.

use std::sync::Arc;

use funless_actors::protocol::{FunctionId, ReplicaStart};
use wasmtime_wasi::WasiCtxBuilder;

use super::{Prepared, Runtime, trap_message};
use crate::abi::Abi;
use crate::cache::Pre;
use crate::host::{self, ComponentState, EgressHooks, FunlessIo, GuestLimits, HostState};
use crate::services::{LogRing, LogStream, ServiceIo, StopSignal};

/// The module name services' code is cached under (outside the naming rule of modules).
const SERVICE_MODULE: &str = "~svc";

impl Runtime {
    /// Runs a replica until its program ends; answers whether that end was normal (returned
    /// from `_start` or `run`, or exit code 0) and how it ended.
    pub(crate) async fn run_service(
        &self,
        start: &ReplicaStart,
        ring: Arc<LogRing>,
        stdin: StopSignal,
    ) -> (bool, String) {
        let function = FunctionId {
            module: SERVICE_MODULE.into(),
            name: start.id.service.clone(),
            hash: start.hash.clone(),
        };
        let compiled = match self.prepare(&function, Some(start.code.clone())).await {
            Ok(Prepared::Ready(compiled, _)) => compiled,
            Ok(Prepared::NoCode) => return (false, "the worker has no code for it".into()),
            Err(e) => return (false, e.to_string()),
        };
        // A replica holds an instance slot for as long as it runs.
        let _slot = match &self.slots {
            Some((free, _)) => free.acquire().await.ok(),
            None => None,
        };
        let memory_limit = match usize::try_from(start.memory_limit_bytes) {
            Ok(0) | Err(_) => self.config.max_memory_bytes,
            Ok(limit) => limit.min(self.config.max_memory_bytes),
        };
        let allow = if start.allow_hosts.is_empty() {
            self.config.allow_hosts.clone()
        } else {
            start.allow_hosts.clone()
        };
        let egress = host::Egress {
            allow,
            client: Some(self.http.clone()),
        };
        let label = format!("{}.{}", shown(&start.id.service), start.id.index);
        let mut builder = WasiCtxBuilder::new();
        builder
            .args(&[label.as_str()])
            .envs(start.env.as_slice())
            .stdin(stdin.clone())
            .stdout(LogStream::stdout(ring.clone(), start.id.clone()))
            .stderr(LogStream::stderr(ring.clone(), start.id.clone()));
        let (outcome, hit_memory) = match (&compiled.pre, compiled.abi) {
            (Pre::Script { engine, source }, _) => {
                let config: serde_json::Map<String, serde_json::Value> = start
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                let state = HostState {
                    wasi: builder.build_p1(),
                    fl: FunlessIo {
                        input: serde_json::Value::Object(config).to_string().into_bytes(),
                        source: Some(source.clone()),
                        service: Some(ServiceIo {
                            out: LogStream::stdout(ring, start.id.clone()),
                            stop: stdin,
                        }),
                        ..FunlessIo::default()
                    },
                    limits: GuestLimits::new(memory_limit),
                    egress,
                };
                let mut store = self.guest_store(state);
                let outcome = async {
                    let instance = engine.pre.instantiate_async(&mut store).await?;
                    let len = i32::try_from(store.data().fl.input.len())
                        .map_err(|_| wasmtime::format_err!("configuration too large"))?;
                    let run = instance.get_typed_func::<i32, i32>(&mut store, "__run_service")?;
                    run.call_async(&mut store, len).await
                }
                .await;
                let state = store.into_data();
                let outcome = match (outcome, state.fl.error) {
                    (Ok(0), _) => Ok(()),
                    (Ok(_), error) => Err(wasmtime::Error::new(ScriptError(error.map_or_else(
                        || "the script failed".into(),
                        |e| String::from_utf8_lossy(&e).into_owned(),
                    )))),
                    // QuickJS has no stack check on WASI: deep recursion ends in Wasmtime's.
                    (Err(e), _)
                        if e.downcast_ref::<wasmtime::Trap>()
                            == Some(&wasmtime::Trap::StackOverflow) =>
                    {
                        Err(wasmtime::Error::new(ScriptError(
                            super::JS_STACK_OVERFLOW.into(),
                        )))
                    }
                    (Err(e), _) => Err(e),
                };
                (outcome, state.limits.hit_memory)
            }
            (Pre::Module(pre), Abi::WasiCommand) => {
                let state = HostState {
                    wasi: builder.build_p1(),
                    fl: FunlessIo::default(),
                    limits: GuestLimits::new(memory_limit),
                    egress,
                };
                let mut store = self.guest_store(state);
                let outcome = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let run = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    run.call_async(&mut store, ()).await
                }
                .await;
                (outcome, store.data().limits.hit_memory)
            }
            (Pre::Component(pre), _) => {
                host::grant_network(&mut builder, &egress);
                let state = ComponentState::new(
                    builder.build(),
                    EgressHooks::new(egress, self.http_pool.clone()),
                    GuestLimits::new(memory_limit),
                );
                let mut store = self.guest_store(state);
                let outcome = async {
                    let command = pre.instantiate_async(&mut store).await?;
                    match command.wasi_cli_run().call_run(&mut store).await? {
                        Ok(()) => Ok(()),
                        Err(()) => Err(wasmtime::Error::new(wasmtime_wasi::I32Exit(1))),
                    }
                }
                .await;
                (outcome, store.data().limits.hit_memory)
            }
            _ => {
                return (
                    false,
                    "a service must be a WASI command (exporting _start), a wasi:cli/run component or JavaScript"
                        .into(),
                );
            }
        };
        exit_of(outcome, hit_memory, memory_limit)
    }
}

/// What a JavaScript service's main threw (or how its engine failed).
#[derive(Debug)]
struct ScriptError(String);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScriptError {}

/// A service's name as its owner knows it: subjects' services are stored in their own
/// namespace (`name~<owner id>`), which the program need not see in its `argv[0]`.
fn shown(stored: &str) -> &str {
    match stored.rsplit_once('~') {
        Some((name, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => stored,
    }
}

/// Whether a program's end was normal, and how it ended.
fn exit_of(outcome: wasmtime::Result<()>, hit_memory: bool, memory_limit: usize) -> (bool, String) {
    let error = match outcome {
        // Returning from `_start` (or `run`) is exit code 0, as WASI sees it.
        Ok(()) => return (true, "exit code 0".into()),
        Err(e) => e,
    };
    if hit_memory {
        return (
            false,
            format!("exceeded its memory limit of {memory_limit} bytes"),
        );
    }
    // What a script threw is the user's text, of any length (up to the 8 MiB an error may
    // be): the reason is kept in the services table, stored and shown, so it is cut.
    if let Some(ScriptError(message)) = error.downcast_ref::<ScriptError>() {
        return (
            false,
            super::shorten(format!("uncaught {message}"), super::MAX_TRAP_MESSAGE),
        );
    }
    match error
        .downcast_ref::<wasmtime_wasi::I32Exit>()
        .map(|exit| exit.0)
    {
        Some(0) => (true, "exit code 0".into()),
        Some(code) => (false, format!("exit code {code}")),
        None => (false, format!("trapped: {}", trap_message(&error))),
    }
}

#[cfg(test)]
mod tests {
    use super::{exit_of, shown};

    #[test]
    fn programs_see_their_services_own_name() {
        assert_eq!(shown("ticker~12"), "ticker");
        assert_eq!(shown("ticker"), "ticker");
        assert_eq!(shown("a~b"), "a~b");
    }

    #[test]
    fn exits_are_told_apart() {
        assert_eq!(exit_of(Ok(()), false, 1), (true, "exit code 0".into()));
        let zero = wasmtime::Error::new(wasmtime_wasi::I32Exit(0));
        assert_eq!(exit_of(Err(zero), false, 1), (true, "exit code 0".into()));
        let one = wasmtime::Error::new(wasmtime_wasi::I32Exit(1));
        assert_eq!(exit_of(Err(one), false, 1), (false, "exit code 1".into()));
        let trap = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        let (normal, reason) = exit_of(Err(trap), false, 1);
        assert!(!normal && reason.starts_with("trapped"), "{reason}");
        let thrown = wasmtime::Error::new(super::ScriptError("Error: no sensor".into()));
        assert_eq!(
            exit_of(Err(thrown), false, 1),
            (false, "uncaught Error: no sensor".into())
        );
        let long = wasmtime::Error::new(super::ScriptError("x".repeat(100_000)));
        let (normal, reason) = exit_of(Err(long), false, 1);
        assert!(!normal && reason.chars().count() <= 520, "{}", reason.len());
        let oom = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        let (normal, reason) = exit_of(Err(oom), true, 1024);
        assert!(
            !normal && reason.contains("memory limit of 1024"),
            "{reason}"
        );
    }
}
