//! Hosted verification sessions: a checkout creates one and sends the
//! shopper to its secret URL; each attempt on the page, the session's
//! outcome and the offer's token commit in one transaction; the checkout
//! reads the outcome with its key.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::issue_token::{Granted, Refusal, sign};
use super::verify::{self, Limits, Origin, Outcome, Request, VerifyError};
use crate::domain::Invalid;
use crate::domain::blind::BlindIndexer;
use crate::domain::community::Community;
use crate::domain::identity::RawIdentity;
use crate::domain::offer::Offer;
use crate::domain::session::{Locale, ReturnUrl};
use crate::signing::{KeyError, KeyRing};
use crate::store::sessions::{self, AttemptRecord, NewSession, SessionRow, Verified};

const CUSTOMER_REF_MAX_CHARS: usize = 200;
const SECRET_PREFIX: &str = "vs_";

/// The operator's rules for sessions (from `[hosted]`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub return_origins: Vec<String>,
    pub ttl: Duration,
    pub max_attempts: i32,
}

/// What a checkout asks for. The community and offer are resolved by the
/// caller (None: the key named none, or none exists).
pub struct NewRequest<'a> {
    pub community: Option<&'a Community>,
    /// Named, but unknown.
    pub unknown_community: Option<&'a str>,
    pub offer: Option<&'a Offer>,
    pub unknown_offer: bool,
    pub subsegment: Option<&'a str>,
    pub locale: Option<Locale>,
    pub return_url: &'a str,
    pub customer_ref: Option<&'a str>,
}

/// A new session and the secret of its URL, which only this answer holds.
pub struct Created {
    pub session: SessionRow,
    pub secret: String,
}

