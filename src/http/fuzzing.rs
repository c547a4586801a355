//! Two real request bodies behind the real middleware, with no database:
//! the fuzz targets (`fuzz/`) drive the JSON extractor and the problem
//! mapping through these routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

use super::json::Json;
use super::offers::{OfferBody, faults_of, offer_of};
use super::problem::ApiError;
use super::verifications::VerificationRequest;
use crate::config::ServerSettings;
use crate::domain::community::Community;
use crate::usecases::verify::{self, VerifyError};

type Known = Arc<HashMap<String, Community>>;

/// `POST /v1/offers` and `POST /v1/verifications` as their handlers read
/// and check the body, against `communities` instead of the database, and
/// wrapped in [`super::with_layers`]. A body that passes is answered 201
/// or 200 with no content.
pub fn json_routes(communities: HashMap<String, Community>, server: &ServerSettings) -> Router {
    let router = Router::new()
        .route("/v1/offers", post(create_offer))
        .route("/v1/verifications", post(verify))
        .with_state(Arc::new(communities));
    super::with_layers(router, server)
}

async fn create_offer(
    State(known): State<Known>,
    Json(body): Json<OfferBody>,
) -> Result<StatusCode, ApiError> {
    let offer = offer_of(uuid::Uuid::nil(), body);
    let errors = faults_of(&offer, &known);
    if errors.is_empty() {
        Ok(StatusCode::CREATED)
    } else {
        Err(ApiError::Validation(errors))
    }
}

async fn verify(
    State(known): State<Known>,
    Json(body): Json<VerificationRequest>,
) -> Result<StatusCode, ApiError> {
    let community = known.get(body.community()).ok_or_else(|| {
        ApiError::invalid(
            "community",
            format!("no community has the key `{}`", body.community()),
        )
    })?;
    verify::check(community, &body.request(None)).map_err(VerifyError::Invalid)?;
    Ok(StatusCode::OK)
}
