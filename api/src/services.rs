//! The service routes (`/v1/svc`): long-running programs under an OTP-style child spec.
//!
//! Their backend methods are a trait of their own ([`ServicesBackend`], a supertrait of
//! [`Backend`]), so the function routes and the service routes stay apart.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::backend::{Backend, Subject};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, form_fields, json_body};
use crate::routes::data;
use crate::types::{ServiceInfo, ServiceLogLine, ServiceSpecRequest};

/// Most log lines one request returns (per replica and worker).
pub const MAX_LOG_LINES: usize = 1000;

/// What the service routes need from the Core.
pub trait ServicesBackend: Send + Sync + 'static {
    /// Stores a service and starts its replicas (409 when the name is taken, 400 for code
    /// that is not a WASI command, a component or JavaScript, or a spec out of bounds).
    fn create_service(
        &self,
        who: &Subject,
        name: &str,
        code: Vec<u8>,
        spec: ServiceSpecRequest,
    ) -> impl Future<Output = ApiResult<ServiceInfo>> + Send;
    /// Replaces a service's code (when given) and spec (when given; missing fields take
    /// their defaults) and restarts its replicas one at a time with the new version; a failed
    /// service runs again.
    fn update_service(
        &self,
        who: &Subject,
        name: &str,
        code: Option<Vec<u8>>,
        spec: Option<ServiceSpecRequest>,
    ) -> impl Future<Output = ApiResult<ServiceInfo>> + Send;
    /// The caller's services.
    fn list_services(
        &self,
        who: &Subject,
    ) -> impl Future<Output = ApiResult<Vec<ServiceInfo>>> + Send;
    /// One service with its replicas' state.
    fn get_service(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<ServiceInfo>> + Send;
    /// Stops every replica and deletes the service.
    fn delete_service(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// The newest output lines of the service's replicas, oldest first.
    fn service_logs(
        &self,
        who: &Subject,
        name: &str,
        lines: usize,
    ) -> impl Future<Output = ApiResult<Vec<ServiceLogLine>>> + Send;
}

/// The service routes, merged into the API's router.
pub(crate) fn routes<B: Backend>(upload_limit: axum::extract::DefaultBodyLimit) -> Router<Arc<B>> {
    use axum::handler::Handler;
    Router::new()
        .route("/v1/svc", get(list::<B>))
        .route(
            "/v1/svc/{name}",
            get(get_one::<B>)
                .post(create::<B>.layer(upload_limit))
                .put(update::<B>.layer(upload_limit))
                .delete(delete::<B>),
        )
        .route("/v1/svc/{name}/logs", get(logs::<B>))
}

async fn list<B: Backend>(State(backend): State<Arc<B>>, Auth(who): Auth) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_services(&who).await?)
}

async fn get_one<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    data(StatusCode::OK, backend.get_service(&who, &name).await?)
}

/// Multipart `code` (the program) and optional `spec` (JSON of [`ServiceSpecRequest`]).
async fn create<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    crate::names::validate("service", &name).map_err(ApiError::BadRequest)?;
    let (code, spec) = read_form(multipart).await?;
    let code = code.ok_or_else(|| ApiError::BadRequest("missing form field 'code'".into()))?;
    data(
        StatusCode::CREATED,
        backend
            .create_service(&who, &name, code, spec.unwrap_or_default())
            .await?,
    )
}

/// Multipart `code` and `spec`, each optional (at least one).
async fn update<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let (code, spec) = read_form(multipart).await?;
    if code.is_none() && spec.is_none() {
        return Err(ApiError::BadRequest(
            "give a new 'code', a new 'spec', or both".into(),
        ));
    }
    data(
        StatusCode::OK,
        backend.update_service(&who, &name, code, spec).await?,
    )
}

/// The service form: `code` (not empty) and `spec`, as given.
async fn read_form(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<(Option<Vec<u8>>, Option<ServiceSpecRequest>)> {
    let (mut code, mut spec) = (None, None);
    for (field_name, bytes) in form_fields(multipart, " with 'code' and 'spec'").await? {
        match field_name.as_str() {
            "code" => code = Some(bytes.to_vec()),
            "spec" => spec = Some(json_body(&bytes, "spec")?),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown form field {other:?} (expected code, spec)"
                )));
            }
        }
    }
    if code.as_ref().is_some_and(Vec::is_empty) {
        return Err(ApiError::BadRequest("the 'code' file is empty".into()));
    }
    Ok((code, spec))
}

