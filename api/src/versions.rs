//! The version routes of a function (`/v1/fn/{module}/{function}/versions`, `.../rollback`):
//! list its kept versions, invoke or delete one, and roll back to one; and the configuration
//! routes (`/v1/config/{module}[/{function}]`), whose changes to a function make a version.
//!
//! Their backend methods are a trait of their own ([`VersionsBackend`], a supertrait of
//! [`Backend`]), as the service routes' are.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::admission::Admitted;
use crate::backend::{Backend, Subject};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, json_body};
use crate::routes::{Call, InvokeQuery, data, invoke_call};
use crate::types::{ConfigChange, ConfigInfo, FunctionCreated, RollbackRequest, VersionInfo};

/// What the version routes need from the Core.
pub trait VersionsBackend: Send + Sync + 'static {
    /// The function's kept versions, newest first (`current` marks the one invocations run).
    fn list_versions(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> impl Future<Output = ApiResult<Vec<VersionInfo>>> + Send;
    /// One kept version (404 when it is not kept).
    fn get_version(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> impl Future<Output = ApiResult<VersionInfo>> + Send;
    /// Makes a new current version with the code and metadata of the kept `version`, and
    /// answers as an update does.
    fn rollback_function(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> impl Future<Output = ApiResult<FunctionCreated>> + Send;
    /// Deletes a kept version that is not the current one (409 for the current one).
    fn delete_version(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// A module's configuration, or a function's with its module's (`function`).
    fn get_config(
        &self,
        who: &Subject,
        module: &str,
        function: Option<&str>,
    ) -> impl Future<Output = ApiResult<ConfigInfo>> + Send;
    /// Changes a module's configuration (its functions' next invocations see it), or a
    /// function's, which makes a new version with the same code.
    fn change_config(
        &self,
        who: &Subject,
        module: &str,
        function: Option<&str>,
        change: ConfigChange,
    ) -> impl Future<Output = ApiResult<ConfigInfo>> + Send;
}

/// The version routes, merged into the API's router.
pub(crate) fn routes<B: Backend>() -> Router<Arc<B>> {
    Router::new()
        .route("/v1/fn/{module}/{function}/versions", get(list::<B>))
        .route(
            "/v1/fn/{module}/{function}/versions/{version}",
            get(get_one::<B>).post(invoke::<B>).delete(delete::<B>),
        )
        .route("/v1/fn/{module}/{function}/rollback", post(rollback::<B>))
        .route(
            "/v1/config/{module}",
            get(module_config::<B>).put(change_module_config::<B>),
        )
        .route(
            "/v1/config/{module}/{function}",
            get(function_config::<B>).put(change_function_config::<B>),
        )
}

/// A version number from the path: a positive integer.
fn version(text: &str) -> ApiResult<u64> {
    match text.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ApiError::BadRequest(format!(
            "version must be a positive integer, not {text:?}"
        ))),
    }
}

async fn list<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.list_versions(&who, &module, &function).await?,
    )
}

async fn get_one<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function, number)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let number = version(&number)?;
    data(
        StatusCode::OK,
        backend
            .get_version(&who, &module, &function, number)
            .await?,
    )
}

/// Invokes a kept version: the same request and answer as invoking the function.
async fn invoke<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    admitted: Option<axum::Extension<Admitted>>,
    Path((module, function, number)): Path<(String, String, String)>,
    query: Result<Query<InvokeQuery>, QueryRejection>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let call = Call {
        module,
        function,
        version: Some(version(&number)?),
    };
    invoke_call(&*backend, &who, admitted, call, query, bytes).await
}

async fn delete<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function, number)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let number = version(&number)?;
    backend
        .delete_version(&who, &module, &function, number)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rollback<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = crate::routes::body(bytes)?;
    let request: RollbackRequest = json_body(&bytes, "rollback request")?;
    if request.version == 0 {
        return Err(ApiError::BadRequest("versions start at 1".into()));
    }
    let created = backend
        .rollback_function(&who, &module, &function, request.version)
        .await?;
    data(
        crate::routes::created_status(&created, StatusCode::OK),
        created,
    )
}

async fn module_config<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.get_config(&who, &module, None).await?,
    )
}

async fn function_config<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.get_config(&who, &module, Some(&function)).await?,
    )
}

/// The body of a configuration change.
fn config_change(bytes: Result<Bytes, BytesRejection>) -> ApiResult<ConfigChange> {
    json_body(&crate::routes::body(bytes)?, "configuration change")
}

async fn change_module_config<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(module): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let change = config_change(bytes)?;
    data(
        StatusCode::OK,
        backend.change_config(&who, &module, None, change).await?,
    )
}

async fn change_function_config<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let change = config_change(bytes)?;
    data(
        StatusCode::OK,
        backend
            .change_config(&who, &module, Some(&function), change)
            .await?,
    )
}

