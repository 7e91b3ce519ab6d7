//! Routes and handlers of the FunLess REST API.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::admission::{Admitted, Gate, admit};
use crate::backend::{Backend, FunctionUpload, Subject, Timings};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, Auth, field_text, form_fields, json_body};
use crate::limits::HttpLimits;
use crate::names;
use crate::types::{
    ActivationStarted, CrashRequest, Data, FunctionCreated, FunctionMetadata, InvokeRequest,
    Language, ModuleRequest, NodeRequest, SchedulingLanguage, SubjectRequest,
};

/// Largest accepted APP script, bytes.
pub(crate) const MAX_SCRIPT_BYTES: usize = 64 * 1024;

/// The whole API as a router with the default [`HttpLimits`], ready to serve or to drive in
/// tests without a socket.
pub fn router<B: Backend>(backend: Arc<B>) -> Router {
    router_with(backend, HttpLimits::default())
}

/// The whole API as a router with these limits (serve it with [`crate::serve`] for the
/// connection-level ones).
pub fn router_with<B: Backend>(backend: Arc<B>, limits: HttpLimits) -> Router {
    let gate = Arc::new(Gate::new(backend.clone(), limits.clone()));
    let upload_limit = DefaultBodyLimit::max(limits.max_upload_bytes);
    Router::new()
        .route("/v1", get(liveness))
        .route("/v1/", get(liveness))
        .route("/health", get(health))
        .route("/metrics", get(metrics::<B>))
        .route("/v1/openapi.json", get(openapi_document))
        .route(
            "/v1/admin/subjects",
            get(list_subjects::<B>).post(create_subject::<B>),
        )
        .route(
            "/v1/admin/subjects/{name}",
            axum::routing::delete(revoke_subject::<B>),
        )
        .route("/v1/workers", get(list_workers::<B>))
        .route("/v1/admin/nodes", axum::routing::post(connect_node::<B>))
        .route("/v1/admin/tree", get(tree::<B>))
        .route("/v1/admin/crash", axum::routing::post(crash::<B>))
        .route(
            "/v1/scripts/app",
            get(list_app_scripts::<B>).post(create_app_script::<B>),
        )
        .route(
            "/v1/scripts/app/{name}",
            get(get_app_script::<B>).delete(delete_app_script::<B>),
        )
        .route("/v1/fn", get(list_modules::<B>).post(create_module::<B>))
        .route(
            "/v1/fn/{module}",
            get(get_module::<B>)
                .put(rename_module::<B>)
                .delete(delete_module::<B>)
                .post(create_function::<B>.layer(upload_limit)),
        )
        .route(
            "/v1/fn/{module}/{function}",
            get(get_function::<B>)
                .put(update_function::<B>.layer(upload_limit))
                .delete(delete_function::<B>)
                .post(invoke::<B>),
        )
        .route(
            "/v1/fn/{module}/{function}/activations",
            get(list_activations::<B>),
        )
        .route("/v1/activations/{id}", get(get_activation::<B>))
        .merge(crate::versions::routes::<B>())
        .merge(crate::secrets::routes::<B>())
        .merge(crate::canary::routes::<B>())
        .merge(crate::services::routes::<B>(upload_limit))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(gate, admit::<B>))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(backend)
}

/// A handler that panicked (a bug): logged, answered 500, and the server goes on.
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::Internal("internal error: the request handler failed; see the core's log".into())
        .into_response()
}

async fn liveness() -> &'static str {
    "FunLess API is up\n"
}

async fn health() -> Response {
    json_response(StatusCode::OK, r#"{"status":"ok"}"#.to_string())
}

async fn openapi_document() -> Response {
    json_response(StatusCode::OK, crate::openapi::json().to_string())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

async fn metrics<B: Backend>(State(backend): State<Arc<B>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        backend.metrics_text(),
    )
        .into_response()
}

pub(crate) fn body(bytes: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    bytes.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge("the request body is larger than allowed".into())
        } else {
            ApiError::BadRequest(rejection.body_text())
        }
    })
}

fn valid(kind: &str, name: &str) -> ApiResult<()> {
    names::validate(kind, name).map_err(ApiError::BadRequest)
}

