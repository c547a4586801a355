//! The `Caller` extractor: the authenticated API key behind a request.
//! Handlers state the roles they accept with `caller.require(..)`; the same
//! roles, as each operation's OpenAPI security requirement names them, are
//! checked when the key is authenticated, before anything else is read.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::problem::ApiError;
use crate::auth::{Principal, count_refusal};
use crate::domain::api_key::{ApiKey, Role};

pub struct Caller(pub Principal);

impl Caller {
    /// Refuses the request (403) unless the key has one of the roles.
    pub fn require(&self, roles: &[Role]) -> Result<&Principal, ApiError> {
        if roles.contains(&self.0.role) {
            Ok(&self.0)
        } else {
            crate::auth::count_refusal("wrong_role");
            let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::Forbidden(format!(
                "This route needs a key of role {}; this key's role is {}.",
                allowed.join(" or "),
                self.0.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            count_refusal("missing");
            ApiError::Unauthenticated("Send the API key as `Authorization: Bearer <key>`.".into())
        })?;
        // The scheme is case-insensitive (RFC 9110, section 11.1).
        let raw = header
            .to_str()
            .ok()
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key)
            .ok_or_else(|| {
                count_refusal("malformed");
                ApiError::Unauthenticated(
                    "The Authorization header must read `Bearer <key>`.".into(),
                )
            })?;
        let key = ApiKey::parse(raw.trim()).map_err(|malformed| {
            count_refusal("malformed");
            ApiError::Unauthenticated(format!("{malformed}."))
        })?;
        let principal = state.keys.authenticate(&key).await?;
        tracing::Span::current().record("api_key", principal.key_id.as_str());
        let caller = Caller(principal);
        // A key of the wrong role is refused here, before the request's
        // path, query or body is read, so it learns nothing of what the
        // route would accept. Handlers state their roles again.
        if let Some(route) = parts.extensions.get::<MatchedPath>()
            && let Some(roles) = super::roles_for(&parts.method, route.as_str())
        {
            caller.require(roles)?;
        }
        Ok(caller)
    }
}
