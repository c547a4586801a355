//! `POST /v1/verifications`: does this consumer belong to the community?

use std::net::IpAddr;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::client_address::ClientAddress;
use super::idempotency;
use super::json::Json;
use super::person::PersonBody;
use super::problem::{ApiError, Problem};
use super::tokens::TokenView;
use crate::domain::api_key::Role;
use crate::usecases::idempotency::Keyed;
use crate::usecases::verify::{self, Origin, Outcome, Request, Verification};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerificationRequest {
    /// A community key, e.g. `student`.
    community: String,
    /// Require this sub-status, e.g. `veteran`.
    subsegment: Option<String>,
    person: PersonBody,
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

impl VerificationRequest {
    pub(super) fn community(&self) -> &str {
        &self.community
    }

    /// The attempt this body asks for.
    pub(super) fn request(&self, idempotency: Option<Keyed>) -> Request {
        Request {
            subsegment: self.subsegment.clone(),
            person: self.person.clone().into(),
            consent: self.consent,
            customer_ref: self.customer_ref.clone(),
            customer_ref_ix: None,
            offer_id: self.offer_id,
            idempotency,
        }
    }
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
    security(("api_key" = ["checkout"])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe: the same key and body get the first answer, and a token issued with it holds one place")),
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
    headers: HeaderMap,
    Json(body): Json<VerificationRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let keyed =
        idempotency::optional_key(&headers)?.map(|key| Keyed::new(&state.indexer, key, &body));
    // From memory: the offer's own row is checked again, fresh, when the
    // token takes its place.
    if let Some(id) = body.offer_id {
        state
            .active_offer(id)
            .await?
            .ok_or_else(|| ApiError::invalid("offer_id", "no active offer has this id"))?;
    }
    let community = state.community(&body.community).await?.ok_or_else(|| {
        ApiError::invalid(
            "community",
            format!("no community has the key `{}`", body.community),
        )
    })?;
    let origin = Origin {
        api_key_id: principal.key_id.as_str(),
        client_address: body.client_ip.unwrap_or(peer),
        channel: crate::usecases::verify::Channel::Api,
    };
    let request = body.request(keyed);
    let answer = verify::verify(
        &state.db,
        &state.ring,
        &state.indexer,
        &state.limits,
        &community,
        &origin,
        &request,
    )
    .await?;
    let Verification { outcome, token } = answer.value;
    let (token, token_problem) = match token {
        None => (None, None),
        Some(Ok(granted)) => (Some(TokenView::from(granted)), None),
        Some(Err(refusal)) => (None, Some(refusal.kind().to_owned())),
    };
    let view = match outcome {
        Outcome::Verified {
            attempt_id,
            subsegment,
            membership_id,
            expires_at,
        } => VerificationView {
            id: attempt_id,
            status: Status::Verified,
            community: community.key.clone(),
            subsegment,
            expires_at,
            membership_id: Some(membership_id),
            token,
            token_problem,
        },
        Outcome::NotVerified {
            attempt_id,
            subsegment,
        } => VerificationView {
            id: attempt_id,
            status: Status::NotVerified,
            community: community.key.clone(),
            subsegment,
            expires_at: None,
            membership_id: None,
            token: None,
            token_problem: None,
        },
    };
    Ok(idempotency::mark(
        Json(view).into_response(),
        answer.replayed,
    ))
}
