//! `/v1/webhook-endpoints`: receivers of signed events. Admins manage every
//! endpoint; a partner key manages its own partner's, which receive that
//! partner's events only. The secret is shown once, on creation and on
//! rotation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::query::Query;
use crate::auth::Principal;
use crate::domain::api_key::Role;
use crate::store::webhooks::{self, Attempt, Endpoint, EndpointChange, NewEndpoint};
use crate::webhooks::secret;

const DESCRIPTION_MAX: usize = 500;
const PAGE_DEFAULT: i64 = 100;
const PAGE_MAX: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, remove))
        .routes(routes!(rotate_secret))
        .routes(routes!(deliveries))
        .routes(routes!(recover))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    id: Uuid,
    /// The partner whose events it receives; null: every event (an admin's).
    partner_id: Option<Uuid>,
    url: String,
    description: String,
    /// The types it receives; empty: every type.
    event_types: Vec<String>,
    enabled: bool,
    /// When and why it was disabled (by a caller, a 410 answer, or days of
    /// failures).
    #[serde(with = "time::serde::rfc3339::option")]
    disabled_at: Option<OffsetDateTime>,
    disabled_reason: Option<String>,
    /// The first failure of the current run of failures.
    #[serde(with = "time::serde::rfc3339::option")]
    failing_since: Option<OffsetDateTime>,
    /// After a rotation, the previous secret also signs until then.
    #[serde(with = "time::serde::rfc3339::option")]
    previous_secret_until: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        EndpointView {
            id: e.id,
            partner_id: e.partner_id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            previous_secret_until: e.previous_until,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: EndpointView,
    /// `whsec_` and the base64 of 32 bytes: the key Standard Webhooks
    /// libraries verify deliveries with. Not shown again.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwQ2rUZ7Sa0Zc=")]
    secret: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where deliveries are POSTed: http or https, on a host the allow-list
    /// admits, resolving to public addresses (unless private ones are
    /// allowed, as in development).
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^https?://[^/?#@]+(/.*)?$"
    )]
    url: String,
    #[schema(max_length = 500)]
    description: Option<String>,
    /// The types to receive; absent or empty: every type.
    #[schema(max_items = 8)]
    event_types: Option<Vec<EventType>>,
    /// Default true.
    enabled: Option<bool>,
    /// Admins only: the partner whose events it receives (absent: every
    /// event). A partner key's endpoints are always its own partner's.
    partner_id: Option<Uuid>,
}

/// An event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "verification.succeeded")]
    VerificationSucceeded,
    #[serde(rename = "verification.failed")]
    VerificationFailed,
    #[serde(rename = "membership.expiring")]
    MembershipExpiring,
    #[serde(rename = "token.issued")]
    TokenIssued,
    #[serde(rename = "token.redeemed")]
    TokenRedeemed,
    #[serde(rename = "redemption.reversed")]
    RedemptionReversed,
    #[serde(rename = "redemption.confirmed")]
    RedemptionConfirmed,
    #[serde(rename = "offer.exhausted")]
    OfferExhausted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::VerificationSucceeded => "verification.succeeded",
            EventType::VerificationFailed => "verification.failed",
            EventType::MembershipExpiring => "membership.expiring",
            EventType::TokenIssued => "token.issued",
            EventType::TokenRedeemed => "token.redeemed",
            EventType::RedemptionReversed => "redemption.reversed",
            EventType::RedemptionConfirmed => "redemption.confirmed",
            EventType::OfferExhausted => "offer.exhausted",
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEndpoint {
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^https?://[^/?#@]+(/.*)?$"
    )]
    url: Option<String>,
    #[schema(max_length = 500)]
    description: Option<String>,
    #[schema(max_items = 8)]
    event_types: Option<Vec<EventType>>,
    /// Enabling a disabled endpoint clears why it was disabled; events
    /// written meanwhile are sent by `recover`.
    enabled: Option<bool>,
}

/// Whether `principal` may manage an endpoint: an admin any, a partner its
/// own partner's.
fn may_manage(principal: &Principal, e: &Endpoint) -> bool {
    match principal.role {
        Role::Admin => true,
        _ => e.partner_id.is_some() && e.partner_id == principal.partner_id,
    }
}

