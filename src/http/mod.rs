//! The HTTP edge: routing, extractors, DTOs and the problem+json mapping.

mod api_keys;
pub mod auth;
mod client_address;
mod communities;
mod docs;
mod events;
pub(crate) mod fuzzing;
mod idempotency;
mod instant;
pub mod json;
mod layers;
pub mod metrics;
mod offer_terms;
mod offers;
mod openapi;
mod ops;
pub mod page;
mod partners;
mod people;
mod person;
pub mod problem;
mod query;
mod records;
mod redemptions;
mod sessions;
mod tokens;
mod verifications;
mod webhooks;

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use moka::future::Cache;
use secrecy::ExposeSecret;

use axum::{Extension, Router};
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::KeyVerifier;
use crate::catalog::Catalog;
use crate::config::Settings;
use crate::domain::api_key::Role;
use crate::domain::blind::BlindIndexer;
use crate::domain::community::Community;
use crate::domain::offer::Offer;
use crate::signing::KeyRing;
use crate::usecases::verify::{Backoff, Limits};
use problem::ApiError;

pub use layers::with_layers;

/// What handlers share: one per process, behind an `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub db: PgPool,
    pub keys: KeyVerifier,
    pub indexer: BlindIndexer,
    pub limits: Limits,
    pub trusted_proxies: Vec<IpAddr>,
    pub ring: KeyRing,
    /// Communities and active offers, as every caller lists them.
    pub catalog: Catalog,
    pub import_limits: crate::usecases::import::ImportLimits,
    pub webhooks: crate::webhooks::Webhooks,
    pub hosted: page::Hosted,
    communities: Cache<String, Option<Arc<Community>>>,
}

/// Other processes' changes to a community reach this one within this time.
const COMMUNITY_CACHE_TTL: Duration = Duration::from_secs(5);

impl AppState {
    pub fn new(db: PgPool, settings: &Settings) -> anyhow::Result<Self> {
        let keys = KeyVerifier::new(db.clone(), &settings.auth);
        let indexer = BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret())?;
        let v = &settings.verification;
        let ring = KeyRing::new(
            db.clone(),
            settings.secrets.key_encryption_key.expose_secret(),
            &settings.tokens.issuer,
            &settings.tokens.audience,
        )?;
        let catalog = Catalog::new(db.clone());
        Ok(AppState(Arc::new(App {
            ring,
            catalog,
            db,
            keys,
            indexer,
            limits: Limits {
                window: Duration::from_secs(v.window_secs),
                per_identity: v.max_failures_per_identity,
                per_address: v.max_failures_per_address,
                per_key: v.max_failures_per_key,
                backoff: Backoff {
                    lookback: Duration::from_secs(v.backoff_lookback_secs),
                    free_failures: v.backoff_free_failures,
                    base: Duration::from_secs(v.backoff_base_secs),
                    max: Duration::from_secs(v.backoff_max_secs),
                },
            },
            trusted_proxies: v.trusted_proxies.clone(),
            import_limits: settings.import.limits(),
            webhooks: crate::webhooks::Webhooks::new(settings)?,
            hosted: page::Hosted::new(
                &settings.hosted,
                settings.profile == crate::config::Profile::Production,
            )?,
            communities: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(COMMUNITY_CACHE_TTL)
                .build(),
        })))
    }
}

impl App {
    /// A community by key, from a short-lived cache.
    pub async fn community(&self, key: &str) -> Result<Option<Arc<Community>>, ApiError> {
        let db = self.db.clone();
        let owned = key.to_owned();
        self.communities
            .try_get_with(key.to_owned(), async move {
                crate::store::communities::get(&db, &owned)
                    .await
                    .map(|c| c.map(Arc::new))
            })
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("loading a community: {e}")))
    }

    pub async fn forget_community(&self, key: &str) {
        self.communities.invalidate(key).await;
        self.catalog.forget_communities();
    }

    /// An active offer by id, from the catalogue; one missing from it is
    /// looked up, as it may have been activated on another process moments
    /// ago. (One paused elsewhere may still be found here for a few seconds;
    /// issuance checks the offer's own row, so no token comes of it.)
    pub async fn active_offer(&self, id: uuid::Uuid) -> Result<Option<Arc<Offer>>, ApiError> {
        if let Some(offer) = self.catalog.active_offer(id).await? {
            return Ok(Some(offer));
        }
        Ok(crate::store::offers::get(&self.db, id)
            .await?
            .filter(|o| o.status == crate::domain::offer::OfferStatus::Active)
            .map(Arc::new))
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
        (name = "communities", description = "Communities members are verified for"),
        (name = "records", description = "Verification records: bulk import (admin)"),
        (name = "verifications", description = "Checking a consumer's membership (checkout)"),
        (name = "verification-sessions", description = "The hosted verification page: create a session, send the shopper to its URL, read the outcome (checkout)"),
        (name = "people", description = "Erasure (admin)"),
        (name = "partners", description = "Partners who honour offers (admin)"),
        (name = "offers", description = "Offers: admins manage, checkouts see active ones, partners their own"),
        (name = "tokens", description = "Signed single-use offer tokens and their public keys"),
        (name = "redemptions", description = "Redeeming, reversing and confirming"),
        (name = "events", description = "Events of the outbox, for callers who poll (admin; partner: its own offers')"),
        (name = "webhook-endpoints", description = "Receivers of signed events, per Standard Webhooks (admin; partner: its own)"),
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
        .merge(communities::router())
        .merge(records::router())
        .merge(verifications::router())
        .merge(sessions::router())
        .merge(people::router())
        .merge(partners::router())
        .merge(offers::router())
        .merge(tokens::router())
        .merge(redemptions::router())
        .merge(events::router())
        .merge(webhooks::router())
        .split_for_parts()
}

/// The OpenAPI document as served: generated from the handlers, then
/// completed with the failures every operation shares.
pub fn document() -> serde_json::Value {
    let (_, openapi) = routes();
    let mut doc = serde_json::to_value(&openapi).unwrap_or_default();
    openapi::finish(&mut doc);
    doc
}

/// The roles each secured operation admits, by method and route, as its
/// OpenAPI security requirement names them.
static ROLES: LazyLock<HashMap<(String, String), Vec<Role>>> = LazyLock::new(|| {
    let doc = document();
    let mut roles = HashMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            if let Some(names) = op["security"][0]["api_key"].as_array() {
                let admitted = names
                    .iter()
                    .filter_map(|name| name.as_str()?.parse().ok())
                    .collect();
                roles.insert((method.to_ascii_uppercase(), path.clone()), admitted);
            }
        }
    }
    roles
});

/// The roles that may call the operation at `method` and `route` (a route
/// as matched, such as `/v1/offers/{id}`); `None` for an open route.
pub fn roles_for(method: &axum::http::Method, route: &str) -> Option<&'static [Role]> {
    ROLES
        .get(&(method.as_str().to_owned(), route.to_owned()))
        .map(Vec::as_slice)
}

/// The whole application: routes, documentation and middleware.
pub fn app(state: AppState, settings: &Settings) -> Router {
    // Install the recorder before the first request is counted.
    metrics::handle();
    let docs = Arc::new(docs::Docs::new(document()));
    let (router, _) = routes();
    let router = router
        .merge(page::router())
        .layer(Extension(docs))
        .with_state(state);
    with_layers(router, &settings.server)
}
