//! `POST /v1/people/erase`: forget a person.

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Caller;
use super::json::Json;
use super::person::PersonBody;
use super::problem::{ApiError, Problem};
use crate::domain::api_key::Role;
use crate::usecases::erase::{self, Erasure};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erase_person))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    person: PersonBody,
}

/// Forget a person named by identity fields: their memberships are deleted
/// and their attempts no longer point at them (counts stay right). Records
/// belong to their data source and change only by import.
#[utoipa::path(post, path = "/v1/people/erase", tag = "people",
    security(("api_key" = ["admin"])),
    request_body = EraseRequest,
    responses((status = 200, body = ErasureView),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn erase_person(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<EraseRequest>,
) -> Result<Json<ErasureView>, ApiError> {
    caller.require(&[Role::Admin])?;
    let erased = erase::erase(&state.db, &state.indexer, &body.person.into()).await?;
    tracing::info!(
        memberships = erased.memberships_removed,
        attempts = erased.attempts_unlinked,
        "person erased"
    );
    Ok(Json(ErasureView::from(erased)))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErasureView {
    memberships_removed: i64,
    attempts_unlinked: i64,
    tokens_unlinked: i64,
}

impl From<Erasure> for ErasureView {
    fn from(e: Erasure) -> Self {
        ErasureView {
            memberships_removed: e.memberships_removed,
            attempts_unlinked: e.attempts_unlinked,
            tokens_unlinked: e.tokens_unlinked,
        }
    }
}