fn json_response(status: StatusCode, json: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

pub(crate) fn data<T: serde::Serialize>(status: StatusCode, value: T) -> ApiResult<Response> {
    let json = serde_json::to_string(&Data::new(value))
        .map_err(|e| ApiError::Internal(format!("encoding a response: {e}")))?;
    Ok(json_response(status, json))
}

async fn list_subjects<B: Backend>(State(backend): State<Arc<B>>, _: Admin) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_subjects().await?)
}

async fn create_subject<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Admin,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: SubjectRequest = json_body(&body(bytes)?, "subject request")?;
    valid("subject", &request.subject.name)?;
    data(
        StatusCode::CREATED,
        backend.create_subject(&request.subject.name).await?,
    )
}

async fn revoke_subject<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    backend.revoke_subject(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_workers<B: Backend>(State(backend): State<Arc<B>>, _: Admin) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_workers().await?)
}

async fn connect_node<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Admin,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: NodeRequest = json_body(&body(bytes)?, "node request")?;
    data(
        StatusCode::OK,
        backend.connect_node(request.address.trim()).await?,
    )
}

async fn tree<B: Backend>(State(backend): State<Arc<B>>, _: Admin) -> ApiResult<Response> {
    data(StatusCode::OK, backend.tree().await?)
}

async fn crash<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Admin,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: CrashRequest = json_body(&body(bytes)?, "crash request")?;
    let path = request.actor.trim().trim_matches('/');
    if path.is_empty() {
        return Err(ApiError::BadRequest("actor: give the actor's path".into()));
    }
    data(
        StatusCode::OK,
        backend.crash(request.node.as_deref(), path).await?,
    )
}

async fn list_modules<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_modules(&who).await?)
}

async fn create_module<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: ModuleRequest = json_body(&body(bytes)?, "module request")?;
    valid("module", &request.module.name)?;
    backend.create_module(&who, &request.module.name).await?;
    data(StatusCode::CREATED, request.module)
}

async fn get_module<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.get_module(&who, &module).await?)
}

async fn rename_module<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let request: ModuleRequest = json_body(&body(bytes)?, "module request")?;
    valid("module", &request.module.name)?;
    backend
        .rename_module(&who, &module, &request.module.name)
        .await?;
    data(StatusCode::OK, request.module)
}

async fn delete_module<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
) -> ApiResult<Response> {
    backend.delete_module(&who, &module).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_app_scripts<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Auth,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_app_scripts().await?)
}

/// FunLess's form: multipart `name` and `file` (the YAML). Any subject may create one, as in
/// FunLess; deleting one is for admins.
async fn create_app_script<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Auth,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let (mut name, mut file) = (None, None);
    for (field_name, bytes) in form_fields(multipart, " with 'name' and 'file'").await? {
        let text = field_text(&field_name, &bytes)?;
        match field_name.as_str() {
            "name" => name = Some(text.trim().to_string()),
            "file" => file = Some(text),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown form field {other:?} (expected name, file)"
                )));
            }
        }
    }
    let name = name.ok_or_else(|| ApiError::BadRequest("missing form field 'name'".into()))?;
    valid("script", &name)?;
    let file = file.ok_or_else(|| ApiError::BadRequest("missing form field 'file'".into()))?;
    if file.len() > MAX_SCRIPT_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "the script is larger than {MAX_SCRIPT_BYTES} bytes"
        )));
    }
    data(
        StatusCode::CREATED,
        backend.create_app_script(&name, file).await?,
    )
}

async fn get_app_script<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.get_app_script(&name).await?)
}

