//! `/v1/redemptions`: redeem once, reverse, and the partners' reconciliation.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, Problem};
use super::query::Query;
use crate::domain::api_key::Role;
use crate::domain::offer::Discount;
use crate::store::redemptions::{self, Claim, Redemption, RedemptionFilter, Reversed};
use crate::tokens::{self, RedeemAnswer};

const ORDER_REF_MAX: usize = 200;
const IDEMPOTENCY_KEY_MAX: usize = 200;
const PAGE_DEFAULT: i64 = 100;
const PAGE_MAX: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(redeem, list))
        .routes(routes!(reverse))
        .routes(routes!(confirm))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    token: String,
    /// The checkout's order.
    order_ref: String,
    /// The order amount in minor units, for the partner's reconciliation.
    amount: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedeemedView {
    id: Uuid,
    offer_id: Uuid,
    /// The discount to apply.
    discount: Discount,
    #[serde(with = "time::serde::rfc3339")]
    redeemed_at: OffsetDateTime,
}

fn problem(status: StatusCode, kind: &'static str, title: &'static str, detail: &str) -> ApiError {
    ApiError::domain(status, kind, title, detail)
}

/// Redeem a token once, under a required `Idempotency-Key`: a retry with the
/// same key and body gets the first answer; the same key with another body
/// is 422; a retry while the first is running is 409. Failures: 409
/// `already_redeemed`, 409 `token_revoked`, 410 `token_expired`, 401
/// `invalid_token`.
#[utoipa::path(post, path = "/v1/redemptions", tag = "redemptions", security(("api_key" = [])),
    params(("Idempotency-Key" = String, Header, description = "Unique per redemption attempt")),
    request_body = RedeemRequest,
    responses((status = 201, body = RedeemedView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn redeem(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<RedeemRequest>,
) -> Result<Response, ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_MAX)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                format!("a header of 1 to {IDEMPOTENCY_KEY_MAX} characters is required"),
            )
        })?
        .to_owned();
    let order_ref = body.order_ref.trim();
    if order_ref.is_empty() || order_ref.chars().count() > ORDER_REF_MAX {
        return Err(ApiError::invalid(
            "order_ref",
            format!("1 to {ORDER_REF_MAX} characters"),
        ));
    }
    if body.amount.is_some_and(|a| a < 0) {
        return Err(ApiError::invalid("amount", "not negative"));
    }
    let fingerprint = Sha256::digest(serde_json::to_vec(&body).unwrap_or_default());
    let api_key_id = principal.key_id.as_str();
    let request = redemptions::RedeemRequest {
        api_key_id,
        idempotency_key: &key,
        request_hash: &fingerprint,
        token_id: Uuid::nil(),
        order_ref,
        amount_minor: body.amount,
    };
    let fresh = match tokens::redeem(&state.db, &state.ring, &body.token, request).await? {
        RedeemAnswer::Fresh(fresh) => fresh,
        RedeemAnswer::Prior(Claim::Done { status, response }) => {
            return Ok(replay(status, response));
        }
        RedeemAnswer::Prior(Claim::Running) => {
            return Err(problem(
                StatusCode::CONFLICT,
                "request_in_progress",
                "A request with this Idempotency-Key is still running",
                "Retry once it has answered.",
            ));
        }
        RedeemAnswer::Prior(Claim::Mismatch) => {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used with another request",
                "Use a new key for a new redemption.",
            ));
        }
    };
    let response = match fresh {
        Ok(redeemed) => (
            StatusCode::CREATED,
            axum::Json(RedeemedView {
                id: redeemed.id,
                offer_id: redeemed.offer_id,
                discount: redeemed.discount,
                redeemed_at: redeemed.redeemed_at,
            }),
        )
            .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    };
    let status = response.status();
    if status.is_server_error() {
        redemptions::release_idempotency_key(&state.db, api_key_id, &key).await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("buffering the answer: {e}")))?;
    let stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    redemptions::finish_idempotency_key(
        &state.db,
        api_key_id,
        &key,
        status.as_u16() as i16,
        &stored,
    )
    .await?;
    Ok(Response::from_parts(parts, axum::body::Body::from(bytes)))
}

/// The first answer again, as it was given.
fn replay(status: i16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = (status, axum::Json(body)).into_response();
    if status.is_client_error() {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(super::problem::PROBLEM_JSON),
        );
    }
    response.headers_mut().insert(
        "idempotent-replayed",
        axum::http::HeaderValue::from_static("true"),
    );
    response
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedemptionView {
    id: Uuid,
    token_id: Uuid,
    offer_id: Uuid,
    partner_id: Option<Uuid>,
    order_ref: String,
    amount: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    redeemed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    reversed_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    confirmed_at: Option<OffsetDateTime>,
    partner_ref: Option<String>,
}

