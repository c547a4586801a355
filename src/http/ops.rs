//! Health, readiness and metrics: what an operator and a load balancer ask.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::metrics;
use super::problem::{ApiError, Problem};

/// How long readiness waits for the database before calling it unreachable.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(prometheus_metrics))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok` or `ready`.
    status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Status)))]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The process can reach its database. 503 while it cannot; recovers by
/// itself when the database returns.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, body = Status),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    ))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let probe = crate::store::health::ping(&state.db);
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(Json(Status { status: "ready" })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: database unreachable");
            Err(ApiError::Unavailable("The database is unreachable.".into()))
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer in time");
            Err(ApiError::Unavailable(
                "The database did not answer in time.".into(),
            ))
        }
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4")))]
async fn prometheus_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let size = state.db.size();
    let idle = u32::try_from(state.db.num_idle()).unwrap_or(u32::MAX);
    ::metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
    ::metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    ::metrics::gauge!("db_pool_max_connections")
        .set(f64::from(state.db.options().get_max_connections()));
    let handle = metrics::handle();
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
