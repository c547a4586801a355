//! `/v1/redemptions`: redeem once, reverse, and the partners' reconciliation.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
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
use super::offer_terms::DiscountBody;
use super::problem::{ApiError, Problem, problem_response};
use super::query::Query;
use crate::auth::Principal;
use crate::domain::api_key::Role;
use crate::store::redemptions::{self, Redemption, RedemptionFilter};
use crate::usecases::confirm::{self, Confirmed};
use crate::usecases::idempotency::Keyed;
use crate::usecases::redeem;
use crate::usecases::reverse::{self, Reason, Reversed, Reverser};

const ORDER_REF_MAX: usize = 200;
const PAGE_DEFAULT: i64 = 100;
const PAGE_MAX: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(redeem, list))
        .routes(routes!(show))
        .routes(routes!(reverse))
        .routes(routes!(confirm))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    #[schema(min_length = 1)]
    token: String,
    /// The checkout's order.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    order_ref: String,
    /// The order amount in minor units, for the partner's reconciliation.
    #[schema(minimum = 0)]
    amount: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RedeemedView {
    id: Uuid,
    offer_id: Uuid,
    /// The discount to apply.
    discount: DiscountBody,
    #[serde(with = "time::serde::rfc3339")]
    redeemed_at: OffsetDateTime,
}

/// Redeem a token once, under a required `Idempotency-Key`: a retry with the
/// same key and body gets the first answer (with `idempotent-replayed:
/// true`), whichever process it reaches and whatever happened to the first;
/// the same key with another body is 422. Failures: 409 `already_redeemed`,
/// 409 `token_revoked`, 410 `token_expired`, 401 `invalid_token`.
#[utoipa::path(post, path = "/v1/redemptions", tag = "redemptions", security(("api_key" = ["checkout"])),
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
    let key = idempotency::required_key(&headers)?;
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
    let keyed = Keyed::new(&state.indexer, key, &body);
    let answer = redeem::redeem(
        &state.db,
        &state.ring,
        &redeem::RedeemRequest {
            api_key_id: principal.key_id.as_str(),
            idempotency: &keyed,
            token: &body.token,
            order_ref,
            amount_minor: body.amount,
        },
    )
    .await?;
    let response = match answer.value {
        Ok(redeemed) => (
            StatusCode::CREATED,
            axum::Json(RedeemedView {
                id: redeemed.id,
                offer_id: redeemed.offer_id,
                discount: redeemed.discount.into(),
                redeemed_at: redeemed.redeemed_at,
            }),
        )
            .into_response(),
        Err(refusal) => ApiError::from(refusal).into_response(),
    };
    Ok(idempotency::mark(response, answer.replayed))
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
    /// Who reversed it: `checkout` (the key that redeemed) or `admin`.
    reversed_by: Option<String>,
    /// Why, as the reverser gave it (an admin reversing a confirmed
    /// redemption always gives one).
    reversal_reason: Option<String>,
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
            reversed_by: r.reversed_by_role,
            reversal_reason: r.reversal_reason,
            confirmed_at: r.confirmed_at,
            partner_ref: r.partner_ref,
        }
    }
}

/// Whether `principal` may see a redemption: an admin every one, a partner
/// its own offers', a checkout those its key redeemed. Every other is as
/// good as missing (404).
fn may_see(principal: &Principal, r: &Redemption) -> bool {
    match principal.role {
        Role::Admin => true,
        Role::Partner => r.partner_id.is_some() && r.partner_id == principal.partner_id,
        Role::Checkout => r.api_key_id.as_deref() == Some(principal.key_id.as_str()),
    }
}

/// One redemption: an admin sees any, a partner its own offers', a checkout
/// those its key redeemed; any other is 404. A reversal shows when, by whom
/// (`checkout` or `admin`) and why.
#[utoipa::path(get, path = "/v1/redemptions/{id}", tag = "redemptions", security(("api_key" = ["admin", "partner", "checkout"])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = RedemptionView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<RedemptionView>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner, Role::Checkout])?;
    match redemptions::get(&state.db, id).await? {
        Some(r) if may_see(principal, &r) => Ok(Json(r.into())),
        _ => Err(ApiError::NotFound(format!("No redemption {id}."))),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReversedView {
    id: Uuid,
    /// `issued` when the offer gives the token back, else `reversed`.
    token_state: String,
    #[serde(with = "time::serde::rfc3339")]
    reversed_at: OffsetDateTime,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReverseRequest {
    /// Why (1 to 500 characters), shown to the partner. Required of an
    /// admin reversing a confirmed redemption.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    reason: Option<String>,
}

/// A 409 that names the instant of the state the redemption is in.
fn state_conflict(
    kind: &'static str,
    title: &'static str,
    detail: String,
    member: &str,
    at: OffsetDateTime,
) -> Response {
    let mut extensions = serde_json::Map::new();
    if let Ok(at) = at.format(&time::format_description::well_known::Rfc3339) {
        extensions.insert(member.to_owned(), at.into());
    }
    problem_response(Problem {
        kind,
        title,
        status: StatusCode::CONFLICT.as_u16(),
        detail,
        errors: Vec::new(),
        extensions,
    })
}

/// The body of a reversal, which may be absent: a checkout cancelling an
/// order usually sends none.
async fn optional_body(headers: &HeaderMap, body: Bytes) -> Result<ReverseRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ReverseRequest { reason: None });
    }
    let mut request = axum::http::Request::new(axum::body::Body::from(body));
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    // `null` says "no body" as the document's nullable body allows.
    let Json(parsed) = Json::<Option<ReverseRequest>>::from_request(request, &()).await?;
    Ok(parsed.unwrap_or(ReverseRequest { reason: None }))
}

