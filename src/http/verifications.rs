//! `POST /v1/verifications`: does this consumer belong to the community?

use std::net::IpAddr;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::client_address::ClientAddress;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::tokens::TokenView;
use crate::domain::api_key::Role;
use crate::domain::identity::RawIdentity;
use crate::domain::offer::{Offer, OfferStatus};
use crate::store::{offers, tokens};
use crate::tokens::IssueError;
use crate::verification::{self, Origin, Outcome, Request};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// A community key, e.g. `student`.
    community: String,
    /// Require this sub-status, e.g. `veteran`.
    subsegment: Option<String>,
    person: RawIdentity,
    /// Must be true: the consumer agreed to be verified.
    consent: bool,
    /// The checkout's own reference for the consumer (stored only as a keyed hash).
    customer_ref: Option<String>,
    /// The consumer's address, when the checkout calls on its behalf; rate
    /// limits count per address.
    #[schema(value_type = Option<String>)]
    client_ip: Option<IpAddr>,
    /// The offer the consumer wants: when verified and eligible, its token
    /// comes in the same answer.
    offer_id: Option<Uuid>,
}

#[derive(Serialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Verified,
    NotVerified,
}

/// The answer: `not_verified` never says why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerificationView {
    id: Uuid,
    status: Status,
    community: String,
    subsegment: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    membership_id: Option<Uuid>,
    /// With `offer_id`, when verified and eligible: the offer's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<TokenView>,
    /// With `offer_id`, when verified but no token was issued: why, as a
    /// problem type (`not_eligible`, `offer_exhausted`, `person_limit_reached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    token_problem: Option<String>,
}

/// Verify a consumer against the community's records. `not_verified` looks
/// the same whether the person is unlisted, a field is wrong, the record has
/// expired or the age gate refused. Failed attempts are limited per identity
/// component, client address and API key (429 with Retry-After).
#[utoipa::path(post, path = "/v1/verifications", tag = "verifications",
    security(("api_key" = [])),
    request_body = VerificationRequest,
    responses(
        (status = 200, body = VerificationView),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "Unknown community or sub-status, missing fields, no consent"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    ClientAddress(peer): ClientAddress,
    Json(body): Json<VerificationRequest>,
) -> Result<Json<VerificationView>, ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let offer = match body.offer_id {
        Some(id) => Some(
            offers::get(&state.db, id)
                .await?
                .filter(|o| o.status == OfferStatus::Active)
                .ok_or_else(|| ApiError::invalid("offer_id", "no active offer has this id"))?,
        ),
        None => None,
    };
    let community = state.community(&body.community).await?.ok_or_else(|| {
        ApiError::invalid(
            "community",
            format!("no community has the key `{}`", body.community),
        )
    })?;
    let origin = Origin {
        api_key_id: principal.key_id.as_str(),
        client_address: body.client_ip.unwrap_or(peer),
    };
    let request = Request {
        subsegment: body.subsegment.clone(),
        person: body.person,
        consent: body.consent,
        customer_ref: body.customer_ref,
        offer_id: body.offer_id,
    };
    let outcome = verification::verify(
        &state.db,
        &state.indexer,
        &state.limits,
        &community,
        &origin,
        &request,
    )
    .await?;
    let view = match outcome {
        Outcome::Verified {
            attempt_id,
            subsegment,
            membership_id,
            expires_at,
        } => {
            let (token, token_problem) = match &offer {
                None => (None, None),
                Some(offer) => token_for(&state, offer, membership_id).await?,
            };
            VerificationView {
                id: attempt_id,
                status: Status::Verified,
                community: community.key.clone(),
                subsegment,
                expires_at,
                membership_id: Some(membership_id),
                token,
                token_problem,
            }
        }
        Outcome::NotVerified { attempt_id } => VerificationView {
            id: attempt_id,
            status: Status::NotVerified,
            community: community.key.clone(),
            subsegment: body.subsegment,
            expires_at: None,
            membership_id: None,
            token: None,
            token_problem: None,
        },
    };
    Ok(Json(view))
}

/// The offer's token for a membership just verified, or the problem type
/// that kept it back.
async fn token_for(
    state: &AppState,
    offer: &Offer,
    membership_id: Uuid,
) -> Result<(Option<TokenView>, Option<String>), ApiError> {
    let membership = tokens::membership(&state.db, membership_id)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("membership {membership_id} vanished"))
        })?;
    match crate::tokens::issue(&state.db, &state.ring, offer, &membership).await {
        Ok(granted) => Ok((Some(TokenView::new(granted, offer.id)), None)),
        Err(IssueError::Key(e)) => Err(ApiError::Internal(e.into())),
        Err(IssueError::Database(e)) => Err(ApiError::Internal(e.into())),
        Err(refused) => {
            let kind = match refused {
                IssueError::Exhausted => "offer_exhausted",
                IssueError::PersonLimit => "person_limit_reached",
                _ => "not_eligible",
            };
            Ok((None, Some(kind.to_owned())))
        }
    }
}
