//! The secrets routes (`/v1/secrets`): a subject's named values, write-only. A function's
//! configuration refers to them by name (`ConfigChange::secrets`); their values are never in
//! an answer.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use crate::backend::{Backend, Subject};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, json_body};
use crate::routes::data;
use crate::types::{SecretInfo, SecretRequest};

/// What the secrets routes need from the Core.
pub trait SecretsBackend: Send + Sync + 'static {
    /// The caller's secrets, by name (never their values).
    fn list_secrets(
        &self,
        who: &Subject,
    ) -> impl Future<Output = ApiResult<Vec<SecretInfo>>> + Send;
    /// Creates or rotates one of the caller's secrets; answers whether it is new. Functions
    /// that refer to it get the new value from their next invocation.
    fn put_secret(
        &self,
        who: &Subject,
        name: &str,
        value: String,
    ) -> impl Future<Output = ApiResult<(bool, SecretInfo)>> + Send;
    /// Deletes one of the caller's secrets (invocations of functions still referring to it
    /// are answered 409).
    fn delete_secret(
        &self,
        who: &Subject,
        name: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
}

/// The secrets routes, merged into the API's router.
pub(crate) fn routes<B: Backend>() -> Router<Arc<B>> {
    Router::new()
        .route("/v1/secrets", get(list::<B>))
        .route("/v1/secrets/{name}", put(put_one::<B>).delete(delete::<B>))
}

async fn list<B: Backend>(State(backend): State<Arc<B>>, Auth(who): Auth) -> ApiResult<Response> {
    data(StatusCode::OK, backend.list_secrets(&who).await?)
}

async fn put_one<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    bytes: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    crate::names::validate("secret", &name).map_err(ApiError::BadRequest)?;
    let bytes = crate::routes::body(bytes)?;
    let request: SecretRequest = json_body(&bytes, "secret")?;
    let (created, info) = backend.put_secret(&who, &name, request.value).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    data(status, info)
}

async fn delete<B: Backend>(
    State(backend): State<Arc<B>>,
    Auth(who): Auth,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    backend.delete_secret(&who, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The operations of the secrets routes, for the OpenAPI document.
#[allow(dead_code, unreachable_pub)]
pub(crate) mod doc {
    use crate::types::{Data, ErrorBody, SecretInfo, SecretRequest};

    const ERROR: &str = "The error (`{\"errors\": {\"detail\": \"...\"}}`): 400 bad input, 401 no or unknown token, 404 no such secret, 413 body too large, 429 too many secrets, 500 our fault, 503 the Core has no secrets key";

    #[utoipa::path(get, path = "/v1/secrets", tag = "functions",
        responses((status = 200, description = "The caller's secrets: names and times, never values", body = Data<Vec<SecretInfo>>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn list_secrets() {}

    #[utoipa::path(put, path = "/v1/secrets/{name}", tag = "functions",
        params(("name" = String, Path, description = "Secret name (letters, digits and `_`)")),
        request_body(content = SecretRequest),
        responses((status = 201, description = "Created", body = Data<SecretInfo>),
            (status = 200, description = "Rotated: functions referring to it get the new value from their next invocation", body = Data<SecretInfo>),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn put_secret() {}

    #[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "functions",
        params(("name" = String, Path, description = "Secret name")),
        responses((status = 204, description = "Deleted"),
            (status = "default", description = ERROR, body = ErrorBody)))]
    pub fn delete_secret() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes' tests use a backend whose every method panics, like a bug would.
    impl SecretsBackend for crate::routes::tests::Broken {
        async fn list_secrets(&self, _: &Subject) -> ApiResult<Vec<SecretInfo>> {
            panic!("broken")
        }
        async fn put_secret(
            &self,
            _: &Subject,
            _: &str,
            _: String,
        ) -> ApiResult<(bool, SecretInfo)> {
            panic!("broken")
        }
        async fn delete_secret(&self, _: &Subject, _: &str) -> ApiResult<()> {
            panic!("broken")
        }
    }
}
