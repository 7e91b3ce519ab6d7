//! Extractors whose failures come back in the FunLess error shape instead of axum's plain text.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequestParts, Multipart};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
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

/// The fields of a multipart form in order, each as its name and bytes. `expected` completes
/// the refusal of a body that is no multipart form ("expected a multipart/form-data body
/// {expected}"). Every field is read whole: the route's body limit bounds them together.
pub(crate) async fn form_fields(
    multipart: Result<Multipart, impl IntoResponse>,
    expected: &str,
) -> Result<Vec<(String, Bytes)>, ApiError> {
    let mut multipart = multipart.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "expected a multipart/form-data body{expected} ({})",
            rejection.into_response().status()
        ))
    })?;
    let mut fields = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        fields.push((name, field_bytes(field).await?));
    }
    Ok(fields)
}

/// A field's bytes. A field that arrives in one piece (an upload read whole by the admission
/// layer does) is kept as that piece, sharing the parser's buffer; `Field::bytes` would copy
/// it, and a 64 MiB function would briefly cost three copies instead of two.
async fn field_bytes(mut field: axum::extract::multipart::Field<'_>) -> Result<Bytes, ApiError> {
    let mut pieces: Vec<Bytes> = Vec::new();
    while let Some(piece) = field.chunk().await.map_err(multipart_error)? {
        pieces.push(piece);
    }
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.swap_remove(0),
        _ => Bytes::from(pieces.concat()),
    })
}

/// A form field's text (400 when it is not UTF-8).
pub(crate) fn field_text(name: &str, bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest(format!("field '{name}' is not UTF-8")))
}

fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("the upload is larger than allowed".into())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}
