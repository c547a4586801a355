//! Reversing a redemption when the order is cancelled: its place is given
//! back, or its token, where the offer says so.
//!
//! Who may: the API key that redeemed, or an admin; any other key is told
//! there is no such redemption. From which state: a redemption not yet
//! reversed and not yet confirmed by its partner; once confirmed, only an
//! admin may reverse it, giving a reason the partner sees. The rules are
//! one conditional update in `reverse_redemption` (in the migrations), so a
//! confirmation racing a reversal is ordered by the redemption's row.

use uuid::Uuid;

pub use crate::store::redemptions::Reversed;
use crate::store::redemptions::{self, ReverseCall};

/// The longest reason, in characters.
pub const REASON_MAX: usize = 500;

/// Why a redemption is reversed: trimmed, 1 to `REASON_MAX` characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadReason {
    #[error("must not be empty")]
    Empty,
    #[error("at most {REASON_MAX} characters")]
    TooLong,
}

impl Reason {
    pub fn parse(raw: &str) -> Result<Self, BadReason> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            Err(BadReason::Empty)
        } else if trimmed.chars().count() > REASON_MAX {
            Err(BadReason::TooLong)
        } else {
            Ok(Reason(trimmed.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who asks for the reversal.
pub struct Reverser<'a> {
    pub api_key_id: &'a str,
    pub admin: bool,
}

pub async fn reverse(
    db: &sqlx::PgPool,
    redemption_id: Uuid,
    by: &Reverser<'_>,
    reason: Option<&Reason>,
) -> Result<Reversed, sqlx::Error> {
    redemptions::reverse(
        db,
        &ReverseCall {
            redemption_id,
            api_key_id: by.api_key_id,
            admin: by.admin,
            reason: reason.map(Reason::as_str),
        },
    )
    .await
}
