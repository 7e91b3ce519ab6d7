//! The canary routes of a function (`/v1/fn/{module}/{function}/canary`): send a share of its
//! invocations to one of its kept versions, see how each version fares, and promote the
//! canary (its version becomes the current one) or end it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use crate::backend::{Backend, Subject};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, json_body};
use crate::routes::data;
use crate::types::{CanaryInfo, CanarySplit, FunctionCreated};

/// What the canary routes need from the Core.
pub trait CanaryBackend: Send + Sync + 'static {
    /// The function's canary and each version's outcomes since it started (404: none runs).
    fn get_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> impl Future<Output = ApiResult<CanaryInfo>> + Send;
    /// Starts the canary, or changes its version or share (`split` is checked: version ≥ 1,
    /// percent 1 to 99).
    fn set_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        split: CanarySplit,
    ) -> impl Future<Output = ApiResult<CanaryInfo>> + Send;
    /// Ends the canary: every invocation runs the current version again. Answers what it
    /// came to.
    fn end_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> impl Future<Output = ApiResult<CanaryInfo>> + Send;
    /// Makes the canary's version the current one (a new version, as a rollback to it) and
    /// ends the canary; answers as an update does.
    fn promote_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> impl Future<Output = ApiResult<FunctionCreated>> + Send;
}

/// The canary routes, merged into the API's router.
pub(crate) fn routes<B: Backend>() -> Router<Arc<B>> {
    Router::new()
        .route(
            "/v1/fn/{module}/{function}/canary",
            get(get_one::<B>).put(set::<B>).delete(end::<B>),
        )
        .route(
            "/v1/fn/{module}/{function}/canary/promote",
            post(promote::<B>),
        )
}

/// A canary's split as the request gave it, checked.
fn checked(split: CanarySplit) -> ApiResult<CanarySplit> {
    if split.version == 0 {
        return Err(ApiError::BadRequest("versions start at 1".into()));
    }
    if !(1..=99).contains(&split.percent) {
        return Err(ApiError::BadRequest(format!(
            "percent must be 1 to 99, not {} (promote the canary to send it every invocation, \
             end it to send it none)",
            split.percent
        )));
    }
    Ok(split)
}

async fn get_one<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.get_canary(&who, &module, &function).await?,
    )
}

async fn set<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = crate::routes::body(bytes)?;
    let split = checked(json_body(&bytes, "canary")?)?;
    data(
        StatusCode::OK,
        backend.set_canary(&who, &module, &function, split).await?,
    )
}

async fn end<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    data(
        StatusCode::OK,
        backend.end_canary(&who, &module, &function).await?,
    )
}

async fn promote<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path((module, function)): Path<(String, String)>,
) -> ApiResult<Response> {
    let created = backend.promote_canary(&who, &module, &function).await?;
    data(
        crate::routes::created_status(&created, StatusCode::OK),
        created,
    )
}

/// The operations of the canary routes, for the OpenAPI document.
#[allow(dead_code, unreachable_pub)]
pub(crate) mod doc {
    use crate::types::{CanaryInfo, CanarySplit, Data, ErrorBody, FunctionCreated};

    const ERROR: &str = "The error (`{\"errors\": {\"detail\": \"...\"}}`): 400 bad input, 401 no or unknown token, 404 no such function or version, or no canary, 409 the version is the current one, or no canary to promote, 413 body too large, 500 our fault";

    #[utoipa::path(get, path = "/v1/fn/{module}/{function}/canary", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        responses((status = 200, description = "The canary and each version's invocations since it started", body = Data<CanaryInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn get_canary() {}

    #[utoipa::path(put, path = "/v1/fn/{module}/{function}/canary", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        request_body(content = CanarySplit),
        responses((status = 200, description = "Started, or changed (a new share of the same version keeps its counts)", body = Data<CanaryInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn set_canary() {}

    #[utoipa::path(delete, path = "/v1/fn/{module}/{function}/canary", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        responses((status = 200, description = "Ended: every invocation runs the current version; what the canary came to", body = Data<CanaryInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn end_canary() {}

    #[utoipa::path(post, path = "/v1/fn/{module}/{function}/canary/promote", tag = "functions",
        params(("module" = String, Path, description = "Module name"),
            ("function" = String, Path, description = "Function name")),
        responses((status = 200, description = "Promoted: a new current version with the canary's code, metadata and configuration; the canary ended", body = Data<FunctionCreated>),
            (status = 207, description = "Promoted; an event connector is not connected yet", body = Data<FunctionCreated>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn promote_canary() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes' tests use a backend whose every method panics, like a bug would.
    impl CanaryBackend for crate::routes::tests::Broken {
        async fn get_canary(&self, _: &Subject, _: &str, _: &str) -> ApiResult<CanaryInfo> {
            panic!("broken")
        }
        async fn set_canary(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
            _: CanarySplit,
        ) -> ApiResult<CanaryInfo> {
            panic!("broken")
        }
        async fn end_canary(&self, _: &Subject, _: &str, _: &str) -> ApiResult<CanaryInfo> {
            panic!("broken")
        }
        async fn promote_canary(
            &self,
            _: &Subject,
            _: &str,
            _: &str,
        ) -> ApiResult<FunctionCreated> {
            panic!("broken")
        }
    }

    #[test]
    fn a_split_names_a_version_and_a_share_below_all() {
        let ok = CanarySplit {
            version: 3,
            percent: 10,
        };
        assert_eq!(checked(ok).ok(), Some(ok));
        for (version, percent) in [(0, 10), (3, 0), (3, 100), (3, 255)] {
            assert!(
                matches!(
                    checked(CanarySplit { version, percent }),
                    Err(ApiError::BadRequest(_))
                ),
                "{version} at {percent}% was accepted"
            );
        }
    }
}
