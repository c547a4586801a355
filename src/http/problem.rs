//! Every error leaves as `application/problem+json` (RFC 9457) with a stable
//! `type`. 5xx bodies say nothing internal; the log says everything, inside
//! the request's span (which carries its request id).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::{AuthError, CreateKeyError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field at fault in a `validation_failed` problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `person.email`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable identifier of the failure, e.g. `validation_failed`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Members particular to a problem type (e.g. `rows` of a rejected import).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(ignore)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {detail}")]
    Conflict { kind: &'static str, detail: String },
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// A failure of the offers and tokens domain with its own stable type.
    #[error("{kind}: {detail}")]
    Domain {
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: String,
    },
    #[error("import rejected")]
    ImportRejected(Box<crate::usecases::import::ImportReport>),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// 503 for a database that is away or a pool that stayed full.
    fn unavailable(error: &sqlx::Error) -> Self {
        let detail = crate::db::unavailable(error).unwrap_or("The database is unreachable.");
        tracing::warn!(error = %error, "database unavailable");
        ApiError::Unavailable(detail.to_owned())
    }

    /// A failure caused, anywhere in its chain, by the database being away
    /// or every connection busy is the caller's to retry: 503 with
    /// `Retry-After`, not 500.
    fn database_away_as_unavailable(self) -> Self {
        match self {
            ApiError::Internal(error) => {
                let cause = error
                    .chain()
                    .filter_map(|e| e.downcast_ref::<sqlx::Error>())
                    .find(|e| crate::db::unavailable(e).is_some());
                match cause {
                    Some(cause) => ApiError::unavailable(cause),
                    None => ApiError::Internal(error),
                }
            }
            other => other,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or invalid API key",
            ),
            ApiError::Forbidden(_) => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "This API key's role may not do that",
            ),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                "The request has invalid fields",
            ),
            ApiError::MalformedJson(_) => (
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "The body is not valid JSON",
            ),
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported Content-Type",
            ),
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large",
            ),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Bad request"),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Temporarily unavailable, retry shortly",
            ),
            ApiError::Conflict { kind, .. } => (StatusCode::CONFLICT, kind, "Conflict"),
            ApiError::Domain {
                status,
                kind,
                title,
                ..
            } => (*status, kind, title),
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many failed attempts",
            ),
            ApiError::ImportRejected(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "import_rejected",
                "The import has bad rows; nothing was written",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = self.database_away_as_unavailable();
        let (status, kind, title) = this.parts();
        let detail = match &this {
            ApiError::Unauthenticated(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::MalformedJson(d)
            | ApiError::UnsupportedMediaType(d)
            | ApiError::PayloadTooLarge(d)
            | ApiError::BadRequest(d)
            | ApiError::Unavailable(d)
            | ApiError::Conflict { detail: d, .. }
            | ApiError::Domain { detail: d, .. } => d.clone(),
            ApiError::RateLimited { retry_after_secs } => {
                format!("Too many failed verification attempts; retry in {retry_after_secs} s.")
            }
            ApiError::ImportRejected(report) => format!(
                "{} row(s) rejected; each is listed in `rows`. Fix them, or send on_error=skip \
                 to write the good rows.",
                report.rejected_total
            ),
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
                "The service failed; the request id in the x-request-id header finds it in the logs."
                    .to_owned()
            }
        };
        let mut extensions = serde_json::Map::new();
        let mut retry_after = None;
        let errors = match this {
            ApiError::Validation(errors) => errors,
            ApiError::RateLimited { retry_after_secs } => {
                retry_after = Some(retry_after_secs);
                Vec::new()
            }
            ApiError::ImportRejected(report) => {
                extensions.insert("rejected_total".into(), report.rejected_total.into());
                extensions.insert("rejected_unlisted".into(), report.rejected_unlisted.into());
                extensions.insert(
                    "rows".into(),
                    serde_json::to_value(&report.rejected).unwrap_or_default(),
                );
                Vec::new()
            }
            _ => Vec::new(),
        };
        let mut response = problem_response(Problem {
            kind,
            title,
            status: status.as_u16(),
            detail,
            errors,
            extensions,
        });
        if let Some(secs) = retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        match status {
            StatusCode::UNAUTHORIZED => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

pub fn problem_response(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(problem)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// The problem for a bare status produced outside the handlers (routing,
/// timeouts, layers).
pub fn problem_for_status(status: StatusCode) -> Problem {
    let (kind, title, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "Not found", "No route matches this path."),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "Method not allowed",
            "This path does not accept this method; the Allow header lists those it does.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is too large",
            "The request body exceeds the size limit.",
        ),
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => (
            "timeout",
            "The request took too long",
            "The request did not finish within the server's deadline; retry later.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Unsupported Content-Type",
            "The request's Content-Type is not accepted here.",
        ),
        s if s.is_server_error() => (
            "internal",
            "Internal server error",
            "The service failed; the request id in the x-request-id header finds it in the logs.",
        ),
        _ => (
            "bad_request",
            "Bad request",
            "The request could not be understood.",
        ),
    };
    Problem {
        kind,
        title,
        status: status.as_u16(),
        detail: detail.to_owned(),
        errors: Vec::new(),
        extensions: serde_json::Map::new(),
    }
}

impl From<Arc<AuthError>> for ApiError {
    fn from(error: Arc<AuthError>) -> Self {
        match &*error {
            AuthError::Unknown | AuthError::WrongSecret => {
                ApiError::Unauthenticated("The API key is not valid.".into())
            }
            AuthError::Revoked => ApiError::Unauthenticated("The API key is revoked.".into()),
            AuthError::Busy => ApiError::Unavailable("Too many API keys being checked.".into()),
            AuthError::Database(e) if crate::db::unavailable(e).is_some() => {
                ApiError::unavailable(e)
            }
            AuthError::Database(_) | AuthError::Hashing(_) => {
                ApiError::Internal(anyhow::anyhow!("authenticating a key: {error}"))
            }
        }
    }
}

impl From<CreateKeyError> for ApiError {
    fn from(error: CreateKeyError) -> Self {
        match error {
            CreateKeyError::PartnerRequired
            | CreateKeyError::PartnerNotAllowed
            | CreateKeyError::UnknownPartner => ApiError::invalid("partner_id", error.to_string()),
            CreateKeyError::ReturnOrigins(_) => {
                ApiError::invalid("return_origins", error.to_string())
            }
            CreateKeyError::Database(e) => ApiError::Internal(e.into()),
            CreateKeyError::Hashing(e) => ApiError::Internal(anyhow::anyhow!(e)),
        }
    }
}

impl From<crate::catalog::CatalogError> for ApiError {
    fn from(error: crate::catalog::CatalogError) -> Self {
        ApiError::Internal(error.into())
    }
}

impl From<crate::usecases::verify::VerifyError> for ApiError {
    fn from(error: crate::usecases::verify::VerifyError) -> Self {
        use crate::usecases::verify::VerifyError;
        match error {
            VerifyError::Invalid(errors) => ApiError::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(e.field, e.message))
                    .collect(),
            ),
            VerifyError::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            VerifyError::KeyReused => ApiError::key_reused(),
            VerifyError::Key(e) => ApiError::Internal(e.into()),
            VerifyError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<crate::usecases::import::ImportError> for ApiError {
    fn from(error: crate::usecases::import::ImportError) -> Self {
        use crate::usecases::import::ImportError;
        match error {
            ImportError::Refused(detail) => ApiError::BadRequest(detail),
            ImportError::Rejected(report) => ApiError::ImportRejected(report),
            ImportError::Read(detail) => {
                ApiError::BadRequest(format!("reading the body failed: {detail}"))
            }
            ImportError::Database(e) => ApiError::Internal(e.into()),
            ImportError::Stage(e) => ApiError::Internal(anyhow::anyhow!(e)),
        }
    }
}

impl ApiError {
    pub fn domain(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError::Domain {
            status,
            kind,
            title,
            detail: detail.into(),
        }
    }
}

impl ApiError {
    /// The same Idempotency-Key with another body.
    pub fn key_reused() -> Self {
        ApiError::domain(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used with another request",
            "Use a new key for a new request.",
        )
    }
}

impl From<crate::usecases::issue_token::Refusal> for ApiError {
    fn from(refusal: crate::usecases::issue_token::Refusal) -> Self {
        use crate::usecases::issue_token::Refusal;
        match refusal {
            Refusal::UnknownMembership => ApiError::NotFound("No such membership.".into()),
            Refusal::UnknownOffer => ApiError::NotFound("No such offer.".into()),
            Refusal::NotEligible(why) => ApiError::domain(
                StatusCode::FORBIDDEN,
                "not_eligible",
                "Not eligible for this offer",
                why,
            ),
            Refusal::Exhausted => ApiError::domain(
                StatusCode::CONFLICT,
                "offer_exhausted",
                "The offer has no places left",
                "Every place of the offer is redeemed or held by an outstanding token.",
            ),
            Refusal::PersonLimit => ApiError::domain(
                StatusCode::CONFLICT,
                "person_limit_reached",
                "Per-person limit reached",
                "This person holds or has used as many tokens for the offer as it allows.",
            ),
        }
    }
}

impl From<crate::usecases::issue_token::IssueError> for ApiError {
    fn from(error: crate::usecases::issue_token::IssueError) -> Self {
        use crate::usecases::issue_token::IssueError;
        match error {
            IssueError::KeyReused => ApiError::key_reused(),
            IssueError::Key(e) => ApiError::Internal(e.into()),
            IssueError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<crate::usecases::redeem::Refusal> for ApiError {
    fn from(refusal: crate::usecases::redeem::Refusal) -> Self {
        use crate::usecases::redeem::Refusal;
        match refusal {
            Refusal::Invalid(why) => ApiError::domain(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "The token is not valid",
                format!("The token was refused: {why}."),
            ),
            Refusal::Expired => ApiError::domain(
                StatusCode::GONE,
                "token_expired",
                "The token has expired",
                "The token expired before it was redeemed.",
            ),
            Refusal::AlreadyRedeemed => ApiError::domain(
                StatusCode::CONFLICT,
                "already_redeemed",
                "The token was already redeemed",
                "A token is redeemed once.",
            ),
            Refusal::Revoked => ApiError::domain(
                StatusCode::CONFLICT,
                "token_revoked",
                "The token was revoked",
                "The token was revoked or its redemption reversed; it cannot be redeemed.",
            ),
        }
    }
}

impl From<crate::usecases::redeem::RedeemError> for ApiError {
    fn from(error: crate::usecases::redeem::RedeemError) -> Self {
        use crate::usecases::redeem::RedeemError;
        match error {
            RedeemError::Refused(refusal) => refusal.into(),
            RedeemError::KeyReused => ApiError::key_reused(),
            RedeemError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(error.into())
    }
}
