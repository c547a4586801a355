//! `/v1/communities`: every role may read them (checkouts build their forms
//! from `required_fields`); admins create, change and delete them.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::problem::{ApiError, FieldError, Problem};
use crate::domain::Invalid;
use crate::domain::api_key::Role;
use crate::domain::community::Community;
use crate::domain::identity::IdentityField;
use crate::store::communities::{self, Deleted};

const ANY_ROLE: &[Role] = &[Role::Admin, Role::Checkout, Role::Partner];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, change, remove))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CommunityView {
    key: String,
    display_name: String,
    subsegments: Vec<String>,
    /// Identity fields a verification must carry.
    required_fields: Vec<FieldBody>,
    /// Days a success lasts before re-verification; null: until the record ends.
    reverify_after_days: Option<i32>,
    /// Per sub-status overrides of `reverify_after_days` (null: until the record ends).
    subsegment_reverify: HashMap<String, Option<i32>>,
    /// Age gate on the birth date given at verification.
    min_age: Option<i32>,
    builtin: bool,
}

impl From<&Community> for CommunityView {
    fn from(c: &Community) -> Self {
        CommunityView {
            key: c.key.clone(),
            display_name: c.display_name.clone(),
            subsegments: c.subsegments.clone(),
            required_fields: c
                .required_fields
                .iter()
                .copied()
                .map(FieldBody::from)
                .collect(),
            reverify_after_days: c.reverify_after_days,
            subsegment_reverify: c.subsegment_reverify.clone(),
            min_age: c.min_age,
            builtin: c.builtin,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCommunity {
    /// e.g. `ski_instructor`.
    #[schema(value_type = CommunityKey)]
    key: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    display_name: String,
    #[serde(default)]
    #[schema(schema_with = subsegments_schema)]
    subsegments: Vec<String>,
    required_fields: Vec<FieldBody>,
    #[schema(minimum = 1, maximum = 36500)]
    reverify_after_days: Option<i32>,
    #[serde(default)]
    subsegment_reverify: HashMap<String, Option<i32>>,
    #[schema(minimum = 1, maximum = 130)]
    min_age: Option<i32>,
}

/// Absent: unchanged; `null`: cleared.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCommunity {
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    display_name: Option<String>,
    #[schema(schema_with = subsegments_or_null)]
    subsegments: Option<Vec<String>>,
    required_fields: Option<Vec<FieldBody>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 36500)]
    reverify_after_days: Option<Option<i32>>,
    subsegment_reverify: Option<HashMap<String, Option<i32>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i32>, minimum = 1, maximum = 130)]
    min_age: Option<Option<i32>>,
}

fn invalid(errors: Vec<Invalid>) -> ApiError {
    ApiError::Validation(
        errors
            .into_iter()
            .map(|e| FieldError::new(e.field, e.message))
            .collect(),
    )
}

fn not_found(key: &str) -> ApiError {
    ApiError::NotFound(format!("No community has the key `{key}`."))
}

