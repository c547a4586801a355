//! Where a membership becomes a token, and a token a redemption.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::offer::{Ineligible, Offer};
use crate::signing::{KeyError, KeyRing, TokenClaims, TokenError};
use crate::store::redemptions::{self, Claim, ClaimedRedemption, RedeemRequest, Redeemed};
use crate::store::tokens::{self, Issued, LiveMembership, NewToken};

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    NotEligible(&'static str),
    #[error("the offer has no places left")]
    Exhausted,
    #[error("this person has had as many tokens for the offer as it allows")]
    PersonLimit,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A signed token, as handed to the checkout.
#[derive(Debug, Clone)]
pub struct Granted {
    pub token: String,
    pub token_id: Uuid,
    pub expires_at: OffsetDateTime,
}

/// Issues a token for the offer to a live membership, within the caps.
pub async fn issue(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    offer: &Offer,
    membership: &LiveMembership,
) -> Result<Granted, IssueError> {
    if !membership.live {
        return Err(IssueError::NotEligible(
            "The membership has lapsed: verify again.",
        ));
    }
    let now = OffsetDateTime::now_utc();
    match offer.admits(&membership.community, membership.subsegment.as_deref(), now) {
        Ok(()) => {}
        Err(Ineligible::NotOpen) => {
            return Err(IssueError::NotEligible("The offer is not open now."));
        }
        Err(Ineligible::Community) => {
            return Err(IssueError::NotEligible(
                "The offer is not for this membership's community.",
            ));
        }
    }
    let signer = ring.signer().await?;
    let token_id = crate::signing::new_token_id();
    let issued = tokens::issue(
        db,
        &NewToken {
            id: token_id,
            offer_id: offer.id,
            membership_id: membership.id,
            person_key: &membership.person_key,
            community: &membership.community,
            kid: signer.kid(),
            ttl_secs: offer.token_ttl_secs,
            total_cap: offer.total_cap,
            per_person_limit: offer.per_person_limit,
        },
    )
    .await?;
    let issued = match issued {
        Issued::Yes(issued) => issued,
        Issued::OfferExhausted => return Err(IssueError::Exhausted),
        Issued::PersonLimitReached => return Err(IssueError::PersonLimit),
        Issued::OfferClosed => return Err(IssueError::NotEligible("The offer is not open now.")),
    };
    let claims = TokenClaims {
        iss: ring.issuer.clone(),
        aud: ring.audience.clone(),
        sub: membership.id.to_string(),
        jti: token_id.to_string(),
        iat: issued.issued_at.unix_timestamp(),
        nbf: issued.issued_at.unix_timestamp(),
        exp: issued.expires_at.unix_timestamp(),
        offer_id: offer.id.to_string(),
        community: membership.community.clone(),
    };
    Ok(Granted {
        token: signer.sign(&claims)?,
        token_id,
        expires_at: issued.expires_at,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    #[error("{0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token was already redeemed")]
    AlreadyRedeemed,
    #[error("the token was revoked")]
    Revoked,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<TokenError> for RedeemError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Invalid(why) => RedeemError::Invalid(why),
            TokenError::Expired => RedeemError::Expired,
            TokenError::Database(e) => RedeemError::Database(e),
        }
    }
}

/// The token's id, from a verified token.
pub fn token_id(claims: &TokenClaims) -> Result<Uuid, TokenError> {
    Uuid::parse_str(&claims.jti)
        .map_err(|_| TokenError::Invalid("the token's jti is not ours".into()))
}

/// The answer to a redemption request.
pub enum RedeemAnswer {
    /// This request redeemed the token, or learnt why it cannot.
    Fresh(Result<Redeemed, RedeemError>),
    /// Another request with the same Idempotency-Key got there first.
    Prior(Claim),
}

/// Redeems a token once, under the request's idempotency key. A token that
/// fails verification is refused before the key is claimed.
pub async fn redeem(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    token: &str,
    request: RedeemRequest<'_>,
) -> Result<RedeemAnswer, RedeemError> {
    let claims = ring.verify(token, false).await?;
    let id = token_id(&claims)?;
    let request = RedeemRequest {
        token_id: id,
        ..request
    };
    match redemptions::claim_and_redeem(db, &request).await? {
        ClaimedRedemption::NotClaimed => {
            let prior = redemptions::prior_answer(
                db,
                request.api_key_id,
                request.idempotency_key,
                request.request_hash,
            )
            .await?;
            Ok(RedeemAnswer::Prior(prior))
        }
        ClaimedRedemption::Claimed(Some(redeemed)) => Ok(RedeemAnswer::Fresh(Ok(redeemed))),
        ClaimedRedemption::Claimed(None) => {
            let refusal = match tokens::state(db, id).await? {
                None => RedeemError::Invalid("no such token".into()),
                Some(state) => match state.shown_state() {
                    "revoked" | "reversed" => RedeemError::Revoked,
                    "expired" => RedeemError::Expired,
                    _ => RedeemError::AlreadyRedeemed,
                },
            };
            Ok(RedeemAnswer::Fresh(Err(refusal)))
        }
    }
}
