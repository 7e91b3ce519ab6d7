//! Extractors whose failures come back in the FunLess error shape instead of axum's plain text.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::admission::bearer;
use crate::backend::{Backend, Subject};
use crate::error::ApiError;

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub(crate) struct Auth(pub(crate) Subject);

impl<B: Backend> FromRequestParts<Arc<B>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Arc<B>) -> Result<Self, ApiError> {
        // The admission middleware authenticated the headers already (before the body).
        if let Some(subject) = parts.extensions.get::<Subject>() {
            return Ok(Auth(subject.clone()));
        }
        let token = bearer(&parts.headers)?;
        Ok(Auth(backend.authenticate(token).await?))
    }
}

/// The caller, who must be an admin (403 otherwise).
pub(crate) struct Admin;

impl<B: Backend> FromRequestParts<Arc<B>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Arc<B>) -> Result<Self, ApiError> {
        let Auth(subject) = Auth::from_request_parts(parts, backend).await?;
        if !subject.admin {
            return Err(ApiError::Forbidden(
                "this endpoint needs an admin token".into(),
            ));
        }
        Ok(Admin)
    }
}

/// Parses a JSON body, answering 400 with serde's message when it does not fit `T`.
pub(crate) fn json_body<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("invalid {what}: {e}")))
}
