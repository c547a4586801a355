//! `/v1/partners`: the partners who honour offers (admin).

use axum::extract::State;
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
use crate::domain::api_key::Role;
use crate::store::partners::{self, Partner};

const NAME_MAX: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PartnerView {
    id: Uuid,
    name: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Partner> for PartnerView {
    fn from(p: Partner) -> Self {
        PartnerView {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePartner {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    /// e.g. "Skyways Airline".
    name: String,
}

/// List partners.
#[utoipa::path(get, path = "/v1/partners", tag = "partners", security(("api_key" = ["admin"])),
    responses((status = 200, body = Vec<PartnerView>)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<PartnerView>>, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(
        partners::list(&state.db)
            .await?
            .into_iter()
            .map(PartnerView::from)
            .collect(),
    ))
}

/// Create a partner; then give it a key with `role: partner` and its id.
#[utoipa::path(post, path = "/v1/partners", tag = "partners", security(("api_key" = ["admin"])),
    request_body = CreatePartner,
    responses((status = 201, body = PartnerView),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreatePartner>,
) -> Result<(StatusCode, Json<PartnerView>), ApiError> {
    caller.require(&[Role::Admin])?;
    let name = body.name.trim();
    if name.is_empty() || body.name.chars().count() > NAME_MAX {
        return Err(ApiError::invalid(
            "name",
            format!("1 to {NAME_MAX} characters"),
        ));
    }
    let partner = partners::insert(&state.db, name).await?;
    Ok((StatusCode::CREATED, Json(partner.into())))
}
