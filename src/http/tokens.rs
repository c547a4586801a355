//! `/v1/tokens` and the JWKS: issuing, validating and revoking tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, Problem};
use crate::domain::api_key::Role;
use crate::signing::{Jwk, TokenError};
use crate::store::{offers, tokens as token_store};
use crate::tokens::{self, Granted, RedeemError};

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

impl TokenView {
    pub fn new(granted: Granted, offer_id: Uuid) -> Self {
        TokenView {
            token: granted.token,
            token_id: granted.token_id,
            offer_id,
            expires_at: granted.expires_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// From a `verified` answer of POST /v1/verifications.
    membership_id: Uuid,
    offer_id: Uuid,
}

/// Issue a token for an offer from a live membership ("verify once"). 403
/// `not_eligible` for another community or a lapsed membership, 409
/// `offer_exhausted` or `person_limit_reached` at a cap.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", security(("api_key" = [])),
    request_body = IssueRequest,
    responses((status = 201, body = TokenView),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<IssueRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    caller.require(&[Role::Checkout])?;
    let offer = offers::get(&state.db, body.offer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No offer {}.", body.offer_id)))?;
    let membership = token_store::membership(&state.db, body.membership_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No membership {}.", body.membership_id)))?;
    let granted = tokens::issue(&state.db, &state.ring, &offer, &membership).await?;
    Ok((StatusCode::CREATED, Json(TokenView::new(granted, offer.id))))
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
#[utoipa::path(post, path = "/v1/tokens/validate", tag = "tokens", security(("api_key" = [])),
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
    let id = tokens::token_id(&claims).map_err(RedeemError::from)?;
    let found = token_store::state(&state.db, id)
        .await?
        .filter(|t| {
            principal.role != Role::Partner
                || (t.partner_id.is_some() && t.partner_id == principal.partner_id)
        })
        .ok_or_else(|| {
            ApiError::from(RedeemError::from(TokenError::Invalid(
                "no such token".into(),
            )))
        })?;
    Ok(Json(TokenStateView {
        token_id: found.id,
        offer_id: found.offer_id,
        state: found.shown_state().to_owned(),
        expires_at: found.expires_at,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    token_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    revoked_at: OffsetDateTime,
}

/// Revoke an issued token: it can no longer be redeemed and frees its place.
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens", security(("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Revoked),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Revoked>, ApiError> {
    caller.require(&[Role::Admin])?;
    if let Some(revoked_at) = token_store::revoke(&state.db, id).await? {
        return Ok(Json(Revoked {
            token_id: id,
            revoked_at,
        }));
    }
    match token_store::state(&state.db, id).await? {
        None => Err(ApiError::NotFound(format!("No token {id}."))),
        Some(token) => Err(ApiError::domain(
            StatusCode::CONFLICT,
            "token_not_revocable",
            "Only an issued token can be revoked",
            format!("The token is {}.", token.shown_state()),
        )),
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
