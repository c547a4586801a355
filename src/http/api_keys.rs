//! `/v1/api-keys`: admins create, list and revoke keys.

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
use crate::auth::create_key_with_origins;
use crate::domain::api_key::{KeyId, Role};
use crate::store::api_keys::{self, KeyRecord};

const NAME_MAX_CHARS: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create))
        .routes(routes!(revoke))
}

/// An API key as listed (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// The 12 characters after `ogk_` in the key itself.
    id: String,
    name: String,
    role: RoleBody,
    partner_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    /// A checkout key's own origins its verification sessions may return
    /// to, beside `hosted.return_origins`.
    return_origins: Vec<String>,
}

impl From<KeyRecord> for KeyView {
    fn from(record: KeyRecord) -> Self {
        KeyView {
            id: record.id.to_string(),
            name: record.name,
            role: record.role.into(),
            partner_id: record.partner_id,
            created_at: record.created_at,
            revoked_at: record.revoked_at,
            return_origins: record.return_origins,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    role: RoleBody,
    /// Required for, and only for, partner keys.
    partner_id: Option<Uuid>,
    /// A label for people, e.g. "web checkout".
    #[serde(default)]
    #[schema(max_length = 200)]
    name: String,
    /// For a checkout key: origins (`https://shop.example`) its
    /// verification sessions may return to, beside the settings' own.
    #[serde(default)]
    #[schema(max_items = 20, example = json!(["https://shop.example"]))]
    return_origins: Vec<String>,
}

/// A new key: `key` is shown this once and cannot be recovered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    key: String,
    #[serde(flatten)]
    record: KeyView,
}

/// List every API key, revoked ones included.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    security(("api_key" = ["admin"])),
    responses(
        (status = 200, body = Vec<KeyView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<KeyView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    let keys = api_keys::list(&state.db).await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

/// Create a key. The response holds the key itself, shown only this once.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys",
    security(("api_key" = ["admin"])),
    request_body = CreateKey,
    responses(
        (status = 201, body = CreatedKey),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    caller.require(&[Role::Admin])?;
    let name = body.name.trim();
    if name.chars().count() > NAME_MAX_CHARS {
        return Err(ApiError::invalid(
            "name",
            format!("at most {NAME_MAX_CHARS} characters"),
        ));
    }
    let (key, record) = create_key_with_origins(
        &state.db,
        body.role.into(),
        body.partner_id,
        name,
        &body.return_origins,
    )
    .await?;
    state.keys.remember_new(&record.id).await;
    tracing::info!(key_id = %record.id, role = %record.role, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.expose().to_owned(),
            record: record.into(),
        }),
    ))
}

/// Revoke a key. Every process refuses it within the revocation delay
/// (`auth.revocation_delay_secs`, 5 s by default). Revoking twice is harmless.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    security(("api_key" = ["admin"])),
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, body = KeyView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let not_found = || ApiError::NotFound(format!("No API key has the id `{id}`."));
    let key_id = KeyId::parse(&id).map_err(|_| not_found())?;
    let record = api_keys::revoke(&state.db, &key_id)
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(key_id = %record.id, "API key revoked");
    Ok(Json(record.into()))
}

/// What a key may do, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Role)]
pub enum RoleBody {
    /// Marketers and back office: everything.
    Admin,
    /// E-commerce checkouts: verify consumers, issue and redeem tokens.
    Checkout,
    /// A partner honouring offers: sees and confirms its own redemptions.
    Partner,
}

impl From<Role> for RoleBody {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => RoleBody::Admin,
            Role::Checkout => RoleBody::Checkout,
            Role::Partner => RoleBody::Partner,
        }
    }
}

impl From<RoleBody> for Role {
    fn from(role: RoleBody) -> Self {
        match role {
            RoleBody::Admin => Role::Admin,
            RoleBody::Checkout => Role::Checkout,
            RoleBody::Partner => Role::Partner,
        }
    }
}
