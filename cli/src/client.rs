//! The HTTP client of the FunLess API: one method per endpoint. Each returns a [`Reply`] that
//! keeps the raw body (printed as is with `--json`) and decodes it, on demand, into the
//! `funless_api::types` payload inside FunLess's `{"data": ...}` envelope.

use std::marker::PhantomData;
use std::time::Duration;

use anyhow::Context;
use funless_api::types::{
    ActivationInfo, ActivationStarted, AppScriptInfo, ClusterTree, CreatedSubject, Data,
    FunctionCreated, FunctionInfo, FunctionMetadata, InvokeRequest, ModuleInfo, ModuleRequest,
    Named, RollbackRequest, Scheduling, SchedulingLanguage, SubjectRequest, VersionInfo,
};
use funless_api::types::{ConfigChange, ConfigInfo, SecretInfo, SecretRequest};
use reqwest::multipart::{Form, Part};

use crate::progress::{self, Reporter, Sent};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ClientError;

mod canary;
mod services;

/// How long to wait for a TCP connection before reporting the host unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A successful answer: its raw body, and the payload type to decode it into.
#[derive(Debug)]
pub(crate) struct Reply<T> {
    /// The body as received (empty for 204).
    pub(crate) body: String,
    payload: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Reply<T> {
    /// The payload inside `{"data": ...}`.
    pub(crate) fn data(&self) -> Result<T, ClientError> {
        serde_json::from_str::<Data<T>>(&self.body)
            .map(|envelope| envelope.data)
            .map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// A function's code and settings, for create and update.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    /// Function name.
    pub(crate) name: String,
    /// The Wasm binary.
    pub(crate) code: Vec<u8>,
    /// File name sent with the code part.
    pub(crate) file_name: String,
    /// `wasm` or `js`, sent when known.
    pub(crate) language: Option<String>,
    /// Capacity and tag; sent only when one is set.
    pub(crate) metadata: FunctionMetadata,
    /// Whether the server waits for the workers to cache the code before answering.
    pub(crate) wait_for_workers: bool,
    /// FunLess `events` (a list of `{"type", "params"}`), sent when not empty.
    pub(crate) events: Vec<Value>,
    /// FunLess `sinks`, sent when not empty.
    pub(crate) sinks: Vec<Value>,
    /// On update: the percentage of invocations the new code gets as the canary.
    pub(crate) canary: Option<u8>,
}

impl Upload {
    /// The multipart form, and the count of code bytes sent when the code is large enough for
    /// its progress to be reported.
    fn into_form(self) -> Result<(Form, Option<(String, Sent)>), ClientError> {
        let mut sent = None;
        let code = if self.code.len() >= progress::REPORT_FROM_BYTES {
            let len = self.code.len() as u64;
            let (body, counted) = progress::counted_body(self.code);
            sent = Some((self.name.clone(), counted));
            Part::stream_with_length(body, len)
        } else {
            Part::bytes(self.code)
        };
        let code = code
            .file_name(self.file_name)
            .mime_str("application/octet-stream")
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let mut form = Form::new().text("name", self.name).part("code", code);
        if let Some(language) = self.language {
            form = form.text("language", language);
        }
        if !self.events.is_empty() {
            form = form.text("events", Value::Array(self.events).to_string());
        }
        if !self.sinks.is_empty() {
            form = form.text("sinks", Value::Array(self.sinks).to_string());
        }
        if self.metadata != FunctionMetadata::default() {
            let metadata = serde_json::to_string(&self.metadata)
                .map_err(|e| ClientError::Request(e.to_string()))?;
            form = form.text("metadata", metadata);
        }
        if let Some(percent) = self.canary {
            form = form.text("canary", percent.to_string());
        }
        Ok((
            form.text("wait_for_workers", self.wait_for_workers.to_string()),
            sent,
        ))
    }
}

/// A FunLess API client for one Core, or several serving one platform, and (optionally) one
/// bearer token.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    /// The Cores' API URLs, tried in order: a request goes to the next on a connection error.
    hosts: Vec<String>,
    token: Option<String>,
}

impl Client {
    /// A client of `hosts` (an `http://` URL or `host:port`, or several comma-separated; a
    /// trailing `/` is ignored).
    pub(crate) fn new(hosts: &str, token: Option<String>) -> anyhow::Result<Self> {
        let hosts = crate::config::normalize_hosts(hosts)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("fl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Self {
            http,
            hosts: hosts
                .iter()
                .map(|h| h.trim_end_matches('/').to_string())
                .collect(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// `GET /v1/fn`: the caller's modules.
    pub(crate) async fn list_modules(&self) -> Result<Reply<Vec<Named>>, ClientError> {
        self.send(self.request(Method::GET, "/v1/fn")).await
    }

    /// `GET /v1/fn/:mod`: a module with its functions.
    pub(crate) async fn get_module(&self, name: &str) -> Result<Reply<ModuleInfo>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/fn/{name}")))
            .await
    }

    /// `POST /v1/fn`: creates a module.
    pub(crate) async fn create_module(&self, name: &str) -> Result<Reply<Named>, ClientError> {
        let body = ModuleRequest {
            module: Named { name: name.into() },
        };
        self.send(self.request(Method::POST, "/v1/fn").json(&body))
            .await
    }

    /// `PUT /v1/fn/:mod`: renames a module.
    pub(crate) async fn rename_module(
        &self,
        name: &str,
        new_name: &str,
    ) -> Result<Reply<Named>, ClientError> {
        let body = ModuleRequest {
            module: Named {
                name: new_name.into(),
            },
        };
        self.send(
            self.request(Method::PUT, &format!("/v1/fn/{name}"))
                .json(&body),
        )
        .await
    }

    /// `DELETE /v1/fn/:mod`.
    pub(crate) async fn delete_module(&self, name: &str) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/fn/{name}")))
            .await
    }

    /// `POST /v1/fn/:mod` (multipart): creates a function.
    pub(crate) async fn create_function(
        &self,
        module: &str,
        upload: Upload,
    ) -> Result<Reply<FunctionCreated>, ClientError> {
        let (form, sent) = upload.into_form()?;
        let _progress = sent.map(|(name, sent)| Reporter::start(name, sent));
        self.send(
            self.request(Method::POST, &format!("/v1/fn/{module}"))
                .multipart(form),
        )
        .await
    }

    /// `PUT /v1/fn/:mod/:fn` (multipart): replaces a function's code.
    pub(crate) async fn update_function(
        &self,
        module: &str,
        function: &str,
        upload: Upload,
    ) -> Result<Reply<FunctionCreated>, ClientError> {
        let path = format!("/v1/fn/{module}/{function}");
        let (form, sent) = upload.into_form()?;
        let _progress = sent.map(|(name, sent)| Reporter::start(name, sent));
        self.send(self.request(Method::PUT, &path).multipart(form))
            .await
    }

    /// `GET /v1/fn/:mod/:fn`.
    pub(crate) async fn get_function(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<FunctionInfo>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/fn/{module}/{name}")))
            .await
    }

    /// `POST /v1/fn/:mod/:fn` with `"blocking": false`: starts the function in the background.
    pub(crate) async fn invoke_async(
        &self,
        module: &str,
        name: &str,
        version: Option<u64>,
        args: Map<String, Value>,
        script: Option<String>,
    ) -> Result<Reply<ActivationStarted>, ClientError> {
        let body = invoke_body(args, script, Some(false));
        self.send(
            self.request(Method::POST, &invoke_path(module, name, version))
                .json(&body),
        )
        .await
    }

    /// `GET /v1/fn/:mod/:fn/versions`: the kept versions, newest first.
    pub(crate) async fn versions(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<Vec<VersionInfo>>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/fn/{module}/{name}/versions")))
            .await
    }

    /// `POST /v1/fn/:mod/:fn/rollback`: a new current version with a kept version's code.
    pub(crate) async fn rollback(
        &self,
        module: &str,
        name: &str,
        version: u64,
    ) -> Result<Reply<FunctionCreated>, ClientError> {
        self.send(
            self.request(Method::POST, &format!("/v1/fn/{module}/{name}/rollback"))
                .json(&RollbackRequest { version }),
        )
        .await
    }

    /// `GET /v1/config/:mod[/:fn]`: a module's settings, or a function's with its module's.
    pub(crate) async fn config(
        &self,
        module: &str,
        function: Option<&str>,
    ) -> Result<Reply<ConfigInfo>, ClientError> {
        self.send(self.request(Method::GET, &config_path(module, function)))
            .await
    }

    /// `PUT /v1/config/:mod[/:fn]`: changes settings (a function's: a new version).
    pub(crate) async fn change_config(
        &self,
        module: &str,
        function: Option<&str>,
        change: &ConfigChange,
    ) -> Result<Reply<ConfigInfo>, ClientError> {
        self.send(
            self.request(Method::PUT, &config_path(module, function))
                .json(change),
        )
        .await
    }

    /// `PUT /v1/secrets/:name`: creates or rotates a secret (201 created, 200 rotated).
    pub(crate) async fn put_secret(
        &self,
        name: &str,
        value: String,
    ) -> Result<Reply<SecretInfo>, ClientError> {
        self.send(
            self.request(Method::PUT, &format!("/v1/secrets/{name}"))
                .json(&SecretRequest { value }),
        )
        .await
    }

    /// `GET /v1/secrets`.
    pub(crate) async fn list_secrets(&self) -> Result<Reply<Vec<SecretInfo>>, ClientError> {
        self.send(self.request(Method::GET, "/v1/secrets")).await
    }

    /// `DELETE /v1/secrets/:name`.
    pub(crate) async fn delete_secret(&self, name: &str) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/secrets/{name}")))
            .await
    }