/// List communities, built-in ones first.
#[utoipa::path(get, path = "/v1/communities", tag = "communities",
    security(("api_key" = ["admin", "checkout", "partner"])),
    responses((status = 200, body = Vec<CommunityView>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<CommunityView>>, ApiError> {
    caller.require(ANY_ROLE)?;
    let all = state.catalog.communities().await?;
    Ok(Json(all.iter().map(CommunityView::from).collect()))
}

/// One community.
#[utoipa::path(get, path = "/v1/communities/{key}", tag = "communities",
    security(("api_key" = ["admin", "checkout", "partner"])),
    params(("key" = String, Path)),
    responses((status = 200, body = CommunityView),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<CommunityView>, ApiError> {
    caller.require(ANY_ROLE)?;
    let community = communities::get(&state.db, &key)
        .await?
        .ok_or_else(|| not_found(&key))?;
    Ok(Json(CommunityView::from(&community)))
}

/// Create a custom community.
#[utoipa::path(post, path = "/v1/communities", tag = "communities",
    security(("api_key" = ["admin"])),
    request_body = CreateCommunity,
    responses((status = 201, body = CommunityView),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateCommunity>,
) -> Result<(StatusCode, Json<CommunityView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let community = Community {
        key: body.key,
        display_name: body.display_name.trim().to_owned(),
        subsegments: body.subsegments,
        required_fields: body
            .required_fields
            .into_iter()
            .map(IdentityField::from)
            .collect(),
        reverify_after_days: body.reverify_after_days,
        subsegment_reverify: body.subsegment_reverify,
        min_age: body.min_age,
        builtin: false,
    };
    let errors = community.validate();
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let created = communities::insert(&state.db, &community)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            kind: "community_exists",
            detail: format!("A community with the key `{}` exists.", community.key),
        })?;
    state.forget_community(&created.key).await;
    Ok((StatusCode::CREATED, Json(CommunityView::from(&created))))
}

/// Change a community; absent fields stay as they are.
#[utoipa::path(patch, path = "/v1/communities/{key}", tag = "communities",
    security(("api_key" = ["admin"])),
    params(("key" = String, Path)),
    request_body = ChangeCommunity,
    responses((status = 200, body = CommunityView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Json(body): Json<ChangeCommunity>,
) -> Result<Json<CommunityView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut community = communities::get(&state.db, &key)
        .await?
        .ok_or_else(|| not_found(&key))?;
    if let Some(name) = body.display_name {
        community.display_name = name.trim().to_owned();
    }
    if let Some(subsegments) = body.subsegments {
        community.subsegments = subsegments;
    }
    if let Some(fields) = body.required_fields {
        community.required_fields = fields.into_iter().map(IdentityField::from).collect();
    }
    if let Some(days) = body.reverify_after_days {
        community.reverify_after_days = days;
    }
    if let Some(overrides) = body.subsegment_reverify {
        community.subsegment_reverify = overrides;
    }
    if let Some(age) = body.min_age {
        community.min_age = age;
    }
    let errors = community.validate();
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let changed = communities::update(&state.db, &community)
        .await?
        .ok_or_else(|| not_found(&key))?;
    state.forget_community(&key).await;
    Ok(Json(CommunityView::from(&changed)))
}

/// Delete a community no record or membership uses.
#[utoipa::path(delete, path = "/v1/communities/{key}", tag = "communities",
    security(("api_key" = ["admin"])),
    params(("key" = String, Path)),
    responses((status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Admin])?;
    match communities::delete(&state.db, &key).await? {
        Deleted::Yes => {
            state.forget_community(&key).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Deleted::NotFound => Err(not_found(&key)),
        Deleted::InUse => Err(ApiError::Conflict {
            kind: "community_in_use",
            detail: format!("Records or memberships use `{key}`; it cannot be deleted."),
        }),
    }
}

/// An identity field's name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = IdentityField)]
pub enum FieldBody {
    Email,
    GivenName,
    FamilyName,
    BirthDate,
    Organization,
    LicenseNumber,
}

impl From<IdentityField> for FieldBody {
    fn from(field: IdentityField) -> Self {
        match field {
            IdentityField::Email => FieldBody::Email,
            IdentityField::GivenName => FieldBody::GivenName,
            IdentityField::FamilyName => FieldBody::FamilyName,
            IdentityField::BirthDate => FieldBody::BirthDate,
            IdentityField::Organization => FieldBody::Organization,
            IdentityField::LicenseNumber => FieldBody::LicenseNumber,
        }
    }
}

impl From<FieldBody> for IdentityField {
    fn from(field: FieldBody) -> Self {
        match field {
            FieldBody::Email => IdentityField::Email,
            FieldBody::GivenName => IdentityField::GivenName,
            FieldBody::FamilyName => IdentityField::FamilyName,
            FieldBody::BirthDate => IdentityField::BirthDate,
            FieldBody::Organization => IdentityField::Organization,
            FieldBody::LicenseNumber => IdentityField::LicenseNumber,
        }
    }
}

/// A community or sub-status key, as `CommunityKey::parse` accepts it.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9_]{1,62}$", example = "ski_instructor")]
pub struct CommunityKey(#[allow(dead_code)] String);

fn subsegments_schema() -> utoipa::openapi::schema::Schema {
    schema_from(subsegments_value())
}

fn subsegments_value() -> serde_json::Value {
    serde_json::json!({
        "type": "array",
        "items": { "$ref": "#/components/schemas/CommunityKey" },
        "uniqueItems": true,
    })
}

fn subsegments_or_null() -> utoipa::openapi::schema::Schema {
    or_null(subsegments_value())
}

/// Absent or `null`: unchanged.
fn or_null(value: serde_json::Value) -> utoipa::openapi::schema::Schema {
    schema_from(serde_json::json!({ "oneOf": [ { "type": "null" }, value ] }))
}

fn schema_from(value: serde_json::Value) -> utoipa::openapi::schema::Schema {
    serde_json::from_value(value).unwrap_or_default()
}
