//! The HTTP edge: routing, extractors, DTOs and the problem+json mapping.

mod api_keys;
pub mod auth;
mod docs;
pub mod json;
mod layers;
pub mod metrics;
mod ops;
pub mod problem;

use std::ops::Deref;
use std::sync::Arc;

use axum::{Extension, Router};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::KeyVerifier;
use crate::config::Settings;

pub use layers::with_layers;

/// What handlers share: one per process, behind an `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub db: PgPool,
    pub keys: KeyVerifier,
}

impl AppState {
    pub fn new(db: PgPool, settings: &Settings) -> Self {
        let keys = KeyVerifier::new(db.clone(), &settings.auth);
        AppState(Arc::new(App { db, keys }))
    }
}

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "offergate",
        description = "Identity-gated offers: verify that a consumer belongs to a community \
                       against private records, then issue a signed single-use token that \
                       unlocks the offer at checkout.\n\nErrors are `application/problem+json` \
                       (RFC 9457) with a stable `type`. Authenticate with \
                       `Authorization: Bearer <key>`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Health, readiness, metrics and this document"),
        (name = "api-keys", description = "API keys and their roles (admin)"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ogk_…")
                    .description(Some(
                        "An offergate API key; its role (admin, checkout, partner) decides \
                         what it may do.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The routes and their OpenAPI document, gathered from the handlers.
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::router())
        .merge(docs::router())
        .merge(api_keys::router())
        .split_for_parts()
}

/// The OpenAPI document as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

/// The whole application: routes, documentation and middleware.
pub fn app(state: AppState, settings: &Settings) -> Router {
    // Install the recorder before the first request is counted.
    metrics::handle();
    let (router, openapi) = routes();
    let docs = Arc::new(docs::Docs::new(&openapi));
    let router = router.layer(Extension(docs)).with_state(state);
    with_layers(router, &settings.server)
}
