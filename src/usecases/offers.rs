//! Creating and replacing offers. Replacing an offer's terms recounts its
//! places in the same transaction, so a per-person limit set on an offer
//! that had none starts from the tokens its people already hold.

use crate::domain::offer::Offer;
use crate::store::offers;

pub async fn save(db: &sqlx::PgPool, offer: &Offer) -> Result<Offer, sqlx::Error> {
    let mut tx = db.begin().await?;
    let saved = offers::save(&mut *tx, offer).await?;
    offers::recount_places(&mut *tx, saved.id).await?;
    tx.commit().await?;
    Ok(saved)
}