async fn visible(state: &AppState, principal: &Principal, id: Uuid) -> Result<Endpoint, ApiError> {
    match webhooks::get(&state.db, id).await? {
        Some(e) if may_manage(principal, &e) => Ok(e),
        _ => Err(ApiError::NotFound(format!("No webhook endpoint {id}."))),
    }
}

async fn checked_url(state: &AppState, raw: &str) -> Result<String, ApiError> {
    state
        .webhooks
        .destinations
        .check(raw)
        .await
        .map(|url| url.to_string())
        .map_err(|refused| ApiError::invalid("url", refused.to_string()))
}

/// The longest list of event types (each type once makes eight).
const TYPES_MAX: usize = 8;

fn checked_types(types: Option<Vec<EventType>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(types) = types else { return Ok(None) };
    if types.len() > TYPES_MAX {
        return Err(ApiError::invalid(
            "event_types",
            format!("at most {TYPES_MAX} types"),
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for t in types {
        if !out.iter().any(|o| o == t.as_str()) {
            out.push(t.as_str().to_owned());
        }
    }
    Ok(Some(out))
}

fn checked_description(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(d) if d.chars().count() > DESCRIPTION_MAX => Err(ApiError::invalid(
            "description",
            format!("at most {DESCRIPTION_MAX} characters"),
        )),
        other => Ok(other.map(|d| d.trim().to_owned())),
    }
}

/// Webhook endpoints, oldest first: an admin sees every one, a partner its
/// own.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    responses((status = 200, body = Vec<EndpointView>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    let partner = match principal.role {
        Role::Partner => Some(principal.partner_id.unwrap_or(Uuid::nil())),
        _ => None,
    };
    Ok(Json(
        webhooks::list(&state.db, partner)
            .await?
            .into_iter()
            .map(EndpointView::from)
            .collect(),
    ))
}

/// Register an endpoint; its signing secret is in this answer only. A
/// partner key's endpoint receives its own offers' events; a partner key
/// naming another `partner_id` is 403. An unknown `partner_id` is 422, as is
/// a URL off the allow-list or resolving to a private address.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    request_body = CreateEndpoint,
    responses((status = 201, body = EndpointWithSecret),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateEndpoint>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    let partner_id = match principal.role {
        Role::Partner => {
            let own = principal.partner_id.unwrap_or(Uuid::nil());
            if body.partner_id.is_some_and(|p| p != own) {
                return Err(ApiError::Forbidden(
                    "A partner key registers endpoints for its own partner only.".into(),
                ));
            }
            Some(own)
        }
        _ => body.partner_id,
    };
    let description = checked_description(body.description.as_deref())?.unwrap_or_default();
    let event_types = checked_types(body.event_types)?.unwrap_or_default();
    if let Some(p) = partner_id
        && principal.role == Role::Admin
        && !crate::store::partners::exists(&state.db, p).await?
    {
        return Err(ApiError::invalid("partner_id", "no such partner"));
    }
    let url = checked_url(&state, &body.url).await?;
    let id = Uuid::now_v7();
    let new_secret = secret::generate();
    let sealed = state
        .webhooks
        .sealer
        .seal(id, &new_secret.bytes)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let endpoint = webhooks::insert(
        &state.db,
        &NewEndpoint {
            id,
            partner_id,
            url: &url,
            description: &description,
            event_types: &event_types,
            enabled: body.enabled.unwrap_or(true),
            sealed_secret: &sealed,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret {
            endpoint: endpoint.into(),
            secret: new_secret.shown.expose_secret().to_owned(),
        }),
    ))
}

/// One endpoint (another partner's, or an admin's to a partner key, is 404).
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointView>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    Ok(Json(visible(&state, principal, id).await?.into()))
}