async fn delete_app_script<B: Backend>(
    State(backend): State<Arc<B>>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    backend.delete_app_script(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Reads FunLess's multipart function form: `name`, `code`, and optional `metadata`, `events`,
/// `sinks`, `wait_for_workers`; and ours, `language` and `canary`.
async fn read_upload(multipart: Result<Multipart, impl IntoResponse>) -> ApiResult<UploadForm> {
    let mut form = UploadForm::default();
    for (field_name, bytes) in form_fields(multipart, "").await? {
        let text = || field_text(&field_name, &bytes);
        match field_name.as_str() {
            "name" => form.name = Some(text()?.trim().to_string()),
            "code" => form.code = Some(bytes.clone()),
            "language" => {
                let text = text()?;
                form.language = Some(Language::parse(&text).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "language must be wasm or js, not {:?}",
                        text.trim()
                    ))
                })?);
            }
            "metadata" => form.metadata = json_body(&bytes, "metadata")?,
            "events" => form.events = Some(json_body(&bytes, "events")?),
            "sinks" => form.sinks = Some(json_body(&bytes, "sinks")?),
            "wait_for_workers" => {
                form.wait_for_workers = match text()?.trim() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "wait_for_workers must be true or false, not {other:?}"
                        )));
                    }
                }
            }
            "canary" => {
                let text = text()?;
                form.canary = match text.trim().parse::<u8>() {
                    Ok(percent @ 1..=99) => Some(percent),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "canary must be a percentage of invocations, 1 to 99, not {:?}",
                            text.trim()
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown form field {other:?} (expected name, code, language, metadata, events, sinks, wait_for_workers, canary)"
                )));
            }
        }
    }
    Ok(form)
}

struct UploadForm {
    name: Option<String>,
    code: Option<Bytes>,
    language: Option<Language>,
    metadata: FunctionMetadata,
    events: Option<serde_json::Value>,
    sinks: Option<serde_json::Value>,
    wait_for_workers: bool,
    canary: Option<u8>,
}

impl Default for UploadForm {
    fn default() -> Self {
        Self {
            name: None,
            code: None,
            language: None,
            metadata: FunctionMetadata::default(),
            events: None,
            sinks: None,
            wait_for_workers: true,
            canary: None,
        }
    }
}

impl UploadForm {
    fn into_upload(self, name: String) -> ApiResult<FunctionUpload> {
        let code = self
            .code
            .ok_or_else(|| ApiError::BadRequest("missing form field 'code'".into()))?;
        if code.is_empty() {
            return Err(ApiError::BadRequest("the 'code' file is empty".into()));
        }
        Ok(FunctionUpload {
            name,
            code,
            language: self.language,
            metadata: self.metadata,
            events: self.events,
            sinks: self.sinks,
            wait_for_workers: self.wait_for_workers,
            canary: self.canary,
        })
    }
}

async fn create_function<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let form = read_upload(multipart).await?;
    let name = form
        .name
        .clone()
        .ok_or_else(|| ApiError::BadRequest("missing form field 'name'".into()))?;
    valid("function", &name)?;
    if form.canary.is_some() {
        return Err(ApiError::BadRequest(
            "a new function has no current version for a canary to share with: create it, \
             then update it with canary"
                .into(),
        ));
    }
    let upload = form.into_upload(name)?;
    let created = backend.create_function(&who, &module, upload).await?;
    data(created_status(&created, StatusCode::CREATED), created)
}

/// 207 (as FunLess) when an event connector could not connect yet, else `ok`.
pub(crate) fn created_status(created: &FunctionCreated, ok: StatusCode) -> StatusCode {
    let all_connected = created
        .events
        .as_ref()
        .is_none_or(|events| events.iter().all(|e| e.connected));
    if all_connected {
        ok
    } else {
        StatusCode::MULTI_STATUS
    }
}

async fn update_function<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let form = read_upload(multipart).await?;
    // FunLess's update: the form's `name` is the function's name from now on (a rename when
    // it differs from the path); without one the name stays.
    let name = form.name.clone().unwrap_or_else(|| function.clone());
    valid("function", &name)?;
    if form.canary.is_some() && name != function {
        return Err(ApiError::BadRequest(
            "an update with canary cannot rename the function (the canary shares its name)".into(),
        ));
    }
    let upload = form.into_upload(name)?;
    let updated = backend
        .update_function(&who, &module, &function, upload)
        .await?;
    data(created_status(&updated, StatusCode::OK), updated)
}

async fn get_function<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.get_function(&who, &module, &function).await?,
    )
}

