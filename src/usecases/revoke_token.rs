//! Revoking an issued token: it can no longer be redeemed, and its place
//! under the offer's caps is given back.
//!
//! Who may: an admin (checkouts and partners are refused by role). From
//! which state: issued (expired or not); any other state is answered with
//! the token's state. Revocation and redemption are each a conditional
//! update of the token's row, so of a revocation racing a redemption
//! exactly one wins.

use uuid::Uuid;

use crate::store::tokens;
pub use crate::store::tokens::Revoked;

pub async fn revoke(db: &sqlx::PgPool, token_id: Uuid) -> Result<Revoked, sqlx::Error> {
    tokens::revoke(db, token_id).await
}
