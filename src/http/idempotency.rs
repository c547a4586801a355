//! The `Idempotency-Key` header in, `idempotent-replayed` out.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;

use super::problem::ApiError;
use crate::usecases::idempotency::{IdempotencyKey, KEY_MAX_CHARS};

pub const HEADER: &str = "idempotency-key";

/// The request's key; a missing header is `None`, a bad one a 422.
pub fn optional_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get(HEADER) else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| {
        ApiError::invalid(
            "Idempotency-Key",
            format!("1 to {KEY_MAX_CHARS} visible ASCII characters"),
        )
    })?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|e| ApiError::invalid(e.field, e.message))
}

/// The request's key, which the route requires.
pub fn required_key(headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    optional_key(headers)?.ok_or_else(|| {
        ApiError::invalid(
            "Idempotency-Key",
            format!("a header of 1 to {KEY_MAX_CHARS} characters is required"),
        )
    })
}

/// Marks an answer given again for a retry.
pub fn mark(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}
