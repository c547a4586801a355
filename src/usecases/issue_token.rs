//! Issuing a token for an offer from a live membership ("verify once").
//!
//! One call of `issue_token` (in the migrations) checks the membership,
//! takes a place under the offer's caps, inserts the token and, under an
//! Idempotency-Key, writes the key's answer: the token's row. The signed
//! form is made from that row after the call, and made again from it for a
//! retry: Ed25519 signatures are deterministic, so the retry gets the very
//! same token, even if the process that issued it died before answering.

use time::OffsetDateTime;
use uuid::Uuid;

use super::idempotency::{Answer, Keyed, past_key_races};
use crate::faults;
use crate::signing::{KeyError, KeyRing, TokenClaims};
use crate::store::tokens::{self, IssueCall, TokenRow};

/// A signed token, as handed to the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub token: String,
    pub token_id: Uuid,
    pub offer_id: Uuid,
    pub expires_at: OffsetDateTime,
}

/// Why no token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such membership")]
    UnknownMembership,
    #[error("no such offer")]
    UnknownOffer,
    #[error("{0}")]
    NotEligible(&'static str),
    #[error("the offer has no places left")]
    Exhausted,
    #[error("this person has had as many tokens for the offer as it allows")]
    PersonLimit,
}

impl Refusal {
    /// The problem type that names this refusal where a verified member's
    /// token was kept back.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Exhausted => "offer_exhausted",
            Refusal::PersonLimit => "person_limit_reached",
            _ => "not_eligible",
        }
    }

    /// The refusal an outcome of the store names (None for `issued`).
    pub fn from_outcome(outcome: &str) -> Option<Self> {
        Some(match outcome {
            "issued" => return None,
            "unknown_membership" => Refusal::UnknownMembership,
            "unknown_offer" => Refusal::UnknownOffer,
            "membership_lapsed" => Refusal::NotEligible("The membership has lapsed: verify again."),
            "offer_closed" => Refusal::NotEligible("The offer is not open now."),
            "wrong_community" => Refusal::NotEligible(
                "The offer is not for this membership's community or sub-status.",
            ),
            "offer_exhausted" => Refusal::Exhausted,
            "person_limit_reached" => Refusal::PersonLimit,
            _ => Refusal::NotEligible("The offer cannot be issued."),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub struct IssueRequest<'a> {
    pub api_key_id: &'a str,
    pub idempotency: Option<&'a Keyed>,
    pub membership_id: Uuid,
    pub offer_id: Uuid,
}

/// The token's claims, from its row. `sub` is opaque per token, derived
/// from the token's id alone: nothing in a token links it to the person's
/// other tokens (the membership id would, across every offer and partner),
/// and a token signed again from its row is the same token, even after the
/// person was erased.
pub fn claims_of(ring: &KeyRing, row: &TokenRow) -> TokenClaims {
    TokenClaims {
        iss: ring.issuer.clone(),
        aud: ring.audience.clone(),
        sub: ring.subject_of(row.id),
        jti: row.id.to_string(),
        iat: row.issued_at.unix_timestamp(),
        nbf: row.issued_at.unix_timestamp(),
        exp: row.expires_at.unix_timestamp(),
        offer_id: row.offer_id.to_string(),
        community: row.community.clone(),
    }
}

/// The signed token of a row, with the key that its row names.
pub async fn sign(ring: &KeyRing, row: &TokenRow) -> Result<Granted, KeyError> {
    let signer = ring.signer_for(&row.kid).await?;
    Ok(Granted {
        token: signer.sign(&claims_of(ring, row))?,
        token_id: row.id,
        offer_id: row.offer_id,
        expires_at: row.expires_at,
    })
}

/// The answer for an outcome and its token row.
pub async fn granted_or_refused(
    ring: &KeyRing,
    outcome: &str,
    row: Option<&TokenRow>,
) -> Result<Result<Granted, Refusal>, KeyError> {
    match (Refusal::from_outcome(outcome), row) {
        (Some(refusal), _) => Ok(Err(refusal)),
        (None, Some(row)) => Ok(Ok(sign(ring, row).await?)),
        (None, None) => Ok(Err(Refusal::UnknownOffer)),
    }
}

/// `place_secret`: see `BlindIndexer::place_secret`.
pub async fn issue(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    place_secret: &[u8],
    request: &IssueRequest<'_>,
) -> Result<Answer<Result<Granted, Refusal>>, IssueError> {
    let signer = ring.signer().await?;
    let token_id = crate::signing::new_token_id();
    let call = IssueCall {
        api_key_id: request.api_key_id,
        idempotency_key: request.idempotency.map(|k| k.key.as_str()),
        request_hash: request
            .idempotency
            .map(|k| k.fingerprint.as_slice())
            .unwrap_or_default(),
        token_id,
        offer_id: request.offer_id,
        membership_id: request.membership_id,
        kid: signer.kid(),
        place_secret,
    };
    let row = past_key_races(|| tokens::issue(db, &call)).await?;
    faults::point("issue.after_commit");
    if row.replayed && row.request_hash != call.request_hash {
        return Err(IssueError::KeyReused);
    }
    Ok(Answer {
        replayed: row.replayed,
        value: granted_or_refused(ring, &row.outcome, row.token.as_ref()).await?,
    })
}
