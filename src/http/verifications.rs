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
use crate::domain::api_key::Role;
use crate::domain::identity::RawIdentity;
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
    /// The offer the consumer wants (a token in the same answer arrives with offers).
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
        } => VerificationView {
            id: attempt_id,
            status: Status::Verified,
            community: community.key.clone(),
            subsegment,
            expires_at,
            membership_id: Some(membership_id),
        },
        Outcome::NotVerified { attempt_id } => VerificationView {
            id: attempt_id,
            status: Status::NotVerified,
            community: community.key.clone(),
            subsegment: body.subsegment,
            expires_at: None,
            membership_id: None,
        },
    };
    Ok(Json(view))
}