/// The order was cancelled: reverse the redemption. Its place is freed; the
/// token comes back to the consumer where the offer says so. Only the key
/// that redeemed, or an admin, may reverse (another key gets 404). Once the
/// partner has confirmed, a checkout gets 409 `already_confirmed`; an admin
/// may still reverse, giving a `reason` (422 without one), which the
/// partner sees. A second reversal is 409 `already_reversed`. The 409s name
/// the instant (`confirmed_at`, `reversed_at`).
#[utoipa::path(post, path = "/v1/redemptions/{id}/reverse", tag = "redemptions", security(("api_key" = ["checkout", "admin"])),
    params(("id" = Uuid, Path)),
    request_body(content = Option<ReverseRequest>, description = "Optional; `reason` is required of an admin reversing a confirmed redemption"),
    responses((status = 200, body = ReversedView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let principal = caller.require(&[Role::Checkout, Role::Admin])?;
    let body = optional_body(&headers, body).await?;
    let reason = body
        .reason
        .as_deref()
        .map(Reason::parse)
        .transpose()
        .map_err(|bad| ApiError::invalid("reason", bad.to_string()))?;
    let by = Reverser {
        api_key_id: principal.key_id.as_str(),
        admin: principal.role == Role::Admin,
    };
    Ok(
        match reverse::reverse(&state.db, id, &by, reason.as_ref()).await? {
            Reversed::Yes {
                token_state,
                reversed_at,
            } => Json(ReversedView {
                id,
                token_state,
                reversed_at,
            })
            .into_response(),
            Reversed::NotFound => {
                ApiError::NotFound(format!("No redemption {id}.")).into_response()
            }
            Reversed::Already { reversed_at } => state_conflict(
                "already_reversed",
                "The redemption was already reversed",
                "A redemption is reversed once.".into(),
                "reversed_at",
                reversed_at,
            ),
            Reversed::Confirmed { confirmed_at } => state_conflict(
                "already_confirmed",
                "The partner has confirmed the redemption",
                "A confirmed redemption can be reversed only by an admin, with a reason.".into(),
                "confirmed_at",
                confirmed_at,
            ),
            Reversed::ReasonRequired { .. } => ApiError::invalid(
                "reason",
                "required to reverse a redemption its partner has confirmed",
            )
            .into_response(),
        },
    )
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only redemptions not yet confirmed (nor reversed).
    #[serde(default)]
    unconfirmed: bool,
    /// Only redemptions at or after this instant (RFC 3339).
    #[serde(default, deserialize_with = "super::instant::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<OffsetDateTime>,
    /// `next_cursor` of the previous page.
    cursor: Option<Uuid>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
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
#[utoipa::path(get, path = "/v1/redemptions", tag = "redemptions", security(("api_key" = ["partner", "admin"])),
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
    #[schema(max_length = 200)]
    partner_ref: Option<String>,
}

/// A partner confirms a redemption of its own offer (another partner's is
/// 404); confirming again keeps the first confirmation. A reversed
/// redemption is 409 `redemption_reversed`, naming `reversed_at`.
#[utoipa::path(post, path = "/v1/redemptions/{id}/confirm", tag = "redemptions", security(("api_key" = ["partner", "admin"])),
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
) -> Result<Response, ApiError> {
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
    match confirm::confirm(&state.db, id, partner, body.partner_ref.as_deref()).await? {
        Confirmed::Yes(done) => Ok(Json(RedemptionView::from(*done)).into_response()),
        Confirmed::Reversed(reversed_at) => Ok(state_conflict(
            "redemption_reversed",
            "The redemption was reversed",
            "A reversed redemption cannot be confirmed.".into(),
            "reversed_at",
            reversed_at,
        )),
        Confirmed::NotFound => Err(ApiError::NotFound(format!("No redemption {id}."))),
    }
}
