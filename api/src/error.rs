//! One error type for every handler, mapped to FunLess's status codes and error body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::types::{ErrorBody, REASON_HEADER, VERSION_HEADER};

/// Result of a handler or a [`crate::Backend`] call.
pub type ApiResult<T, E = ApiError> = std::result::Result<T, E>;

/// Every way a request can fail, each with its status code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or breaks a rule.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no token or an unknown one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token is valid but lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such module or function (or not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// 409: the name is taken.
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body did not arrive within the body read time-out.
    #[error("{0}")]
    RequestTimeout(String),
    /// 413: the body is larger than allowed.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: this client holds too much of a shared resource (request bodies in flight), or a
    /// subject is at one of its quotas.
    #[error("{0}")]
    TooManyRequests(String),
    /// 422: the function ran and failed; `reason` names the kind (sent in the
    /// [`crate::types::REASON_HEADER`] header).
    #[error("{message}")]
    FunctionError {
        /// The kind of failure.
        reason: &'static str,
        /// What happened.
        message: String,
        /// The version of the function that failed, when known (sent in the
        /// [`crate::types::VERSION_HEADER`] header).
        version: Option<u64>,
    },
    /// 502: a node the Core was asked to reach cannot be reached or refused it.
    #[error("{0}")]
    BadGateway(String),
    /// 503: no worker can run the function now.
    #[error("{0}")]
    Unavailable(String),
    /// 504: the worker did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 500: the actor running the invocation crashed; its supervisor answered at once with
    /// the reason (no time-out), which the caller sees.
    #[error("{0}")]
    Crashed(String),
    /// 500: a fault of ours; the detail is logged, the caller gets a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The status code of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::FunctionError { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Crashed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(cause) => {
                // Internal causes stay in the log; the caller learns only that it was ours.
                tracing::error!(%cause, "internal error answering a request");
                "internal server error".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody::new(detail))).into_response();
        if let ApiError::FunctionError {
            reason, version, ..
        } = &self
        {
            let headers = response.headers_mut();
            headers.insert(REASON_HEADER, axum::http::HeaderValue::from_static(reason));
            if let Some(version) = version {
                headers.insert(VERSION_HEADER, axum::http::HeaderValue::from(*version));
            }
        }
        response
    }
}
