//! The fake FunLess server (axum on 127.0.0.1:0) that the `fl` tests run against: it answers
//! with canned FunLess-shaped JSON and records every request it receives; and `fl` runs with a
//! clean environment.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(crate) const USER_TOKEN: &str = "user-tok";
pub(crate) const ADMIN_TOKEN: &str = "admin-tok";

/// One part of a multipart form.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) file_name: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) bytes: Vec<u8>,
}

/// A request as the fake server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Vec<u8>,
    pub(crate) fields: BTreeMap<String, Field>,
}

impl Recorded {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub(crate) fn text_field(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|f| String::from_utf8(f.bytes.clone()).expect("utf-8 field"))
    }
}

pub(crate) type Log = Arc<Mutex<Vec<Recorded>>>;

pub(crate) struct FakeServer {
    pub(crate) url: String,
    pub(crate) log: Log,
}

impl FakeServer {
    pub(crate) fn start() -> Self {
        let log = Log::default();
        // Python functions upload ~18 MB: more than axum's default 2 MB for a form.
        let app = Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(log.clone());
        let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                tx.send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv().expect("server address");
        Self {
            url: format!("http://{addr}"),
            log,
        }
    }

    /// The requests received so far, and forgets them.
    pub(crate) fn take(&self) -> Vec<Recorded> {
        std::mem::take(&mut *self.log.lock().expect("log lock"))
    }

    /// The only request received since the last call.
    pub(crate) fn one(&self) -> Recorded {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:#?}");
        all.remove(0)
    }
}

pub(crate) fn data(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(json!({ "data": value }))).into_response()
}

pub(crate) fn error(status: StatusCode, detail: &str) -> Response {
    (status, axum::Json(json!({"errors": {"detail": detail}}))).into_response()
}

pub(crate) fn function_created(name: &str, waited: bool) -> Value {
    json!({
        "name": name,
        "hash": "9f86d081884c7d65",
        "abi": "funless",
        "workers": {
            "waited": waited,
            "cached": if waited { json!(["worker1@10.0.0.5"]) } else { json!([]) },
            "failed": if waited {
                json!([{"worker": "worker2@10.0.0.6", "reason": "out of memory"}])
            } else {
                json!([])
            },
        }
    })
}

