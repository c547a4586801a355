//! `/v1/verification-sessions`: the hosted verification flow. A checkout
//! creates a session, sends the shopper to its `url`, and reads the outcome
//! here with the same key; the token never travels in a URL.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, FieldError, Problem};
use super::tokens::TokenView;
use crate::domain::api_key::Role;
use crate::domain::session::Locale;
use crate::store::sessions::SessionRow;
use crate::usecases::sessions::{self, CreateError, NewRequest, Read, ReadError, Status};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
        .routes(routes!(cancel))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The community to verify, e.g. `student`. With `offer_id` alone, the
    /// shopper chooses among the offer's communities.
    community: Option<String>,
    /// Require this sub-status of the community.
    subsegment: Option<String>,
    /// An active offer: a success issues its token, which the session's
    /// reader receives.
    offer_id: Option<Uuid>,
    /// The page's language; without it, the shopper's browser decides.
    locale: Option<LocaleBody>,
    /// Where the shopper goes after the page, with `session_id` added to
    /// its query. Its origin must be one of `hosted.return_origins`.
    #[schema(example = "https://shop.example/verified")]
    return_url: String,
    /// The checkout's own reference for the shopper (kept only as a keyed hash).
    customer_ref: Option<String>,
}

/// A language of the page.
#[derive(Deserialize, Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
#[schema(as = Locale)]
pub enum LocaleBody {
    En,
    Fr,
    Ru,
}

impl From<LocaleBody> for Locale {
    fn from(locale: LocaleBody) -> Self {
        match locale {
            LocaleBody::En => Locale::En,
            LocaleBody::Fr => Locale::Fr,
            LocaleBody::Ru => Locale::Ru,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Open,
    Verified,
    NotVerified,
    Expired,
    Canceled,
}

impl From<Status> for SessionStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Open => SessionStatus::Open,
            Status::Verified => SessionStatus::Verified,
            Status::NotVerified => SessionStatus::NotVerified,
            Status::Expired => SessionStatus::Expired,
            Status::Canceled => SessionStatus::Canceled,
        }
    }
}

/// A session as its creator reads it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    id: Uuid,
    status: SessionStatus,
    /// The community asked for (null: the shopper chooses among the offer's).
    community: Option<String>,
    subsegment: Option<String>,
    offer_id: Option<Uuid>,
    /// The language asked for (null: the shopper's browser decides).
    locale: Option<String>,
    return_url: String,
    attempts: i32,
    max_attempts: i32,
    /// After the page's link stops working.
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    completed_at: Option<OffsetDateTime>,
    /// The last attempt (a verification's id).
    verification_id: Option<Uuid>,
    /// When verified: the membership, its community and sub-status, and
    /// until when it holds (null: until its record ends).
    membership_id: Option<Uuid>,
    verified_community: Option<String>,
    verified_subsegment: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    membership_expires_at: Option<OffsetDateTime>,
    /// When verified with an offer: its token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<TokenView>,
    /// When verified with an offer but no token was issued: why
    /// (`not_eligible`, `offer_exhausted`, `person_limit_reached`).
    #[serde(skip_serializing_if = "Option::is_none")]
    token_problem: Option<String>,
}

impl SessionView {
    fn new(session: SessionRow, token: Option<TokenView>) -> Self {
        SessionView {
            id: session.id,
            status: Status::of(&session).into(),
            community: session.community,
            subsegment: session.subsegment,
            offer_id: session.offer_id,
            locale: session.locale,
            return_url: session.return_url,
            attempts: session.attempts,
            max_attempts: session.max_attempts,
            expires_at: session.expires_at,
            created_at: session.created_at,
            completed_at: session.completed_at,
            verification_id: session.verification_id,
            membership_id: session.membership_id,
            verified_community: session.verified_community,
            verified_subsegment: session.verified_subsegment,
            membership_expires_at: session.membership_expires_at,
            token,
            token_problem: session.token_problem,
        }
    }
}

