//! Redeeming a token once, under an Idempotency-Key.
//!
//! The token's signature and claims are checked in memory; then one call of
//! `redeem_token` (in the migrations) either finds the key's first answer or
//! moves the token from issued to redeemed, writes the redemption and the
//! key's answer, all in one transaction: there is no moment at which the
//! effect exists without its answer.

use uuid::Uuid;

use super::idempotency::{Answer, Keyed, past_key_races};
use crate::faults;
use crate::signing::{KeyRing, TokenClaims, TokenError, UNKNOWN_KEY};
use crate::store::redemptions::{self, RedeemCall};

pub use crate::store::redemptions::Redeemed;

/// Why a token was not redeemed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token was already redeemed")]
    AlreadyRedeemed,
    #[error("the token was revoked")]
    Revoked,
}

impl Refusal {
    fn from_outcome(outcome: &str) -> Self {
        match outcome {
            "token_expired" => Refusal::Expired,
            "token_revoked" => Refusal::Revoked,
            "unknown_token" => Refusal::Invalid("no such token".into()),
            // As a token signed by a key that is not ours: a revoked key's
            // tokens are refused like forgeries.
            "key_revoked" => Refusal::Invalid(UNKNOWN_KEY.into()),
            _ => Refusal::AlreadyRedeemed,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// Refused before anything was claimed: the token itself is bad.
    #[error(transparent)]
    Refused(Refusal),
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<TokenError> for RedeemError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid(why) => RedeemError::Refused(Refusal::Invalid(why)),
            TokenError::Expired => RedeemError::Refused(Refusal::Expired),
            TokenError::Database(e) => RedeemError::Database(e),
        }
    }
}

/// The token's id, from a verified token.
pub fn token_id(claims: &TokenClaims) -> Result<Uuid, TokenError> {
    Uuid::parse_str(&claims.jti)
        .map_err(|_| TokenError::Invalid("the token's jti is not ours".into()))
}

pub struct RedeemRequest<'a> {
    pub api_key_id: &'a str,
    pub idempotency: &'a Keyed,
    pub token: &'a str,
    pub order_ref: &'a str,
    pub amount_minor: Option<i64>,
}

pub async fn redeem(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    request: &RedeemRequest<'_>,
) -> Result<Answer<Result<Redeemed, Refusal>>, RedeemError> {
    let claims = ring.verify(request.token, false).await?;
    let call = RedeemCall {
        api_key_id: request.api_key_id,
        idempotency_key: request.idempotency.key.as_str(),
        request_hash: &request.idempotency.fingerprint,
        token_id: token_id(&claims)?,
        redemption_id: Uuid::now_v7(),
        order_ref: request.order_ref,
        amount_minor: request.amount_minor,
    };
    let row = past_key_races(|| redemptions::redeem(db, &call)).await?;
    faults::point("redeem.after_commit");
    if row.replayed && row.request_hash != call.request_hash {
        return Err(RedeemError::KeyReused);
    }
    let value = match row.redeemed {
        Some(redeemed) if row.outcome == "redeemed" => Ok(redeemed),
        _ => Err(Refusal::from_outcome(&row.outcome)),
    };
    Ok(Answer {
        replayed: row.replayed,
        value,
    })
}
