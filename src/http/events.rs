//! `/v1/events`: the outbox, for callers who would rather poll than receive
//! webhooks, and manual redelivery of an event.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
use crate::store::events::{self, Event, EventFilter, Position};
use crate::store::webhooks;
use crate::usecases::events::TYPES;

const PAGE_DEFAULT: i64 = 100;
const PAGE_MAX: i64 = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(redeliver))
}

/// An event, as listed and as delivered to webhook endpoints (the body of
/// a delivery is this object).
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView {
    /// The event's id; deliveries carry it as `webhook-id`.
    id: Uuid,
    #[serde(rename = "type")]
    #[schema(example = "token.redeemed")]
    kind: String,
    /// When the change happened.
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    /// Ids, community, offer, amounts and times: never a person's data.
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        EventView {
            id: e.id,
            kind: e.kind,
            timestamp: e.occurred_at,
            data: e.data,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<String>, pattern = r"^(verification\.succeeded|verification\.failed|membership\.expiring|token\.issued|token\.redeemed|redemption\.reversed|redemption\.confirmed|offer\.exhausted)$")]
    kind: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    #[serde(default, deserialize_with = "super::instant::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<OffsetDateTime>,
    /// Only events before this instant (RFC 3339).
    #[serde(default, deserialize_with = "super::instant::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<OffsetDateTime>,
    /// `next_cursor` of the previous page (opaque).
    #[param(max_length = 100)]
    cursor: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    items: Vec<EventView>,
    /// Where this page ended: pass it as `cursor` to read on, now or later
    /// (polling). Null only when no page has yielded an event yet.
    next_cursor: Option<String>,
    /// Whether more events were waiting past this page.
    has_more: bool,
}

fn encode_cursor(p: Position) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}.{}", p.tx, p.seq))
}

fn decode_cursor(raw: &str) -> Option<Position> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (tx, seq) = text.split_once('.')?;
    let (tx, seq) = (tx.parse().ok()?, seq.parse().ok()?);
    (tx >= 0 && seq >= 0).then_some(Position { tx, seq })
}

/// A partner's own events only: those of its offers.
fn partner_scope(principal: &Principal) -> Option<Uuid> {
    match principal.role {
        Role::Partner => Some(principal.partner_id.unwrap_or(Uuid::nil())),
        _ => None,
    }
}

/// Events, oldest first, in the order they committed: a cursor never skips
/// an event that commits later (the newest events appear once every
/// transaction begun before them has ended). Admins see every event; a
/// partner the events of its own offers. Checkout keys are refused (403):
/// they learn their outcomes from their own answers.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("api_key" = ["admin", "partner"])),
    params(ListParams),
    responses((status = 200, body = EventPage),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    let limit = params.limit.unwrap_or(PAGE_DEFAULT);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("1 to {PAGE_MAX}")));
    }
    if let Some(kind) = &params.kind
        && !TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::invalid(
            "type",
            format!("one of {}", TYPES.join(", ")),
        ));
    }
    let after = match &params.cursor {
        Some(raw) => Some(
            decode_cursor(raw)
                .ok_or_else(|| ApiError::invalid("cursor", "not a cursor offergate gave"))?,
        ),
        None => None,
    };
    let mut rows = events::list(
        &state.db,
        &EventFilter {
            partner_id: partner_scope(principal),
            kind: params.kind.as_deref(),
            since: params.since,
            until: params.until,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows
        .last()
        .map(|e| Position {
            tx: e.tx,
            seq: e.seq,
        })
        .or(after)
        .map(encode_cursor);
    Ok(Json(EventPage {
        items: rows.into_iter().map(EventView::from).collect(),
        next_cursor,
        has_more,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Requeued {
    /// Deliveries queued (one per endpoint that takes the event).
    queued: u64,
}

/// Deliver an event again, now, to every enabled endpoint that takes it (a
/// partner: to its own endpoints, for its own offers' events), with a new
/// round of retries and the same `webhook-id`. A delivery already under way
/// is left to finish. An event this key may not see is 404.
#[utoipa::path(post, path = "/v1/events/{id}/redeliver", tag = "events", security(("api_key" = ["admin", "partner"])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = Requeued),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<Requeued>), ApiError> {
    let principal = caller.require(&[Role::Admin, Role::Partner])?;
    let partner = partner_scope(principal);
    match events::get(&state.db, id).await? {
        Some(event) if partner.is_none() || event.partner_id == partner => {}
        _ => return Err(ApiError::NotFound(format!("No event {id}."))),
    }
    let queued = webhooks::redeliver(&state.db, id, partner).await?;
    Ok((StatusCode::ACCEPTED, Json(Requeued { queued })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_strangers_do_not() {
        let p = Position { tx: 734, seq: 12 };
        assert_eq!(decode_cursor(&encode_cursor(p)), Some(p));
        for bad in ["", "x", "MTI", "LTEuMg", "%%%"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
