//! Local servers for the network workloads of tests and benchmarks, all on 127.0.0.1 ports
//! chosen at run time, running on their own thread for the life of the process:
//!
//! - an HTTP **reply server**: `POST /reply` answers `{"got": <body>, "server_ms": <now>}`;
//! - an HTTP **bucket**: `PUT /bucket/{key}` stores the body, `GET /bucket/{key}` returns it;
//! - a TCP **line reply server**: answers each line `x` with `reply to x`.
//!
//! It also builds the example functions for tests ([`example`]), and says whether Python
//! functions can be built here ([`python_available`]).
//!
//! It is tooling, not part of the platform: it panics when it cannot bind a local port.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Default)]
struct Shared {
    bucket: Mutex<HashMap<String, Vec<u8>>>,
    http_requests: AtomicU64,
    tcp_connections: AtomicU64,
}

/// The running servers.
#[derive(Clone)]
pub struct Servers {
    /// Address of the HTTP reply server and bucket.
    pub http: SocketAddr,
    /// Address of the TCP line reply server.
    pub tcp: SocketAddr,
    shared: Arc<Shared>,
}

impl Servers {
    /// Starts the servers on free 127.0.0.1 ports.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        http.set_nonblocking(true).unwrap();
        tcp.set_nonblocking(true).unwrap();
        let servers = Self {
            http: http.local_addr().unwrap(),
            tcp: tcp.local_addr().unwrap(),
            shared: shared.clone(),
        };
        std::thread::Builder::new()
            .name("testkit-servers".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let tcp = tokio::net::TcpListener::from_std(tcp).unwrap();
                    tokio::spawn(serve_lines(tcp, shared.clone()));
                    let http = tokio::net::TcpListener::from_std(http).unwrap();
                    axum::serve(http, router(shared)).await.unwrap();
                });
            })
            .unwrap();
        servers
    }

    /// `http://<http>/reply`.
    pub fn reply_url(&self) -> String {
        format!("http://{}/reply", self.http)
    }

    /// `http://<http>/bucket/<key>`.
    pub fn bucket_url(&self, key: &str) -> String {
        format!("http://{}/bucket/{key}", self.http)
    }

    /// What the bucket holds under `key`.
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.bucket.lock().unwrap().get(key).cloned()
    }

    /// Objects in the bucket.
    pub fn objects(&self) -> usize {
        self.shared.bucket.lock().unwrap().len()
    }

    /// HTTP requests served so far.
    pub fn http_requests(&self) -> u64 {
        self.shared.http_requests.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn tcp_connections(&self) -> u64 {
        self.shared.tcp_connections.load(Ordering::Relaxed)
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route(
            "/reply",
            post(|State(shared): State<Arc<Shared>>, body: Bytes| async move {
                shared.http_requests.fetch_add(1, Ordering::Relaxed);
                let got = String::from_utf8_lossy(&body);
                // The body is echoed as JSON when it is JSON, as a string otherwise.
                let got = if got.trim_start().starts_with(['{', '[']) {
                    got.into_owned()
                } else {
                    format!("{:?}", got)
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                (
                    [("content-type", "application/json")],
                    format!(r#"{{"got":{got},"server_ms":{now}}}"#),
                )
            }),
        )
        .route(
            "/bucket/{key}",
            put(
                |State(shared): State<Arc<Shared>>, Path(key): Path<String>, body: Bytes| async move {
                    shared.http_requests.fetch_add(1, Ordering::Relaxed);
                    shared.bucket.lock().unwrap().insert(key, body.to_vec());
                    StatusCode::OK
                },
            )
            .get(
                |State(shared): State<Arc<Shared>>, Path(key): Path<String>| async move {
                    shared.http_requests.fetch_add(1, Ordering::Relaxed);
                    match shared.bucket.lock().unwrap().get(&key) {
                        Some(body) => (StatusCode::OK, body.clone()),
                        None => (StatusCode::NOT_FOUND, Vec::new()),
                    }
                },
            ),
        )
        .with_state(shared)
}

async fn serve_lines(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        shared.tcp_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if write
                    .write_all(format!("reply to {line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
    }
}

fn repo_root() -> PathBuf {
    FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The example functions, built once per test process with `examples/build.sh`.
fn examples_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_root().join("examples/build.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("running examples/build.sh");
        assert!(status.success(), "examples/build.sh failed");
    });
}

/// Where an example function's binary is (`examples/target/wasm/<name>.wasm`), built first.
pub fn example_path(name: &str) -> PathBuf {
    examples_built();
    repo_root().join(format!("examples/target/wasm/{name}.wasm"))
}

/// An example function's binary, built first.
pub fn example(name: &str) -> Vec<u8> {
    let path = example_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A JavaScript example's path (`examples/js/<name>.js`; source, nothing to build).
pub fn js_example_path(name: &str) -> PathBuf {
    repo_root().join(format!("examples/js/{name}.js"))
}

/// A JavaScript example's source.
pub fn js_example(name: &str) -> Vec<u8> {
    let path = js_example_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// What a [`Collector`] received: one entry per POST, with its `authorization` header.
pub type Received = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;

/// An HTTP server that records every POST body (any path), answering 201 — a stand-in for
/// CouchDB or a webhook. It can be stopped and started again on the same port.
pub struct Collector {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: Received,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    /// Starts on `port` (0: a free one), recording into `received`.
    pub fn start(port: u16, received: Received) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sink = received.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().fallback(
                    move |headers: axum::http::HeaderMap, body: Bytes| {
                        let sink = sink.clone();
                        async move {
                            let auth = headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            sink.lock().unwrap().push((auth, body.to_vec()));
                            StatusCode::CREATED
                        }
                    },
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            port,
            received,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether componentize-py can build Python functions here. When it cannot, a test that needs
/// it fails under `FUNLESS_REQUIRE_PYTHON=1` (CI) and is skipped with a note otherwise.
pub fn python_available() -> bool {
    let found = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        assert_ne!(
            std::env::var("FUNLESS_REQUIRE_PYTHON").as_deref(),
            Ok("1"),
            "FUNLESS_REQUIRE_PYTHON=1 but componentize-py is not installed: pip install componentize-py"
        );
        eprintln!("skipped: componentize-py is not installed (pip install componentize-py)");
    }
    found
}
