//! The communities and the active offers, as every checkout and partner asks
//! for them: each read whole from the database at most once per
//! `CATALOG_TTL` per process, whatever the traffic.
//!
//! A change made through this process calls `forget_*` and is served at
//! once; a change made through another process is served within
//! `CATALOG_TTL`. Decisions that must be exact (caps, an offer's window at
//! issuance) are taken in SQL, not from here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::community::Community;
use crate::domain::offer::{Offer, OfferStatus};
use crate::snapshot::Snapshot;
use crate::store::communities;
use crate::store::offers::{self, OfferFilter};

/// Other processes' changes reach this one within this time.
pub const CATALOG_TTL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("reading the catalogue: {0}")]
pub struct CatalogError(#[source] Arc<sqlx::Error>);

/// The active offers, newest first, and by id.
pub struct ActiveOffers {
    newest_first: Vec<Arc<Offer>>,
    by_id: HashMap<Uuid, Arc<Offer>>,
}

impl ActiveOffers {
    fn new(offers: Vec<Offer>) -> Self {
        let newest_first: Vec<Arc<Offer>> = offers.into_iter().map(Arc::new).collect();
        let by_id = newest_first.iter().map(|o| (o.id, o.clone())).collect();
        ActiveOffers {
            newest_first,
            by_id,
        }
    }

    /// Newest first; with a community, only the offers open to it.
    pub fn listed<'a>(&'a self, community: Option<&'a str>) -> impl Iterator<Item = &'a Offer> {
        self.newest_first
            .iter()
            .filter(move |o| community.is_none_or(|c| o.communities.iter().any(|k| k == c)))
            .map(|o| o.as_ref())
    }

    pub fn get(&self, id: Uuid) -> Option<&Arc<Offer>> {
        self.by_id.get(&id)
    }
}

pub struct Catalog {
    db: PgPool,
    communities: Snapshot<Arc<[Community]>>,
    active_offers: Snapshot<Arc<ActiveOffers>>,
}

impl Catalog {
    pub fn new(db: PgPool) -> Self {
        Catalog {
            db,
            communities: Snapshot::new(CATALOG_TTL),
            active_offers: Snapshot::new(CATALOG_TTL),
        }
    }

    /// Every community, built-in ones first.
    pub async fn communities(&self) -> Result<Arc<[Community]>, CatalogError> {
        self.communities
            .get(async {
                let all = communities::list(&self.db).await?;
                Ok::<_, sqlx::Error>(Arc::from(all))
            })
            .await
            .map_err(CatalogError)
    }

    /// The offers whose status is active (their windows are the reader's to
    /// check).
    pub async fn active_offers(&self) -> Result<Arc<ActiveOffers>, CatalogError> {
        self.active_offers
            .get(async {
                let filter = OfferFilter {
                    status: Some(OfferStatus::Active),
                    community: None,
                    partner_id: None,
                };
                let active = offers::list(&self.db, &filter).await?;
                Ok::<_, sqlx::Error>(Arc::new(ActiveOffers::new(active)))
            })
            .await
            .map_err(CatalogError)
    }

    /// An active offer by id; `None` for an offer that is not active or does
    /// not exist.
    pub async fn active_offer(&self, id: Uuid) -> Result<Option<Arc<Offer>>, CatalogError> {
        Ok(self.active_offers().await?.get(id).cloned())
    }

    /// After this process created, changed or deleted a community.
    pub fn forget_communities(&self) {
        self.communities.forget();
    }

    /// After this process created or changed an offer.
    pub fn forget_offers(&self) {
        self.active_offers.forget();
    }

    /// How many times this process has read the communities from the
    /// database.
    pub fn community_reads(&self) -> u64 {
        self.communities.reads()
    }

    /// How many times this process has read the active offers from the
    /// database.
    pub fn offer_reads(&self) -> u64 {
        self.active_offers.reads()
    }
}
