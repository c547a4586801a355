//! Tokens issued before place keys existed hold the person's blind index
//! itself (`tokens.person_key`). Only a process that holds the blind-index
//! key can turn it into a place key, so `serve` and `migrate` do it at
//! start: each legacy token gets its place key and loses its person key,
//! and the per-person places of its offer are recounted, in one
//! transaction. Running it again finds nothing to do.

use crate::domain::blind::BlindIndexer;
use crate::store::offers;

/// How many legacy tokens were given a place key.
pub async fn adopt_legacy_person_keys(
    db: &sqlx::PgPool,
    indexer: &BlindIndexer,
) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let (tokens, offer_ids) =
        crate::store::tokens::adopt_legacy_person_keys(&mut tx, &indexer.place_secret()).await?;
    for offer in offer_ids {
        offers::recount_places(&mut *tx, offer).await?;
    }
    tx.commit().await?;
    Ok(tokens)
}