/// Change an endpoint's URL, description, types, or whether it is enabled.
/// Disabling it fails its queued deliveries; `recover` sends them (and what
/// was written while it was disabled) once it is enabled again.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    request_body = ChangeEndpoint,
    responses((status = 200, body = EndpointView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ChangeEndpoint>,
) -> Result<Json<EndpointView>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    visible(&state, principal, id).await?;
    let description = checked_description(body.description.as_deref())?;
    let event_types = checked_types(body.event_types)?;
    let url = match &body.url {
        Some(raw) => Some(checked_url(&state, raw).await?),
        None => None,
    };
    let changed = webhooks::update(
        &state.db,
        id,
        &EndpointChange {
            url: url.as_deref(),
            description: description.as_deref(),
            event_types: event_types.as_deref(),
            enabled: body.enabled,
        },
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("No webhook endpoint {id}.")))?;
    if !changed.enabled {
        webhooks::fail_queued_of_disabled(&state.db, id).await?;
    }
    Ok(Json(changed.into()))
}

/// Delete an endpoint, with its queued deliveries and its log.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    visible(&state, principal, id).await?;
    if !webhooks::delete(&state.db, id).await? {
        return Err(ApiError::NotFound(format!("No webhook endpoint {id}.")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the signing secret: the new one is in this answer only. The
/// previous secret keeps signing beside it (two `v1,` signatures in
/// `webhook-signature`) until `previous_secret_until`, so a receiver can
/// switch without losing a delivery. A secret older than the previous one
/// stops signing at once.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointWithSecret),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    visible(&state, principal, id).await?;
    let new_secret = secret::generate();
    let sealed = state
        .webhooks
        .sealer
        .seal(id, &new_secret.bytes)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let overlap = state.webhooks.settings.secret_overlap_secs as f64;
    let endpoint = webhooks::rotate(&state.db, id, &sealed, overlap)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("No webhook endpoint {id}.")))?;
    Ok(Json(EndpointWithSecret {
        endpoint: endpoint.into(),
        secret: new_secret.shown.expose_secret().to_owned(),
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptView {
    id: i64,
    event_id: Uuid,
    /// 1 for the first attempt of the event to this endpoint.
    attempt: i32,
    #[serde(with = "time::serde::rfc3339")]
    attempted_at: OffsetDateTime,
    /// `delivered` (2xx), `failed`, or `gone` (410: the endpoint was disabled).
    outcome: String,
    /// The receiver's HTTP status; null when none came (see `error`).
    status_code: Option<i32>,
    latency_ms: i32,
    /// The start of the receiver's answer, at most 1 KiB.
    response_excerpt: Option<String>,
    /// Why no answer came: timeout, refused address, connection failure.
    error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            id: a.id,
            event_id: a.event_id,
            attempt: a.attempt,
            attempted_at: a.attempted_at,
            outcome: a.outcome,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_excerpt: a.response_excerpt,
            error: a.error,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// `next_cursor` of the previous page.
    #[param(minimum = 1)]
    cursor: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AttemptPage {
    items: Vec<AttemptView>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    next_cursor: Option<i64>,
}

/// The endpoint's delivery log, newest attempt first.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path), DeliveriesParams),
    responses((status = 200, body = AttemptPage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(params): Query<DeliveriesParams>,
) -> Result<Json<AttemptPage>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    let limit = params.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("1 to {PAGE_MAX}")));
    }
    if params.cursor.is_some_and(|c| c < 1) {
        return Err(ApiError::invalid("cursor", "at least 1"));
    }
    visible(&state, principal, id).await?;
    let mut rows = webhooks::attempts(&state.db, id, params.cursor, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|a| a.id)
    } else {
        None
    };
    Ok(Json(AttemptPage {
        items: rows.into_iter().map(AttemptView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// Events at or after this instant (RFC 3339).
    #[serde(deserialize_with = "super::instant::required")]
    #[schema(value_type = String, format = DateTime)]
    since: OffsetDateTime,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Recovered {
    /// Deliveries queued again.
    queued: u64,
}

/// Send again every event since `since` that this endpoint takes and has
/// not received: those whose delivery failed, and those written while it
/// was disabled. They go out, with their original `webhook-id`s, once the
/// endpoint is enabled.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/recover", tag = "webhook-endpoints", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    request_body = RecoverRequest,
    responses((status = 202, body = Recovered),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<RecoverRequest>,
) -> Result<(StatusCode, Json<Recovered>), ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    visible(&state, principal, id).await?;
    let queued = webhooks::recover(&state.db, id, body.since).await?;
    Ok((StatusCode::ACCEPTED, Json(Recovered { queued })))
}
