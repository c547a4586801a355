//! Reversing a redemption when the order is cancelled: its place is given
//! back, or its token, where the offer says so.

use uuid::Uuid;

use crate::store::redemptions;
pub use crate::store::redemptions::Reversed;

pub async fn reverse(db: &sqlx::PgPool, redemption_id: Uuid) -> Result<Reversed, sqlx::Error> {
    let mut tx = db.begin().await?;
    let reversed = redemptions::reverse(&mut tx, redemption_id).await?;
    tx.commit().await?;
    Ok(reversed)
}
