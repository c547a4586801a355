//! Revoking an issued token: it can no longer be redeemed, and its place
//! under the offer's caps is given back.

use uuid::Uuid;

use crate::store::tokens;
pub use crate::store::tokens::Revoked;

pub async fn revoke(db: &sqlx::PgPool, token_id: Uuid) -> Result<Revoked, sqlx::Error> {
    tokens::revoke(db, token_id).await
}