async fn delete_function<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    backend.delete_function(&who, &module, &function).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?blocking=false` of an invocation.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct InvokeQuery {
    blocking: Option<bool>,
}

async fn invoke<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    admitted: Option<axum::Extension<Admitted>>,
    Path((module, function)): Path<(String, String)>,
    query: Result<Query<InvokeQuery>, QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let call = Call {
        module,
        function,
        version: None,
    };
    invoke_call(&*backend, &who, admitted, call, query, bytes).await
}

/// The function an invocation names: its current version, or a kept one (`version`).
pub(crate) struct Call {
    pub(crate) module: String,
    pub(crate) function: String,
    pub(crate) version: Option<u64>,
}

/// An invocation's request (args, scheduling, blocking) and answer, for the current version
/// of a function and for a pinned one alike.
pub(crate) async fn invoke_call<B: Backend>(
    backend: &B,
    who: &Subject,
    admitted: Option<axum::Extension<Admitted>>,
    call: Call,
    query: Result<Query<InvokeQuery>, QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Call {
        module,
        function,
        version,
    } = call;
    let parsing = std::time::Instant::now();
    let query = query
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?
        .0;
    let bytes = body(bytes)?;
    let request: InvokeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        InvokeRequest::default()
    } else {
        json_body(&bytes, "invoke request")?
    };
    let args_json = match request.args {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(args @ serde_json::Value::Object(_)) => args.to_string(),
        Some(_) => return Err(ApiError::BadRequest("args must be a JSON object".into())),
    };
    let script = match request.scheduling {
        None => None,
        Some(s) => match (s.language, s.script) {
            (SchedulingLanguage::None, _) => None,
            (SchedulingLanguage::App, Some(script)) => Some(script),
            (SchedulingLanguage::App, None) => {
                return Err(ApiError::BadRequest(
                    "scheduling with language 'app' needs a 'script' name".into(),
                ));
            }
        },
    };
    let blocking = match (query.blocking, request.blocking) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::BadRequest(
                "the query and the body disagree on 'blocking'".into(),
            ));
        }
        (a, b) => a.or(b).unwrap_or(true),
    };
    if !blocking {
        let activation_id = backend
            .invoke_async(who, &module, &function, version, args_json, script)
            .await?;
        return data(StatusCode::ACCEPTED, ActivationStarted { activation_id });
    }
    let parsed = parsing.elapsed();
    let invocation = backend
        .invoke(who, &module, &function, version, args_json, script)
        .await?;
    // The worker hands back valid JSON text: wrap it without parsing it again.
    let mut json = String::with_capacity(invocation.output_json.len() + 9);
    json.push_str("{\"data\":");
    json.push_str(&invocation.output_json);
    json.push('}');
    let mut timings = Timings(Vec::with_capacity(4 + invocation.timings.0.len()));
    if let Some(axum::Extension(admitted)) = &admitted {
        timings.push("auth", admitted.auth);
        timings.push("body", admitted.body);
    }
    timings.push("parse", parsed);
    timings.0.extend(invocation.timings.0);
    if let Some(axum::Extension(admitted)) = &admitted {
        timings.push("total", admitted.arrived.elapsed());
    }
    let mut answer = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-funless-worker", invocation.worker)
        .header("x-funless-activation-id", invocation.activation_id)
        .header(crate::types::VERSION_HEADER, invocation.version)
        .header("server-timing", timings.header_value());
    if let Some(track) = invocation.track {
        answer = answer.header(crate::types::TRACK_HEADER, track);
    }
    answer
        .body(Body::from(json))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn get_activation<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.activation(&who, &id).await?)
}

/// `?limit=N` of an activation list.
#[derive(Debug, Default, serde::Deserialize)]
struct ListQuery {
    limit: Option<usize>,
}

/// Most activation records one list returns.
const MAX_ACTIVATION_LIST: usize = 200;

async fn list_activations<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let query = query
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?
        .0;
    let limit = query.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_ACTIVATION_LIST {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_ACTIVATION_LIST}"
        )));
    }
    data(
        StatusCode::OK,
        backend
            .list_activations(&who, &module, &function, limit)
            .await?,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::backend::{FunctionUpload, Invocation, Subject};
    use crate::types::{
        ActivationInfo, AppScriptInfo, CreatedSubject, FunctionCreated, FunctionInfo, ModuleInfo,
        Named, WorkerInfo,
    };
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// A backend whose every method panics, like a bug would.
    pub(crate) struct Broken;

    impl Backend for Broken {
        async fn authenticate(&self, _: &str) -> ApiResult<Subject> {
            Ok(Subject {
                id: 1,
                name: "u".into(),
                admin: true,
            })
        }
        async fn list_modules(&self, _: &Subject) -> ApiResult<Vec<Named>> {
            panic!("bug in list_modules")
        }
        async fn create_module(&self, _: &Subject, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn get_module(&self, _: &Subject, _: &str) -> ApiResult<ModuleInfo> {
            panic!("bug")
        }
        async fn rename_module(&self, _: &Subject, _: &str, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn delete_module(&self, _: &Subject, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn create_function(
            &self,
            _: &Subject,
            _: &str,
            _: FunctionUpload,
        ) -> ApiResult<FunctionCreated> {
            panic!("bug")
        }
        async fn update_function(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: FunctionUpload,
        ) -> ApiResult<FunctionCreated> {
            panic!("bug")
        }
        async fn get_function(&self, _: &Subject, _: &str, _: &str) -> ApiResult<FunctionInfo> {
            panic!("bug")
        }
        async fn delete_function(&self, _: &Subject, _: &str, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn invoke(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: Option<u64>,
            _: String,
            _: Option<String>,
        ) -> ApiResult<Invocation> {
            panic!("bug in invoke")
        }
        async fn invoke_async(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: Option<u64>,
            _: String,
            _: Option<String>,
        ) -> ApiResult<String> {
            panic!("bug in invoke_async")
        }
        async fn activation(&self, _: &Subject, _: &str) -> ApiResult<ActivationInfo> {
            panic!("bug in activation")
        }
        async fn list_activations(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: usize,
        ) -> ApiResult<Vec<ActivationInfo>> {
            panic!("bug in list_activations")
        }
        async fn create_app_script(&self, _: &str, _: String) -> ApiResult<AppScriptInfo> {
            panic!("bug")
        }
        async fn list_app_scripts(&self) -> ApiResult<Vec<Named>> {
            panic!("bug")
        }
        async fn get_app_script(&self, _: &str) -> ApiResult<AppScriptInfo> {
            panic!("bug")
        }
        async fn delete_app_script(&self, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn list_subjects(&self) -> ApiResult<Vec<Named>> {
            panic!("bug")
        }
        async fn create_subject(&self, _: &str) -> ApiResult<CreatedSubject> {
            panic!("bug")
        }
        async fn revoke_subject(&self, _: &str) -> ApiResult<()> {
            panic!("bug")
        }
        async fn connect_node(&self, _: &str) -> ApiResult<crate::types::NodeConnected> {
            panic!("bug")
        }
        async fn list_workers(&self) -> ApiResult<Vec<WorkerInfo>> {
            panic!("bug")
        }
        async fn tree(&self) -> ApiResult<crate::types::ClusterTree> {
            panic!("bug")
        }
        async fn crash(&self, _: Option<&str>, _: &str) -> ApiResult<crate::types::Crashed> {
            panic!("bug")
        }
        fn metrics_text(&self) -> String {
            String::new()
        }
    }

    /// A body whose bytes never come.
    struct Stalled;

    impl axum::body::HttpBody for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_slower_than_the_body_timeout_is_a_408() {
        let limits = HttpLimits {
            body_timeout: std::time::Duration::from_millis(200),
            ..HttpLimits::default()
        };
        let app = router_with(Arc::new(Broken), limits);
        let request = Request::builder()
            .method("POST")
            .uri("/v1/fn/_/f")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::new(Stalled))
            .unwrap();
        let started = std::time::Instant::now();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_with_the_error_body_and_the_router_goes_on() {
        let app = router(Arc::new(Broken));
        for (method, path, body) in [
            ("GET", "/v1/fn", ""),
            ("POST", "/v1/fn/_/f", "{}"),
            ("GET", "/v1/fn", ""),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer t")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{method} {path}"
            );
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            // Internal errors keep their details in the log, not in the answer.
            assert_eq!(json["errors"]["detail"], "internal server error", "{json}");
        }
        // Still serving what does not touch the broken part.
        let response = app
            .oneshot(Request::builder().uri("/v1/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
