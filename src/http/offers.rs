//! `/v1/offers`: admins manage offers; checkouts see the active ones;
//! partners see their own.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::communities::CommunityKey;
use super::json::Json;
use super::offer_terms::{DiscountBody, StatusBody};
use super::problem::{ApiError, FieldError, Problem};
use super::query::Query;
use crate::auth::Principal;
use crate::domain::api_key::Role;
use crate::domain::community::Community;
use crate::domain::offer::{DEFAULT_TOKEN_TTL_SECS, Offer, OfferStatus};
use crate::store::offers::{self, OfferFilter};
use crate::store::stats::{self, OfferStats};
use crate::store::{communities, partners};

const ANY_ROLE: &[Role] = &[Role::Admin, Role::Checkout, Role::Partner];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change))
        .routes(routes!(offer_stats))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OfferView {
    id: Uuid,
    title: String,
    description: String,
    communities: Vec<String>,
    subsegments: Vec<String>,
    discount: DiscountBody,
    #[serde(with = "time::serde::rfc3339::option")]
    starts_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    ends_at: Option<OffsetDateTime>,
    status: StatusBody,
    partner_id: Option<Uuid>,
    total_cap: Option<i32>,
    per_person_limit: Option<i32>,
    token_ttl_secs: i32,
    reversal_returns_token: bool,
}

impl From<Offer> for OfferView {
    fn from(o: Offer) -> Self {
        OfferView {
            id: o.id,
            title: o.title,
            description: o.description,
            communities: o.communities,
            subsegments: o.subsegments,
            discount: o.discount.into(),
            starts_at: o.starts_at,
            ends_at: o.ends_at,
            status: o.status.into(),
            partner_id: o.partner_id,
            total_cap: o.total_cap,
            per_person_limit: o.per_person_limit,
            token_ttl_secs: o.token_ttl_secs,
            reversal_returns_token: o.reversal_returns_token,
        }
    }
}

impl From<&Offer> for OfferView {
    fn from(o: &Offer) -> Self {
        OfferView::from(o.clone())
    }
}

fn default_ttl() -> i32 {
    DEFAULT_TOKEN_TTL_SECS
}

fn default_status() -> StatusBody {
    StatusBody::Draft
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    title: String,
    #[serde(default)]
    #[schema(max_length = 4000)]
    description: String,
    /// Eligible community keys.
    #[schema(min_items = 1, value_type = Vec<CommunityKey>)]
    communities: Vec<String>,
    /// Eligible sub-statuses; empty: all of them.
    #[serde(default)]
    #[schema(value_type = Vec<CommunityKey>)]
    subsegments: Vec<String>,
    discount: DiscountBody,
    /// RFC 3339; an offset is accepted and kept as the instant it names.
    #[serde(default, deserialize_with = "super::instant::option")]
    starts_at: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "super::instant::option")]
    ends_at: Option<OffsetDateTime>,
    #[serde(default = "default_status")]
    status: StatusBody,
    partner_id: Option<Uuid>,
    /// "50 free flights": redeemed plus outstanding tokens never exceed it.
    #[schema(minimum = 1, maximum = 2147483647)]
    total_cap: Option<i32>,
    /// Tokens one person may hold or have used.
    #[schema(minimum = 1, maximum = 2147483647)]
    per_person_limit: Option<i32>,
    /// Token lifetime in seconds (default 900), 10 seconds to 30 days.
    #[serde(default = "default_ttl")]
    #[schema(minimum = 10, maximum = 2592000, default = 900)]
    token_ttl_secs: i32,
    /// Whether reversing a redemption gives the token back to the consumer.
    #[serde(default)]
    reversal_returns_token: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only offers for this community.
    community: Option<String>,
    /// Admins only: filter by status.
    #[param(value_type = Option<StatusBody>)]
    status: Option<StatusBody>,
}

/// The offer a body describes, not yet checked.
pub(super) fn offer_of(id: Uuid, body: OfferBody) -> Offer {
    Offer {
        id,
        title: body.title.trim().to_owned(),
        description: body.description,
        communities: body.communities,
        subsegments: body.subsegments,
        discount: body.discount.into(),
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        status: body.status.into(),
        partner_id: body.partner_id,
        total_cap: body.total_cap,
        per_person_limit: body.per_person_limit,
        token_ttl_secs: body.token_ttl_secs,
        reversal_returns_token: body.reversal_returns_token,
    }
}