impl From<Redemption> for RedemptionView {
    fn from(r: Redemption) -> Self {
        RedemptionView {
            id: r.id,
            token_id: r.token_id,
            offer_id: r.offer_id,
            partner_id: r.partner_id,
            order_ref: r.order_ref,
            amount: r.amount_minor,
            redeemed_at: r.redeemed_at,
            reversed_at: r.reversed_at,
            confirmed_at: r.confirmed_at,
            partner_ref: r.partner_ref,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReversedView {
    id: Uuid,
    /// `issued` when the offer gives the token back, else `reversed`.
    token_state: String,
}

/// The order was cancelled: reverse the redemption. Its place is freed; the
/// token comes back to the consumer where the offer says so.
#[utoipa::path(post, path = "/v1/redemptions/{id}/reverse", tag = "redemptions", security(("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ReversedView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<ReversedView>, ApiError> {
    caller.require(&[Role::Checkout, Role::Admin])?;
    let mut conn = state.db.acquire().await?;
    match redemptions::reverse(&mut conn, id).await? {
        Reversed::Yes { token_state } => Ok(Json(ReversedView { id, token_state })),
        Reversed::NotFound => Err(ApiError::NotFound(format!("No redemption {id}."))),
        Reversed::Already => Err(problem(
            StatusCode::CONFLICT,
            "already_reversed",
            "The redemption was already reversed",
            "A redemption is reversed once.",
        )),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only redemptions not yet confirmed (nor reversed).
    #[serde(default)]
    unconfirmed: bool,
    /// Only redemptions at or after this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>)]
    since: Option<OffsetDateTime>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedemptionPage {
    items: Vec<RedemptionView>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<Uuid>,
}

/// Redemptions, oldest first: a partner sees its own offers' only; admins
/// see all.
#[utoipa::path(get, path = "/v1/redemptions", tag = "redemptions", security(("api_key" = [])),
    params(ListParams),
    responses((status = 200, body = RedemptionPage)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<RedemptionPage>, ApiError> {
    let principal = caller.require(&[Role::Partner, Role::Admin])?;
    let limit = params.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("1 to {PAGE_MAX}")));
    }
    let partner_id = match principal.role {
        Role::Partner => Some(principal.partner_id.unwrap_or(Uuid::nil())),
        _ => None,
    };
    let mut rows = redemptions::list(
        &state.db,
        &RedemptionFilter {
            partner_id,
            unconfirmed: params.unconfirmed,
            since: params.since,
            after: params.cursor,
            limit: limit + 1,
        },
    )
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(RedemptionPage {
        items: rows.into_iter().map(RedemptionView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The partner's own reference (booking number, ...).
    partner_ref: Option<String>,
}

/// A partner confirms a redemption of its own offer (another partner's is
/// 404); confirming again keeps the first confirmation.
#[utoipa::path(post, path = "/v1/redemptions/{id}/confirm", tag = "redemptions", security(("api_key" = [])),
    params(("id" = Uuid, Path)),
    request_body = ConfirmRequest,
    responses((status = 200, body = RedemptionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn confirm(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Json(body): Json<ConfirmRequest>,
) -> Result<Json<RedemptionView>, ApiError> {
    let principal = caller.require(&[Role::Partner, Role::Admin])?;
    let partner = match principal.role {
        Role::Partner => Some(principal.partner_id.unwrap_or(Uuid::nil())),
        _ => None,
    };
    if body
        .partner_ref
        .as_ref()
        .is_some_and(|r| r.chars().count() > ORDER_REF_MAX)
    {
        return Err(ApiError::invalid(
            "partner_ref",
            format!("at most {ORDER_REF_MAX} characters"),
        ));
    }
    if let Some(done) =
        redemptions::confirm(&state.db, id, partner, body.partner_ref.as_deref()).await?
    {
        return Ok(Json(done.into()));
    }
    match redemptions::get(&state.db, id).await? {
        Some(r) if partner.is_none() || r.partner_id == partner => Err(problem(
            StatusCode::CONFLICT,
            "redemption_reversed",
            "The redemption was reversed",
            "A reversed redemption cannot be confirmed.",
        )),
        _ => Err(ApiError::NotFound(format!("No redemption {id}."))),
    }
}