pub(crate) async fn handle(State(log): State<Log>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().expect("ascii header").to_string());
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/form-data"));
    let mut fields = BTreeMap::new();
    let mut body = Vec::new();
    if is_multipart {
        let mut multipart = Multipart::from_request(request, &())
            .await
            .expect("multipart");
        while let Some(field) = multipart.next_field().await.expect("field") {
            let name = field.name().unwrap_or_default().to_string();
            let file_name = field.file_name().map(str::to_string);
            let content_type = field.content_type().map(str::to_string);
            let bytes = field.bytes().await.expect("field bytes").to_vec();
            fields.insert(
                name,
                Field {
                    file_name,
                    content_type,
                    bytes,
                },
            );
        }
    } else {
        let bytes: Bytes = to_bytes(request.into_body(), 1 << 20).await.expect("body");
        body = bytes.to_vec();
    }
    let recorded = Recorded {
        method: method.clone(),
        path: path.clone(),
        authorization: authorization.clone(),
        body,
        fields,
    };
    log.lock().expect("log lock").push(recorded.clone());

    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let admin = authorization.as_deref() == Some(&format!("Bearer {ADMIN_TOKEN}"));
    if authorization.is_none() {
        return error(StatusCode::UNAUTHORIZED, "missing Authorization header");
    }
    match (method.as_str(), segments.as_slice()) {
        (_, ["v1", "admin", "subjects"]) if !admin => {
            error(StatusCode::FORBIDDEN, "this endpoint needs an admin token")
        }
        ("GET", ["v1", "admin", "subjects"]) => {
            data(StatusCode::OK, json!([{"name": "alice"}, {"name": "bob"}]))
        }
        ("DELETE", ["v1", "admin", "subjects", _]) if admin => {
            StatusCode::NO_CONTENT.into_response()
        }
        ("DELETE", ["v1", "scripts", "app", ..]) if !admin => {
            error(StatusCode::FORBIDDEN, "this endpoint needs an admin token")
        }
        ("POST", ["v1", "scripts", "app"]) => data(
            StatusCode::CREATED,
            json!({"id": 1, "name": "site", "script": {"tags": {}}, "source": "- default: []\n", "created_at": "2026-01-01T00:00:00Z"}),
        ),
        ("GET", ["v1", "scripts", "app"]) => data(StatusCode::OK, json!([{"name": "site"}])),
        ("GET", ["v1", "scripts", "app", name]) => data(
            StatusCode::OK,
            json!({"id": 1, "name": name, "script": {"tags": {}}, "source": "- default:\n    - workers: \"*\"\n", "created_at": "2026-01-01T00:00:00Z"}),
        ),
        ("DELETE", ["v1", "scripts", "app", _]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["v1", "admin", "subjects"]) => {
            let name = recorded.json()["subject"]["name"].clone();
            data(
                StatusCode::CREATED,
                json!({"name": name, "token": "secret-token-1234"}),
            )
        }
        ("GET", ["v1", "fn"]) => data(StatusCode::OK, json!([{"name": "_"}, {"name": "m"}])),
        ("POST", ["v1", "fn"]) => data(StatusCode::CREATED, recorded.json()["module"].clone()),
        ("GET", ["v1", "fn", "broken"]) => {
            (StatusCode::BAD_GATEWAY, "upstream exploded").into_response()
        }
        ("GET", ["v1", "fn", module]) => data(
            StatusCode::OK,
            json!({"name": module, "functions": [{"name": "hello"}, {"name": "sum"}]}),
        ),
        ("PUT", ["v1", "fn", _]) => data(StatusCode::OK, recorded.json()["module"].clone()),
        ("DELETE", ["v1", "fn", _]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["v1", "fn", _]) => {
            let name = recorded.text_field("name").unwrap_or_default();
            let waited = recorded.text_field("wait_for_workers").as_deref() != Some("false");
            data(StatusCode::CREATED, function_created(&name, waited))
        }
        ("PUT", ["v1", "fn", _, function]) => {
            data(StatusCode::OK, function_created(function, true))
        }
        ("GET", ["v1", "fn", module, "hello"]) => data(
            StatusCode::OK,
            json!({
                "name": "hello", "module": module, "hash": "9f86d081884c7d65",
                "abi": "wasi_command", "size": 1234,
                "metadata": {"capacity": 134217728, "tag": "edge", "retryable": false},
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z"
            }),
        ),
        ("DELETE", ["v1", "fn", _, "hello"]) => StatusCode::NO_CONTENT.into_response(),
        ("POST", ["v1", "fn", _, "hello"]) => {
            let who = recorded.json()["args"]["name"]
                .as_str()
                .unwrap_or("World")
                .to_string();
            data(StatusCode::OK, json!({"payload": format!("Hello {who}!")}))
        }
        (_, ["v1", "fn", _, function]) => error(
            StatusCode::NOT_FOUND,
            &format!("function '{function}' not found"),
        ),
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

/// A run of `fl` with a clean environment.
pub(crate) struct Fl {
    pub(crate) command: Command,
}

impl Fl {
    pub(crate) fn new(config: &Path) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fl"));
        command.env_clear().env("FL_CONFIG", config);
        Self { command }
    }

    pub(crate) fn host(mut self, host: &str) -> Self {
        self.command.env("FL_HOST", host);
        self
    }

    pub(crate) fn token(mut self, token: &str) -> Self {
        self.command.env("FL_TOKEN", token);
        self
    }

    /// No `FL_CONFIG`: the config is `$HOME/.fl/config`, as with FunLess's `fl`.
    pub(crate) fn home(mut self, home: &Path) -> Self {
        self.command.env_remove("FL_CONFIG").env("HOME", home);
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub(crate) fn run(mut self, args: &[&str]) -> Run {
        let output = self.command.args(args).output().expect("runs fl");
        Run::from(output)
    }
}

#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }
}

impl Run {
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "fl failed: {self:#?}");
        self
    }
}

/// A server, a temporary folder for the config, and `fl` pointed at both with the user token.
pub(crate) struct Setup {
    pub(crate) server: FakeServer,
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new() -> Self {
        Self {
            server: FakeServer::start(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.dir.path().join("fl").join("config")
    }

    /// `fl` with FL_HOST and FL_TOKEN set.
    pub(crate) fn fl(&self) -> Fl {
        Fl::new(&self.config())
            .host(&self.server.url)
            .token(USER_TOKEN)
    }

    pub(crate) fn wasm(&self) -> (PathBuf, Vec<u8>) {
        let code = b"\0asm\x01\0\0\0 pretend this is a function".to_vec();
        let path = self.dir.path().join("hello.wasm");
        std::fs::write(&path, &code).expect("writes wasm");
        (path, code)
    }
}

pub(crate) fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}