/// The offer's faults against the known communities, as request fields.
pub(super) fn faults_of(offer: &Offer, known: &HashMap<String, Community>) -> Vec<FieldError> {
    offer
        .validate(|key| known.get(key).cloned())
        .into_iter()
        .map(|e| FieldError::new(e.field, e.message))
        .collect()
}

async fn checked(state: &AppState, id: Uuid, body: OfferBody) -> Result<Offer, ApiError> {
    let offer = offer_of(id, body);
    let known = communities::all_by_key(&state.db).await?;
    let mut errors = faults_of(&offer, &known);
    if let Some(partner) = offer.partner_id
        && !partners::exists(&state.db, partner).await?
    {
        errors.push(FieldError::new("partner_id", "no partner has this id"));
    }
    if errors.is_empty() {
        Ok(offer)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Whether the caller may see the offer; unseen offers are 404s.
fn visible(caller: &Principal, offer: &Offer) -> bool {
    match caller.role {
        Role::Admin => true,
        Role::Checkout => offer.status == OfferStatus::Active,
        Role::Partner => offer.partner_id.is_some() && offer.partner_id == caller.partner_id,
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("No offer {id}."))
}

/// Offers: every one for admins, the active ones for checkouts, a partner's
/// own for its keys. Checkouts are served from the catalogue: an offer
/// changed through another process shows within five seconds.
#[utoipa::path(get, path = "/v1/offers", tag = "offers", security(("api_key" = ["admin", "checkout", "partner"])),
    params(ListParams),
    responses((status = 200, body = Vec<OfferView>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<OfferView>>, ApiError> {
    let principal = caller.require(ANY_ROLE)?;
    let filter = match principal.role {
        Role::Admin => OfferFilter {
            status: params.status.map(OfferStatus::from),
            community: params.community.as_deref(),
            partner_id: None,
        },
        Role::Checkout => {
            let active = state.catalog.active_offers().await?;
            let listed = active.listed(params.community.as_deref());
            return Ok(Json(listed.map(OfferView::from).collect()));
        }
        Role::Partner => OfferFilter {
            status: params.status.map(OfferStatus::from),
            community: params.community.as_deref(),
            partner_id: Some(principal.partner_id.unwrap_or(Uuid::nil())),
        },
    };
    let all = offers::list(&state.db, &filter).await?;
    Ok(Json(all.into_iter().map(OfferView::from).collect()))
}

/// Create an offer (status `draft` unless given).
#[utoipa::path(post, path = "/v1/offers", tag = "offers", security(("api_key" = ["admin"])),
    request_body = OfferBody,
    responses((status = 201, body = OfferView),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<OfferBody>,
) -> Result<(StatusCode, Json<OfferView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let offer = checked(&state, Uuid::now_v7(), body).await?;
    let saved = crate::usecases::offers::save(&state.db, &offer).await?;
    state.catalog.forget_offers();
    tracing::info!(offer_id = %saved.id, "offer created");
    Ok((StatusCode::CREATED, Json(saved.into())))
}

/// One offer.
#[utoipa::path(get, path = "/v1/offers/{id}", tag = "offers", security(("api_key" = ["admin", "checkout", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OfferView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<OfferView>, ApiError> {
    let principal = caller.require(ANY_ROLE)?;
    let offer = offers::get(&state.db, id)
        .await?
        .filter(|o| visible(principal, o))
        .ok_or_else(|| not_found(id))?;
    Ok(Json(offer.into()))
}

/// Replace an offer's terms (the whole offer, as when creating it); the
/// status moves it between draft, active, paused and archived.
#[utoipa::path(put, path = "/v1/offers/{id}", tag = "offers", security(("api_key" = ["admin"])),
    params(("id" = Uuid, Path)),
    request_body = OfferBody,
    responses((status = 200, body = OfferView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<OfferBody>,
) -> Result<Json<OfferView>, ApiError> {
    caller.require(&[Role::Admin])?;
    offers::get(&state.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let offer = checked(&state, id, body).await?;
    let saved = crate::usecases::offers::save(&state.db, &offer).await?;
    state.catalog.forget_offers();
    Ok(Json(saved.into()))
}

/// Verifications tried and passed for the offer; tokens issued, outstanding,
/// expired, redeemed and revoked; redemptions reversed and confirmed; the
/// redemption rate and the median time from issue to redemption.
#[utoipa::path(get, path = "/v1/offers/{id}/stats", tag = "offers", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = OfferStats),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn offer_stats(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<OfferStats>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    offers::get(&state.db, id)
        .await?
        .filter(|o| visible(principal, o))
        .ok_or_else(|| not_found(id))?;
    Ok(Json(stats::for_offer(&state.db, id).await?))
}
