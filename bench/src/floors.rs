//! The floors and the peer the platform is measured against, in the same run:
//!
//! - the **in-process floor**: `hello` invoked by the worker's own [`Runtime`] in this process,
//!   no HTTP, Core or cluster around it (what Wasmtime itself costs);
//! - the **network floor**: a plain HTTP server (axum, in this process, on its own threads)
//!   answering the same JSON as the platform does, no Wasm at all;
//! - the **peer**: `wasmtime serve` (Wasmtime's own CLI) running a `wasi:http` hello
//!   component, a new instance per request as the platform does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use funless_actors::protocol::{Code, FunctionId, InvokeReply, InvokeRequest};
use funless_worker::runtime::code_hash;
use funless_worker::{Runtime, RuntimeConfig};

use crate::load::Target;
use crate::platform::{Process, free_port};

/// The in-process floor: a runtime with `code` compiled, and the request that invokes it.
pub(crate) async fn in_process(code: Vec<u8>, args_json: &str) -> anyhow::Result<Arc<Target>> {
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let mut request = InvokeRequest {
        env: Default::default(),
        function: FunctionId {
            module: "_".into(),
            name: "hello".into(),
            hash: code_hash(&code),
        },
        args_json: args_json.to_string(),
        code: Some(Code::Inline(code)),
        timeout_ms: 30_000,
        memory_limit_bytes: 0,
        allow_hosts: Vec::new(),
    };
    // The first call compiles; later ones find the code in the runtime's cache, as a warm
    // worker does (the Core sends no code with them).
    match runtime.invoke(request.clone()).await {
        InvokeReply::Done(_) => {}
        other => bail!("in-process hello failed: {other:?}"),
    }
    request.code = None;
    Ok(Arc::new(Target::InProcess { runtime, request }))
}

/// The answer the platform gives for `hello` with these args.
fn hello_answer(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let args = value.get("args").unwrap_or(&value);
    let name = args.get("name").and_then(|n| n.as_str()).unwrap_or("World");
    serde_json::json!({ "data": { "payload": format!("Hello {name}!") } }).to_string()
}

/// The network floor: a plain HTTP server answering every POST like the platform's `hello`.
/// Stops when dropped.
pub(crate) struct PlainServer {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlainServer {
    /// Starts on a free 127.0.0.1 port with a runtime of `threads` threads of its own.
    pub(crate) fn start(threads: usize) -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), threads)
    }

    /// Starts on `addr` with a runtime of `threads` threads of its own.
    pub(crate) fn start_on(addr: SocketAddr, threads: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("network-floor".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let app = axum::Router::new().fallback(|body: Bytes| async move {
                        ([("content-type", "application/json")], hello_answer(&body))
                    });
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The network floor in a process of its own (`funless-bench floor-server`), as the Core is:
/// the client's process then holds only the client. Stopped (and its log folder removed) when
/// dropped.
pub(crate) struct FloorProcess {
    _process: Process,
    _dir: tempfile::TempDir,
    url: String,
}

impl FloorProcess {
    /// Starts this executable's `floor-server` on a free port and waits until it answers.
    pub(crate) async fn start(threads: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("funless-floor").tempdir()?;
        let port = free_port()?;
        let exe = std::env::current_exe().context("finding funless-bench's own path")?;
        let mut process = Process::spawn(
            "floor-server",
            Command::new(exe)
                .arg("floor-server")
                .args(["--port", &port.to_string()])
                .args(["--threads", &threads.to_string()]),
            dir.path().join("floor-server.log"),
        )?;
        let url = format!("http://127.0.0.1:{port}/");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            process.check_alive()?;
            if let Ok(r) = client.post(&url).body("{}").send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the floor server did not answer on {url} within 10 s:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            _process: process,
            _dir: dir,
            url,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

/// `funless-bench floor-server`: the network floor on 127.0.0.1:`port` until killed.
pub(crate) async fn serve_floor(port: u16, threads: usize) -> anyhow::Result<()> {
    let _server = PlainServer::start_on(SocketAddr::from(([127, 0, 0, 1], port)), threads)?;
    std::future::pending().await
}

/// Where the Wasmtime CLI is: `explicit`, else the install folder the evaluation documents,
/// else `wasmtime` on the PATH.
pub(crate) fn find_wasmtime(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_path_buf());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    home.iter()
        .map(|h| h.join(".cache/wasmtime-cli/bin/wasmtime"))
        .chain(std::env::var_os("PATH").into_iter().flat_map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("wasmtime"))
                .collect::<Vec<_>>()
        }))
        .find(|candidate| candidate.is_file())
}

/// `wasmtime serve` running a component; stopped when dropped.
pub(crate) struct WasmtimeServe {
    _process: Process,
    pub(crate) url: String,
    pub(crate) version: String,
}

impl WasmtimeServe {
    /// Starts `wasmtime serve -Scli --addr 127.0.0.1:<free port> <component>` (a new instance
    /// per request, its default for WASI 0.2 components, as the platform does) and waits until
    /// it answers.
    pub(crate) async fn start(
        wasmtime: &Path,
        component: &Path,
        log_dir: &Path,
        client: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        let version = Command::new(wasmtime)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .with_context(|| format!("running {} --version", wasmtime.display()))?;
        let port = free_port()?;
        let mut command = Command::new(wasmtime);
        command
            .arg("serve")
            // All of WASI, not only the proxy world's imports: Rust's std links wasi:cli.
            .arg("-Scli")
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg(component);
        let mut process = Process::spawn(
            "wasmtime serve",
            &mut command,
            log_dir.join("wasmtime-serve.log"),
        )?;
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            process.check_alive()?;
            if let Ok(r) = client.post(&url).body("{}").send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "wasmtime serve did not answer in 60 s:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _process: process,
            url,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_like_the_platform() {
        assert_eq!(
            hello_answer(br#"{"args":{"name":"bench"}}"#),
            r#"{"data":{"payload":"Hello bench!"}}"#
        );
        assert_eq!(
            hello_answer(b"not json"),
            r#"{"data":{"payload":"Hello World!"}}"#
        );
    }

    #[tokio::test]
    async fn the_network_floor_answers() -> anyhow::Result<()> {
        let server = PlainServer::start(1)?;
        let text = reqwest::Client::new()
            .post(server.url())
            .body(r#"{"args":{"name":"x"}}"#)
            .send()
            .await?
            .text()
            .await?;
        assert_eq!(text, r#"{"data":{"payload":"Hello x!"}}"#);
        Ok(())
    }
}