    /// `DELETE /v1/fn/:mod/:fn/versions/:version`.
    pub(crate) async fn delete_version(
        &self,
        module: &str,
        name: &str,
        version: u64,
    ) -> Result<Reply<()>, ClientError> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/fn/{module}/{name}/versions/{version}"),
        ))
        .await
    }

    /// `GET /v1/activations/:id`.
    pub(crate) async fn activation(&self, id: &str) -> Result<Reply<ActivationInfo>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/activations/{id}")))
            .await
    }

    /// `GET /v1/fn/:mod/:fn/activations?limit=N`.
    pub(crate) async fn activations(
        &self,
        module: &str,
        name: &str,
        limit: usize,
    ) -> Result<Reply<Vec<ActivationInfo>>, ClientError> {
        self.send(self.request(
            Method::GET,
            &format!("/v1/fn/{module}/{name}/activations?limit={limit}"),
        ))
        .await
    }

    /// `DELETE /v1/fn/:mod/:fn`.
    pub(crate) async fn delete_function(
        &self,
        module: &str,
        name: &str,
    ) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/fn/{module}/{name}")))
            .await
    }

    /// `POST /v1/fn/:mod/:fn`: invokes a function; the payload is the function's output.
    pub(crate) async fn invoke(
        &self,
        module: &str,
        name: &str,
        version: Option<u64>,
        args: Map<String, Value>,
        script: Option<String>,
    ) -> Result<Reply<Value>, ClientError> {
        let body = invoke_body(args, script, None);
        self.send(
            self.request(Method::POST, &invoke_path(module, name, version))
                .json(&body),
        )
        .await
    }

    /// `GET /v1/admin/subjects`.
    /// `GET /v1/admin/tree`.
    pub(crate) async fn tree(&self) -> Result<Reply<ClusterTree>, ClientError> {
        self.send(self.request(Method::GET, "/v1/admin/tree")).await
    }

    pub(crate) async fn list_subjects(&self) -> Result<Reply<Vec<Named>>, ClientError> {
        self.send(self.request(Method::GET, "/v1/admin/subjects"))
            .await
    }

    /// `POST /v1/scripts/app`: uploads an APP script (multipart `name`, `file`).
    pub(crate) async fn create_app_script(
        &self,
        name: &str,
        yaml: String,
    ) -> Result<Reply<AppScriptInfo>, ClientError> {
        let form = Form::new()
            .text("name", name.to_string())
            .text("file", yaml);
        self.send(
            self.request(Method::POST, "/v1/scripts/app")
                .multipart(form),
        )
        .await
    }

    /// `GET /v1/scripts/app`: the scripts' names.
    pub(crate) async fn list_app_scripts(&self) -> Result<Reply<Vec<Named>>, ClientError> {
        self.send(self.request(Method::GET, "/v1/scripts/app"))
            .await
    }

    /// `GET /v1/scripts/app/:name`: one script.
    pub(crate) async fn get_app_script(
        &self,
        name: &str,
    ) -> Result<Reply<AppScriptInfo>, ClientError> {
        self.send(self.request(Method::GET, &format!("/v1/scripts/app/{name}")))
            .await
    }

    /// `DELETE /v1/scripts/app/:name`.
    pub(crate) async fn delete_app_script(&self, name: &str) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/scripts/app/{name}")))
            .await
    }

    /// `DELETE /v1/admin/subjects/:name`: revokes the subject's token.
    pub(crate) async fn revoke_subject(&self, name: &str) -> Result<Reply<()>, ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/admin/subjects/{name}")))
            .await
    }

    /// `POST /v1/admin/subjects`: the answer carries the new subject's token, shown once.
    pub(crate) async fn create_subject(
        &self,
        name: &str,
    ) -> Result<Reply<CreatedSubject>, ClientError> {
        let body = SubjectRequest {
            subject: Named { name: name.into() },
        };
        self.send(self.request(Method::POST, "/v1/admin/subjects").json(&body))
            .await
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let host = self.hosts.first().map_or("", String::as_str);
        let request = self.http.request(method, format!("{host}{path}"));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send<T>(&self, request: RequestBuilder) -> Result<Reply<T>, ClientError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|e| ClientError::Request(e.to_string()))?;
        let admin = request.url().path().starts_with("/v1/admin");
        let (host, response) = self.execute_on_any(&client, request).await?;
        let unreachable = |source| ClientError::Unreachable {
            host: host.to_string(),
            source,
        };
        let status = response.status();
        let reason = response
            .headers()
            .get(funless_api::types::REASON_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            let mut error = ClientError::from_answer(status, &body, self.hint(status, admin));
            if let (Some(reason), ClientError::Http { detail, .. }) = (reason, &mut error) {
                detail.push_str(&format!(" ({reason})"));
            }
            return Err(error);
        }
        Ok(Reply {
            body,
            payload: PhantomData,
        })
    }

    /// Sends `request` (built for the first host) to the first host that takes the
    /// connection: on a connection error the next host gets a copy, while there is one and
    /// the body can be copied (a streamed upload cannot: it goes to the first host only).
    /// Answers the host that answered and its response.
    async fn execute_on_any(
        &self,
        client: &reqwest::Client,
        request: reqwest::Request,
    ) -> Result<(&str, reqwest::Response), ClientError> {
        let first = self.hosts.first().map_or("", String::as_str);
        // What follows the host: the path and query, the same on every Core.
        let url = request.url();
        let tail = match url.as_str().strip_prefix(first) {
            Some(tail) => tail.to_string(),
            None => match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_string(),
            },
        };
        // A streamed body (an upload) cannot be sent twice: it goes to the first host that
        // takes a connection now.
        let start = if self.hosts.len() > 1 && request.try_clone().is_none() {
            self.first_reachable().await
        } else {
            0
        };
        let mut next = Some(request);
        for (i, host) in self.hosts.iter().enumerate().skip(start) {
            let Some(mut request) = next.take() else {
                break;
            };
            let last = i + 1 == self.hosts.len();
            if !last {
                next = request.try_clone();
            }
            if i > 0 {
                *request.url_mut() = reqwest::Url::parse(&format!("{host}{tail}"))
                    .map_err(|e| ClientError::Request(format!("{host}{tail}: {e}")))?;
            }
            match client.execute(request).await {
                Ok(response) => return Ok((host, response)),
                Err(e) if e.is_connect() && next.is_some() => {
                    eprintln!("fl: cannot reach {host}; trying {}", self.hosts[i + 1]);
                }
                Err(source) => {
                    return Err(ClientError::Unreachable {
                        host: host.clone(),
                        source,
                    });
                }
            }
        }
        Err(ClientError::Request(
            "no host to send the request to".into(),
        ))
    }

    /// The index of the first host that accepts a TCP connection (0 when none does: the
    /// request then fails there, naming it).
    async fn first_reachable(&self) -> usize {
        for (i, host) in self.hosts.iter().enumerate() {
            let Ok(url) = reqwest::Url::parse(host) else {
                continue;
            };
            let (Some(name), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let connect = tokio::net::TcpStream::connect((name, port));
            if let Ok(Ok(_)) = tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                return i;
            }
            eprintln!("fl: cannot reach {host}; trying the next host");
        }
        0
    }

    fn hint(&self, status: StatusCode, admin: bool) -> Option<&'static str> {
        match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() && admin => {
                Some("no token given: use --token, FL_TOKEN or `fl config set admin_token TOKEN`")
            }
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                Some("no token given: use --token, FL_TOKEN or `fl config set token TOKEN`")
            }
            StatusCode::FORBIDDEN if admin => Some(
                "admin commands need an admin token: --token, FL_TOKEN or `fl config set admin_token TOKEN`",
            ),
            _ => None,
        }
    }
}

/// A module's configuration, or a function's.
fn config_path(module: &str, function: Option<&str>) -> String {
    match function {
        Some(function) => format!("/v1/config/{module}/{function}"),
        None => format!("/v1/config/{module}"),
    }
}

/// Where an invocation goes: the function (its current version) or one kept version.
fn invoke_path(module: &str, name: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("/v1/fn/{module}/{name}/versions/{v}"),
        None => format!("/v1/fn/{module}/{name}"),
    }
}

fn invoke_body(
    args: Map<String, Value>,
    script: Option<String>,
    blocking: Option<bool>,
) -> InvokeRequest {
    InvokeRequest {
        args: Some(Value::Object(args)),
        blocking,
        scheduling: script.map(|script| Scheduling {
            language: SchedulingLanguage::App,
            script: Some(script),
        }),
    }
}
