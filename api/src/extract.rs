//! Extractors whose failures come back in the FunLess error shape instead of axum's plain text.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::backend::{Backend, Subject};
use crate::error::ApiError;

/// The authenticated caller, from `Authorization: Bearer <token>`.
pub(crate) struct Auth(pub(crate) Subject);

impl<B: Backend> FromRequestParts<Arc<B>> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, backend: &Arc<B>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization header must be 'Bearer <token>'".into())
            })?;
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