/// The operations of the version routes, for the OpenAPI document.
#[allow(dead_code, unreachable_pub)]
pub(crate) mod doc {
    use crate::types::{
        ActivationStarted, ConfigChange, ConfigInfo, Data, ErrorBody, FunctionCreated,
        InvokeRequest, RollbackRequest, VersionInfo,
    };

    const ERROR: &str = "The error (`{\"errors\": {\"detail\": \"...\"}}`): 400 bad input, 401 no or unknown token, 404 no such function or version, 409 the current version cannot be deleted, 413 body too large, 500 our fault, 502 a worker did not answer, 503 no worker can run it";

    #[utoipa::path(get, path = "/v1/fn/{module}/{function}/versions", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        responses((status = 200, description = "The kept versions, newest first (`current` marks the one invocations run)", body = Data<Vec<VersionInfo>>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn list_versions() {}

    #[utoipa::path(get, path = "/v1/fn/{module}/{function}/versions/{version}", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name"),
            ("version" = u64, Path, minimum = 1, description = "Version number")),
        responses((status = 200, description = "The version", body = Data<VersionInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn get_version() {}

    #[utoipa::path(post, path = "/v1/fn/{module}/{function}/versions/{version}", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name"),
            ("version" = u64, Path, minimum = 1, description = "Version number"),
            crate::openapi::InvokeQuery),
        request_body(content = Option<InvokeRequest>, description = "Arguments and scheduling, as for invoking the function (an empty body is `{}`)"),
        responses(
            (status = 200, description = "The kept version's result", body = Data<serde_json::Value>,
                headers(("x-funless-worker" = String, description = "The worker that ran it"),
                    ("x-funless-activation-id" = String, description = "Its activation record"),
                    ("server-timing" = String, description = "Where the time went, stage by stage, as for invoking the function"))),
            (status = 202, description = "Started (`blocking: false`)", body = Data<ActivationStarted>),
            (status = 422, description = "The function failed", body = ErrorBody,
                headers(("x-funless-error-reason" = String, description = "function_error, trap, timeout, memory_limit, output_too_large or bad_output"))),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn invoke_version() {}

    #[utoipa::path(delete, path = "/v1/fn/{module}/{function}/versions/{version}", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name"),
            ("version" = u64, Path, minimum = 1, description = "Version number")),
        responses((status = 204, description = "Deleted, with its code when no other version holds it"),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn delete_version() {}

    #[utoipa::path(post, path = "/v1/fn/{module}/{function}/rollback", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        request_body(content = RollbackRequest),
        responses((status = 200, description = "A new current version with the kept version's code and metadata", body = Data<FunctionCreated>),
            (status = 207, description = "Rolled back; an event connector is not connected yet", body = Data<FunctionCreated>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn rollback() {}

    #[utoipa::path(get, path = "/v1/config/{module}", tag = "functions",
        params(("module" = String, Path, description = "Module name")),
        responses((status = 200, description = "The module's settings, inherited by its functions", body = Data<ConfigInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn module_config() {}

    #[utoipa::path(put, path = "/v1/config/{module}", tag = "functions",
        params(("module" = String, Path, description = "Module name")),
        request_body(content = ConfigChange),
        responses((status = 200, description = "Changed: its functions' next invocations see it", body = Data<ConfigInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn change_module_config() {}

    #[utoipa::path(get, path = "/v1/config/{module}/{function}", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        responses((status = 200, description = "The function's settings, its module's, and the environment its invocations get", body = Data<ConfigInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn function_config() {}

    #[utoipa::path(put, path = "/v1/config/{module}/{function}", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        request_body(content = ConfigChange),
        responses((status = 200, description = "Changed: a new version with the same code and these settings", body = Data<ConfigInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn change_function_config() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes' tests use a backend whose every method panics, like a bug would.
    impl VersionsBackend for crate::routes::tests::Broken {
        async fn list_versions(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
        ) -> ApiResult<Vec<VersionInfo>> {
            panic!("broken")
        }
        async fn get_version(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: u64,
        ) -> ApiResult<VersionInfo> {
            panic!("broken")
        }
        async fn rollback_function(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: u64,
        ) -> ApiResult<FunctionCreated> {
            panic!("broken")
        }
        async fn delete_version(&self, _: &Subject, _: &str, _: &str, _: u64) -> ApiResult<()> {
            panic!("broken")
        }
        async fn get_config(&self, _: &Subject, _: &str, _: Option<&str>) -> ApiResult<ConfigInfo> {
            panic!("broken")
        }
        async fn change_config(
            &self,
            _: &Subject,
            _: &str,
            _: Option<&str>,
            _: ConfigChange,
        ) -> ApiResult<ConfigInfo> {
            panic!("broken")
        }
    }

    #[test]
    fn version_numbers_are_positive_integers() {
        assert_eq!(version("7").ok(), Some(7));
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999999"] {
            assert!(
                matches!(version(bad), Err(ApiError::BadRequest(_))),
                "{bad:?} was accepted"
            );
        }
    }
}