/// A new session, with the one place its URL is shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedSession {
    #[serde(flatten)]
    session: SessionView,
    /// The page to send the shopper to. It carries a secret: treat it as
    /// one, and send it only to the shopper.
    url: String,
}

/// Create a hosted verification session. Send the shopper to `url`; when
/// they are done the page sends them to `return_url?session_id=…`, and
/// `GET /v1/verification-sessions/{id}` says how it went.
#[utoipa::path(post, path = "/v1/verification-sessions", tag = "verification-sessions",
    security(("api_key" = ["checkout"])),
    request_body = CreateSession,
    responses(
        (status = 201, body = CreatedSession),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "Unknown community, sub-status or offer; a return URL on an origin not allowed"),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<CreateSession>,
) -> Result<(StatusCode, Json<CreatedSession>), ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let origin = state.hosted.public_origin(&headers).ok_or_else(|| {
        ApiError::Unavailable(
            "The hosted page is not set up on this server: its operator must set \
             hosted.public_url."
                .into(),
        )
    })?;
    let locale = body.locale.map(Locale::from);
    let community = match body.community.as_deref() {
        Some(key) => state.community(key).await?,
        None => None,
    };
    let offer = match body.offer_id {
        Some(id) => state.active_offer(id).await?,
        None => None,
    };
    let request = NewRequest {
        community: community.as_deref(),
        unknown_community: body.community.as_deref().filter(|_| community.is_none()),
        offer: offer.as_deref(),
        unknown_offer: body.offer_id.is_some() && offer.is_none(),
        subsegment: body.subsegment.as_deref(),
        locale,
        return_url: &body.return_url,
        customer_ref: body.customer_ref.as_deref(),
    };
    let created = sessions::create(
        &state.db,
        &state.indexer,
        &state.hosted.rules,
        principal.key_id.as_str(),
        &request,
    )
    .await?;
    let url = format!("{origin}/verify/{}", created.secret);
    Ok((
        StatusCode::CREATED,
        Json(CreatedSession {
            session: SessionView::new(created.session, None),
            url,
        }),
    ))
}

/// A session's status and, once verified, its membership and token. Only
/// the key that created it may read it (any other gets 404).
#[utoipa::path(get, path = "/v1/verification-sessions/{id}", tag = "verification-sessions",
    security(("api_key" = ["checkout"])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<([(header::HeaderName, &'static str); 1], Json<SessionView>), ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    let Read { session, token } =
        sessions::read(&state.db, &state.ring, principal.key_id.as_str(), id)
            .await?
            .ok_or_else(not_found)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SessionView::new(session, token.map(TokenView::from))),
    ))
}

/// Cancel an open session: its page stops taking attempts.
#[utoipa::path(post, path = "/v1/verification-sessions/{id}/cancel", tag = "verification-sessions",
    security(("api_key" = ["checkout"])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = SessionView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "The session is no longer open (`session_closed`)"),
    ))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<SessionView>, ApiError> {
    let principal = caller.require(&[Role::Checkout])?;
    match sessions::cancel(&state.db, principal.key_id.as_str(), id).await? {
        Some(Ok(canceled)) => Ok(Json(SessionView::new(canceled, None))),
        Some(Err(closed)) => Err(ApiError::Conflict {
            kind: "session_closed",
            detail: format!(
                "The session is {}; only an open session can be canceled.",
                Status::of(&closed).as_str()
            ),
        }),
        None => Err(not_found()),
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("No verification session of this key has this id.".into())
}

impl From<CreateError> for ApiError {
    fn from(error: CreateError) -> Self {
        match error {
            CreateError::Invalid(errors) => ApiError::Validation(
                errors
                    .into_iter()
                    .map(|e| FieldError::new(e.field, e.message))
                    .collect(),
            ),
            CreateError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Key(e) => ApiError::Internal(e.into()),
            ReadError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}
