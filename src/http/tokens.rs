//! `/v1/tokens` and the JWKS: issuing, validating and revoking tokens.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::idempotency;
use super::json::Json;
use super::problem::{ApiError, Problem, problem_response};
use crate::domain::api_key::Role;
use crate::signing::Jwk;
use crate::store::tokens as token_store;
use crate::usecases::idempotency::Keyed;
use crate::usecases::issue_token::{self, Granted, IssueRequest as Issue};
use crate::usecases::redeem::{self, RedeemError, Refusal};
use crate::usecases::revoke_token::{self, Revoked};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue))
        .routes(routes!(validate))
        .routes(routes!(revoke))
        .routes(routes!(jwks))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The compact JWS to hand to the consumer's checkout.
    pub token: String,
    pub token_id: Uuid,
    pub offer_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl From<Granted> for TokenView {
    fn from(granted: Granted) -> Self {
        TokenView {
            token: granted.token,
            token_id: granted.token_id,
            offer_id: granted.offer_id,
            expires_at: granted.expires_at,
        }
    }
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// From a `verified` answer of POST /v1/verifications.
    membership_id: Uuid,
    offer_id: Uuid,
}

/// Issue a token for an offer from a live membership ("verify once"). 403
/// `not_eligible` for another community or a lapsed membership, 409
/// `offer_exhausted` or `person_limit_reached` at a cap. With an
/// `Idempotency-Key`, a retry gets the first answer (the same token) and
/// holds no second place.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("api_key" = ["checkout"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body get the first answer")),
    request_body = IssueRequest,
    responses((status = 201, body = TokenView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<IssueRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let keyed =
        idempotency::optional_key(&headers)?.map(|key| Keyed::new(&state.indexer, key, &body));
    let answer = issue_token::issue(
        &state.db,
        &state.ring,
        &state.indexer.place_secret(),
        &Issue {
            api_key_id: principal.key_id.as_str(),
            idempotency: keyed.as_ref(),
            membership_id: body.membership_id,
            offer_id: body.offer_id,
        },
    )
    .await?;
    let response = match answer.value {
        Ok(granted) => (StatusCode::CREATED, Json(TokenView::from(granted))).into_response(),
        Err(refusal) => ApiError::from(refusal).into_response(),
    };
    Ok(idempotency::mark(response, answer.replayed))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenStateView {
    token_id: Uuid,
    offer_id: Uuid,
    /// issued, expired, redeemed, reversed or revoked.
    state: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// A token's state and offer, consuming nothing. A partner sees only its
/// own offers' tokens.
#[utoipa::path(post, path = "/v1/tokens/validate", tag = "tokens", security(("api_key" = ["checkout", "partner"])),
    request_body = ValidateRequest,
    responses((status = 200, body = TokenStateView),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn validate(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ValidateRequest>,
) -> Result<Json<TokenStateView>, ApiError> {
    let principal = caller.require(&[Role::Checkout, Role::Partner])?;
    let claims = state
        .ring
        .verify(&body.token, true)
        .await
        .map_err(RedeemError::from)?;
    let id = redeem::token_id(&claims).map_err(RedeemError::from)?;
    let found = token_store::state(&state.db, id)
        .await?
        .filter(|t| {
            principal.role != Role::Partner
                || (t.partner_id.is_some() && t.partner_id == principal.partner_id)
        })
        .ok_or_else(|| ApiError::from(Refusal::Invalid("no such token".into())))?;
    Ok(Json(TokenStateView {
        token_id: found.id,
        offer_id: found.offer_id,
        state: found.shown_state().to_owned(),
        expires_at: found.expires_at,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevokedView {
    token_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
}

/// Revoke an issued token (admins only): it can no longer be redeemed and
/// frees its place. A token in any other state is 409 `token_not_revocable`
/// naming its `state`; an unknown id is 404.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens", security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RevokedView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    match revoke_token::revoke(&state.db, id).await? {
        Revoked::Now(revoked_at) => Ok(Json(RevokedView {
            token_id: id,
            revoked_at,
        })
        .into_response()),
        Revoked::NotFound => Err(ApiError::NotFound(format!("No token {id}."))),
        Revoked::Not(current) => {
            let mut extensions = serde_json::Map::new();
            extensions.insert("state".into(), current.clone().into());
            Ok(problem_response(Problem {
                kind: "token_not_revocable",
                title: "Only an issued token can be revoked",
                status: StatusCode::CONFLICT.as_u16(),
                detail: format!("The token is {current}."),
                errors: Vec::new(),
                extensions,
            }))
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// The public keys that verify offer tokens (Ed25519, `alg` EdDSA): the
/// signing key and every retired key whose tokens may still be live.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, body = JwkSet)))]
async fn jwks(State(state): State<AppState>) -> Result<Json<JwkSet>, ApiError> {
    let keys = state
        .ring
        .jwks()
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(JwkSet {
        keys: keys.to_vec(),
    }))
}
