//! A partner confirms a redemption of its own offer (reconciliation).
//!
//! Who may: the offer's partner, or an admin; another partner is told there
//! is no such redemption. From which state: any redemption not reversed;
//! confirming again keeps the first confirmation. The update is conditional
//! on the redemption not being reversed, so it is ordered against a
//! concurrent reversal by the redemption's row.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::store::redemptions::{self, Redemption};

pub enum Confirmed {
    /// Confirmed now, or earlier (the first confirmation is kept).
    Yes(Box<Redemption>),
    /// Reversed (at that instant): it cannot be confirmed.
    Reversed(OffsetDateTime),
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
        return Ok(Confirmed::Yes(Box::new(done)));
    }
    Ok(match redemptions::get(db, redemption_id).await? {
        Some(r) if partner.is_none() || r.partner_id == partner => match r.reversed_at {
            Some(at) => Confirmed::Reversed(at),
            // Not reversed, yet not updated: it vanished in between.
            None => Confirmed::NotFound,
        },
        _ => Confirmed::NotFound,
    })
}
