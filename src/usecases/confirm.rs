//! A partner confirms a redemption of its own offer (reconciliation).

use uuid::Uuid;

use crate::store::redemptions::{self, Redemption};

pub enum Confirmed {
    /// Confirmed now, or earlier (the first confirmation is kept).
    Yes(Redemption),
    /// Reversed: it cannot be confirmed.
    Reversed,
    /// None, or another partner's.
    NotFound,
}

/// `partner`: the confirming partner (None for an admin, who may confirm
/// any).
pub async fn confirm(
    db: &sqlx::PgPool,
    redemption_id: Uuid,
    partner: Option<Uuid>,
    partner_ref: Option<&str>,
) -> Result<Confirmed, sqlx::Error> {
    if let Some(done) = redemptions::confirm(db, redemption_id, partner, partner_ref).await? {
        return Ok(Confirmed::Yes(done));
    }
    Ok(match redemptions::get(db, redemption_id).await? {
        Some(r) if partner.is_none() || r.partner_id == partner => Confirmed::Reversed,
        _ => Confirmed::NotFound,
    })
}