async fn delete<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    backend.delete_service(&who, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?lines=N` of a logs request.
#[derive(Debug, Default, serde::Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
}

async fn logs<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let query = query
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))?
        .0;
    let lines = query.lines.unwrap_or(100);
    if lines == 0 || lines > MAX_LOG_LINES {
        return Err(ApiError::BadRequest(format!(
            "lines must be 1 to {MAX_LOG_LINES}"
        )));
    }
    data(
        StatusCode::OK,
        backend.service_logs(&who, &name, lines).await?,
    )
}

/// The operations of the service routes, for the OpenAPI document.
#[allow(dead_code, unreachable_pub)]
pub(crate) mod doc {
    use utoipa::ToSchema;

    use crate::types::{Data, ErrorBody, ServiceInfo, ServiceLogLine};

    const ERROR: &str = "The error (`{\"errors\": {\"detail\": \"...\"}}`): 400 bad input, 401 no or unknown token, 404 not found, 409 name taken, 413 body too large, 500 our fault, 502 a worker did not answer";

    /// The multipart form of a service upload.
    #[derive(ToSchema)]
    pub struct ServiceForm {
        /// The program: a WASI command module (`_start`), a `wasi:cli/run` component, or
        /// JavaScript source whose `fl_main(config, service)` (or default export) runs until it
        /// returns (needed on create).
        #[schema(value_type = Option<String>, format = Binary)]
        code: Option<Vec<u8>>,
        /// JSON text of `ServiceSpecRequest`: restart, max_restarts, period_ms, backoff_ms,
        /// replicas, memory_bytes, allow_hosts, env.
        spec: Option<String>,
    }

    /// `?lines=N` of a logs request.
    #[derive(utoipa::IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct LogsQuery {
        /// How many of the newest lines, per replica (1 to 1000, default 100).
        #[param(minimum = 1, maximum = 1000)]
        lines: Option<usize>,
    }

    #[utoipa::path(get, path = "/v1/svc", tag = "services",
        responses((status = 200, description = "The caller's services", body = Data<Vec<ServiceInfo>>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn list_services() {}

    #[utoipa::path(post, path = "/v1/svc/{name}", tag = "services",
        params(("name" = String, Path, description = "Service name")),
        request_body(content = ServiceForm, content_type = "multipart/form-data"),
        responses((status = 201, description = "Stored; its replicas are being placed", body = Data<ServiceInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn create_service() {}

    #[utoipa::path(put, path = "/v1/svc/{name}", tag = "services",
        params(("name" = String, Path, description = "Service name")),
        request_body(content = ServiceForm, content_type = "multipart/form-data",
            description = "A new `code`, a new `spec` (replacing the whole spec), or both"),
        responses((status = 200, description = "Updated; its replicas are replaced one at a time (a failed service runs again)", body = Data<ServiceInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn update_service() {}

    #[utoipa::path(get, path = "/v1/svc/{name}", tag = "services",
        params(("name" = String, Path, description = "Service name")),
        responses((status = 200, description = "The service and each replica's state", body = Data<ServiceInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn get_service() {}

    #[utoipa::path(delete, path = "/v1/svc/{name}", tag = "services",
        params(("name" = String, Path, description = "Service name")),
        responses((status = 204, description = "Every replica stopped; deleted"),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn delete_service() {}

    #[utoipa::path(get, path = "/v1/svc/{name}/logs", tag = "services",
        params(("name" = String, Path, description = "Service name"), LogsQuery),
        responses((status = 200, description = "The newest output lines, oldest first", body = Data<Vec<ServiceLogLine>>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn service_logs() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes' tests use a backend whose every method panics, like a bug would.
    impl ServicesBackend for crate::routes::tests::Broken {
        async fn create_service(
            &self,
            _: &Subject,
            _: &str,
            _: Vec<u8>,
            _: ServiceSpecRequest,
        ) -> ApiResult<ServiceInfo> {
            panic!("broken")
        }
        async fn update_service(
            &self,
            _: &Subject,
            _: &str,
            _: Option<Vec<u8>>,
            _: Option<ServiceSpecRequest>,
        ) -> ApiResult<ServiceInfo> {
            panic!("broken")
        }
        async fn list_services(&self, _: &Subject) -> ApiResult<Vec<ServiceInfo>> {
            panic!("broken")
        }
        async fn get_service(&self, _: &Subject, _: &str) -> ApiResult<ServiceInfo> {
            panic!("broken")
        }
        async fn delete_service(&self, _: &Subject, _: &str) -> ApiResult<()> {
            panic!("broken")
        }
        async fn service_logs(
            &self,
            _: &Subject,
            _: &str,
            _: usize,
        ) -> ApiResult<Vec<ServiceLogLine>> {
            panic!("broken")
        }
    }
}