/// The SHA-256 of a URL's secret, as sessions are found by it.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a path segment has the shape of a session secret (the page
/// answers anything else as unknown without a lookup).
pub fn looks_like_secret(raw: &str) -> bool {
    raw.strip_prefix(SECRET_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub async fn create(
    db: &sqlx::PgPool,
    indexer: &BlindIndexer,
    rules: &Rules,
    api_key_id: &str,
    request: &NewRequest<'_>,
) -> Result<Created, CreateError> {
    let mut errors = Vec::new();
    if let Some(key) = request.unknown_community {
        errors.push(Invalid::new(
            "community",
            format!("no community has the key `{key}`"),
        ));
    }
    if request.unknown_offer {
        errors.push(Invalid::new("offer_id", "no active offer has this id"));
    }
    if request.community.is_none()
        && request.offer.is_none()
        && request.unknown_community.is_none()
        && !request.unknown_offer
    {
        errors.push(Invalid::new(
            "community",
            "name a community, or an offer_id whose communities the shopper chooses from",
        ));
    }
    if let (Some(community), Some(offer)) = (request.community, request.offer)
        && !offer.communities.contains(&community.key)
    {
        errors.push(Invalid::new(
            "community",
            format!("the offer is not for {}", community.key),
        ));
    }
    if let (Some(subsegment), Some(community)) = (request.subsegment, request.community)
        && !community.has_subsegment(subsegment)
    {
        errors.push(Invalid::new(
            "subsegment",
            format!("`{subsegment}` is not a sub-status of {}", community.key),
        ));
    }
    if request.subsegment.is_some() && request.community.is_none() {
        errors.push(Invalid::new(
            "subsegment",
            "a sub-status needs its community named",
        ));
    }
    if request
        .customer_ref
        .is_some_and(|r| r.chars().count() > CUSTOMER_REF_MAX_CHARS)
    {
        errors.push(Invalid::new(
            "customer_ref",
            format!("at most {CUSTOMER_REF_MAX_CHARS} characters"),
        ));
    }
    let mut allowed = rules.return_origins.clone();
    allowed.extend(crate::store::api_keys::return_origins(db, api_key_id).await?);
    let return_url = ReturnUrl::parse(request.return_url, &allowed)
        .map_err(|e| errors.push(e))
        .ok();
    let Some(return_url) = return_url.filter(|_| errors.is_empty()) else {
        return Err(CreateError::Invalid(errors));
    };
    let secret = new_secret();
    let hash = secret_hash(&secret);
    let customer_ref_ix = request
        .customer_ref
        .map(|r| indexer.index("customer-ref", &[r]));
    let session = sessions::insert(
        db,
        &NewSession {
            id: Uuid::now_v7(),
            secret_hash: &hash,
            api_key_id,
            community: request.community.map(|c| c.key.as_str()),
            offer_id: request.offer.map(|o| o.id),
            subsegment: request.subsegment,
            locale: request.locale.map(Locale::as_str),
            return_url: return_url.as_str(),
            customer_ref_ix: customer_ref_ix.as_ref().map(|ix| ix.as_slice()),
            max_attempts: rules.max_attempts,
            ttl_secs: rules.ttl.as_secs_f64(),
        },
    )
    .await?;
    Ok(Created { session, secret })
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("invalid request")]
    Invalid(Vec<Invalid>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A session's state as its reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Open,
    Verified,
    NotVerified,
    Expired,
    Canceled,
}

impl Status {
    pub fn of(row: &SessionRow) -> Status {
        match row.status.as_str() {
            "verified" => Status::Verified,
            "not_verified" => Status::NotVerified,
            "canceled" => Status::Canceled,
            // A revoked key's sessions stop with it.
            _ if row.key_revoked => Status::Canceled,
            _ if row.expired => Status::Expired,
            _ => Status::Open,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Verified => "verified",
            Status::NotVerified => "not_verified",
            Status::Expired => "expired",
            Status::Canceled => "canceled",
        }
    }
}

/// A session and, when its success issued one, the offer's token.
pub struct Read {
    pub session: SessionRow,
    pub token: Option<Granted>,
}

/// A session for the key that created it; another key's is `None`.
pub async fn read(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    api_key_id: &str,
    id: Uuid,
) -> Result<Option<Read>, ReadError> {
    let Some(session) = sessions::get_for_key(db, id, api_key_id).await? else {
        return Ok(None);
    };
    let token = match session.token_id {
        Some(token_id) => match sessions::token(db, token_id).await? {
            Some(row) => Some(sign(ring, &row).await?),
            None => None,
        },
        None => None,
    };
    Ok(Some(Read { session, token }))
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Cancels an open session; `Err` carries the session as it is when it
/// was no longer open.
pub async fn cancel(
    db: &sqlx::PgPool,
    api_key_id: &str,
    id: Uuid,
) -> Result<Option<Result<SessionRow, SessionRow>>, sqlx::Error> {
    if let Some(canceled) = sessions::cancel(db, id, api_key_id).await? {
        return Ok(Some(Ok(canceled)));
    }
    Ok(sessions::get_for_key(db, id, api_key_id).await?.map(Err))
}

/// One attempt from the page.
pub struct Attempt<'a> {
    pub secret: &'a str,
    pub community: &'a Community,
    pub person: RawIdentity,
    pub consent: bool,
    /// The shopper's address, for the rate limits.
    pub client_address: IpAddr,
}

/// What an attempt came to.
pub enum Submitted {
    /// The session is verified: send the shopper back.
    Verified(SessionRow),
    /// Not verified; the session may still be open for another attempt.
    NotVerified(SessionRow),
    /// The form is incomplete: nothing was counted.
    Invalid(Vec<Invalid>),
    /// Too many failures from this shopper or identity: nothing counted.
    RateLimited { retry_after_secs: u64 },
    /// The session was not open (finished, canceled or expired).
    Closed(SessionRow),
    /// No session has this secret.
    Unknown,
}

/// An attempt on the page. Its checks and blind indexes are worked out
/// first; then the session row is locked, so attempts from several tabs or
/// processes go one at a time: the bound on attempts holds and a session
/// verifies (and issues its token) once.
pub async fn submit(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    indexer: &BlindIndexer,
    limits: &Limits,
    attempt: Attempt<'_>,
) -> Result<Submitted, VerifyError> {
    let hash = secret_hash(attempt.secret);
    // What an attempt needs of its session never changes once created; its
    // status is read again under the lock.
    let Some(session) = sessions::by_secret(db, &hash).await? else {
        return Ok(Submitted::Unknown);
    };
    if Status::of(&session) != Status::Open {
        return Ok(Submitted::Closed(session));
    }
    let request = Request {
        subsegment: session.subsegment.clone(),
        person: attempt.person,
        consent: attempt.consent,
        customer_ref: None,
        customer_ref_ix: session
            .customer_ref_ix
            .as_deref()
            .and_then(|ix| ix.try_into().ok()),
        offer_id: session.offer_id,
        idempotency: None,
    };
    let origin = Origin {
        api_key_id: &session.api_key_id,
        client_address: attempt.client_address,
        channel: crate::usecases::verify::Channel::HostedPage,
    };
    let prepared =
        match verify::Prepared::new(ring, indexer, limits, attempt.community, &origin, &request)
            .await
        {
            Ok(prepared) => prepared,
            Err(VerifyError::Invalid(errors)) => return Ok(Submitted::Invalid(errors)),
            Err(other) => return Err(other),
        };
    let mut tx = db.begin().await?;
    let Some(locked) = sessions::lock_by_secret(&mut tx, &hash).await? else {
        return Ok(Submitted::Unknown);
    };
    if Status::of(&locked) != Status::Open {
        return Ok(Submitted::Closed(locked));
    }
    let verification = match verify::verify_in(
        &mut tx,
        ring,
        &prepared,
        limits,
        attempt.community,
        &origin,
        &request,
    )
    .await
    {
        Ok(verification) => verification,
        Err(VerifyError::RateLimited { retry_after_secs }) => {
            return Ok(Submitted::RateLimited { retry_after_secs });
        }
        Err(other) => return Err(other),
    };
    let (token_id, token_problem) = match &verification.token {
        Some(Ok(granted)) => (Some(granted.token_id), None),
        Some(Err(refusal)) => (None, Some(Refusal::kind(refusal))),
        None => (None, None),
    };
    let record = match &verification.outcome {
        Outcome::Verified {
            attempt_id,
            subsegment,
            membership_id,
            expires_at,
        } => AttemptRecord {
            verification_id: *attempt_id,
            verified: Some(Verified {
                membership_id: *membership_id,
                membership_expires_at: *expires_at,
                community: &attempt.community.key,
                subsegment: subsegment.as_deref(),
                token_id,
                token_problem,
            }),
        },
        Outcome::NotVerified { attempt_id, .. } => AttemptRecord {
            verification_id: *attempt_id,
            verified: None,
        },
    };
    let session = sessions::record_attempt(&mut tx, session.id, &record).await?;
    tx.commit().await?;
    Ok(match Status::of(&session) {
        Status::Verified => Submitted::Verified(session),
        _ => Submitted::NotVerified(session),
    })
}
