//! Where membership is decided: one consumer's attempt against the records,
//! under rate limits that hold across processes.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use super::idempotency::{Answer, Keyed, past_key_races};
use super::issue_token::{Granted, Refusal, granted_or_refused};
use crate::domain::Invalid;
use crate::domain::blind::MatchKeys;
use crate::domain::blind::{BlindIndexer, LimitSubject};
use crate::domain::community::Community;
use crate::domain::identity::{CANON_VERSION, Identity, RawIdentity};
use crate::faults;
use crate::signing::{KeyError, KeyRing, new_token_id};
use crate::store::verifications::{self, Periods, Subject, VerifyCall};

const CUSTOMER_REF_MAX_CHARS: usize = 200;

/// How many failed attempts each subject may have within the window, and
/// how the identity components back off over weeks.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window: Duration,
    pub per_identity: i32,
    pub per_address: i32,
    pub per_key: i32,
    pub backoff: Backoff,
}

/// Within `lookback`, once an identity component has `free_failures`
/// failures, each further attempt waits `base` doubled per failure past the
/// free ones, at most `max`, counted from the last failure.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub lookback: Duration,
    pub free_failures: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The most failures one identity component can have within the
    /// lookback, however patient the guesser: the free ones, then one per
    /// wait, each wait doubling up to the cap.
    pub fn most_failures_within(&self, span: Duration) -> u64 {
        let mut failures = u64::from(self.free_failures);
        let mut elapsed = Duration::ZERO;
        let mut wait = self.base;
        loop {
            elapsed = elapsed.saturating_add(wait);
            if elapsed > span {
                return failures;
            }
            failures += 1;
            wait = wait.saturating_mul(2).min(self.max);
        }
    }
}

impl Limits {
    fn of(&self, subject: LimitSubject) -> i32 {
        match subject {
            LimitSubject::Email
            | LimitSubject::NamePair
            | LimitSubject::License
            | LimitSubject::LicenseFamily => self.per_identity,
            LimitSubject::ClientAddress => self.per_address,
            LimitSubject::ApiKey => self.per_key,
        }
    }
}

/// A consumer's attempt, as the checkout sends it.
pub struct Request {
    pub subsegment: Option<String>,
    pub person: RawIdentity,
    pub consent: bool,
    pub customer_ref: Option<String>,
    /// The reference's keyed hash, when only that is kept (a hosted
    /// session's); `customer_ref` wins when both are given.
    pub customer_ref_ix: Option<[u8; 16]>,
    /// The offer the consumer wants: its token comes with a success.
    pub offer_id: Option<Uuid>,
    /// The request's Idempotency-Key and body fingerprint.
    pub idempotency: Option<Keyed>,
}

/// Who is asking, and from where.
pub struct Origin<'a> {
    pub api_key_id: &'a str,
    pub client_address: IpAddr,
    /// Where the attempt came in: a key's API calls and its hosted page's
    /// attempts each have a failure budget of their own, so a flood on
    /// the page cannot hold the checkout's own calls back, or the reverse.
    pub channel: Channel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Api,
    HostedPage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Verified {
        attempt_id: Uuid,
        subsegment: Option<String>,
        membership_id: Uuid,
        expires_at: Option<OffsetDateTime>,
    },
    /// Not on the roster, a field wrong, expired, too young: all look alike.
    /// `subsegment` is the one asked for.
    NotVerified {
        attempt_id: Uuid,
        subsegment: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid request")]
    Invalid(Vec<Invalid>),
    #[error("too many failed attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this Idempotency-Key was used with another request")]
    KeyReused,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_backoff_allows_at_most_44_guesses_a_month() {
        let backoff = Backoff {
            lookback: Duration::from_secs(30 * 86_400),
            free_failures: 5,
            base: Duration::from_secs(60),
            max: Duration::from_secs(86_400),
        };
        let month = backoff.most_failures_within(Duration::from_secs(30 * 86_400));
        assert_eq!(month, 44);
        assert!(month * 8 < 365, "under an eighth of one birth year");
        assert_eq!(backoff.most_failures_within(Duration::ZERO), 5);
    }
}

pub(crate) fn person_field(error: Invalid) -> Invalid {
    Invalid::new(format!("person.{}", error.field), error.message)
}

/// Checks the request against the community; the identity it carries.
pub(crate) fn check(community: &Community, request: &Request) -> Result<Identity, Vec<Invalid>> {
    let mut errors = Vec::new();
    if !request.consent {
        errors.push(Invalid::new(
            "consent",
            "must be true: the consumer agreed to be verified",
        ));
    }
    if let Some(subsegment) = &request.subsegment
        && !community.has_subsegment(subsegment)
    {
        let known = if community.subsegments.is_empty() {
            "it has none".to_owned()
        } else {
            community.subsegments.join(", ")
        };
        errors.push(Invalid::new(
            "subsegment",
            format!(
                "`{subsegment}` is not a sub-status of {} ({known})",
                community.key
            ),
        ));
    }
    if request
        .customer_ref
        .as_ref()
        .is_some_and(|r| r.chars().count() > CUSTOMER_REF_MAX_CHARS)
    {
        errors.push(Invalid::new(
            "customer_ref",
            format!("at most {CUSTOMER_REF_MAX_CHARS} characters"),
        ));
    }
    let identity = match Identity::parse(&request.person) {
        Ok(identity) => Some(identity),
        Err(invalid) => {
            errors.extend(invalid.into_iter().map(person_field));
            None
        }
    };
    if let Some(identity) = &identity {
        for field in community.missing_fields(identity) {
            errors.push(Invalid::new(
                format!("person.{field}"),
                format!("is required to verify as {}", community.key),
            ));
        }
        if errors.is_empty() && !identity.is_matchable() {
            errors.push(Invalid::new(
                "person",
                "needs an email, or given_name, family_name and birth_date, or license_number and family_name",
            ));
        }
    }
    match identity {
        Some(identity) if errors.is_empty() => Ok(identity),
        _ => Err(errors),
    }
}

/// The answer to one attempt, with the offer's token (or why none) when an
/// offer was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub outcome: Outcome,
    pub token: Option<Result<Granted, Refusal>>,
}

/// Verifies one consumer, in one call of `verify_consumer` (in the
/// migrations): the rate limits, the record match, the attempt with its
/// strikes or its membership, the offer's token, and the Idempotency-Key's
/// answer commit together. Failures count against the limits of each
/// identity component, the client address and the API key.
pub async fn verify(
    db: &sqlx::PgPool,
    ring: &KeyRing,
    indexer: &BlindIndexer,
    limits: &Limits,
    community: &Community,
    origin: &Origin<'_>,
    request: &Request,
) -> Result<Answer<Verification>, VerifyError> {
    let prepared = Prepared::new(ring, indexer, limits, community, origin, request).await?;
    let call = prepared.call(limits, community, origin, request);
    let row = past_key_races(|| verifications::verify(db, &call)).await?;
    faults::point("verify.after_commit");
    answer(ring, &call, row).await
}

/// `verify`, as one statement of the caller's transaction, so that what
/// the caller writes beside it (a hosted session's outcome) commits with
/// the attempt. Without an Idempotency-Key: the caller's own row lock
/// orders its attempts.
pub async fn verify_in(
    conn: &mut sqlx::PgConnection,
    ring: &KeyRing,
    prepared: &Prepared,
    limits: &Limits,
    community: &Community,
    origin: &Origin<'_>,
    request: &Request,
) -> Result<Verification, VerifyError> {
    let call = prepared.call(limits, community, origin, request);
    let row = verifications::verify(conn, &call).await?;
    Ok(answer(ring, &call, row).await?.value)
}

/// What one attempt sends to the database, worked out beforehand.
pub struct Prepared {
    subjects: Vec<Subject>,
    customer_ref_ix: Option<Vec<u8>>,
    keys: MatchKeys,
    claimed_person: Option<Vec<u8>>,
    periods: Periods,
    age_ok: bool,
    signer: Option<std::sync::Arc<crate::signing::ActiveKey>>,
    place_secret: [u8; 32],
}

impl Prepared {
    /// Works out what an attempt sends to the database (its checks, blind
    /// indexes and signing key), before any transaction is open.
    pub async fn new(
        ring: &KeyRing,
        indexer: &BlindIndexer,
        limits: &Limits,
        community: &Community,
        origin: &Origin<'_>,
        request: &Request,
    ) -> Result<Self, VerifyError> {
        let identity = check(community, request).map_err(VerifyError::Invalid)?;
        let mut subjects: Vec<(LimitSubject, [u8; 16])> = indexer.identity_subjects(&identity);
        let address = origin.client_address.to_canonical().to_string();
        subjects.push((
            LimitSubject::ClientAddress,
            indexer.index("limit:address", &[&address]),
        ));
        let key_budget = match origin.channel {
            Channel::Api => "limit:api-key",
            Channel::HostedPage => "limit:hosted-page-key",
        };
        subjects.push((
            LimitSubject::ApiKey,
            indexer.index(key_budget, &[origin.api_key_id]),
        ));
        let subjects = subjects
            .iter()
            .map(|(kind, subject)| Subject {
                key: subject.to_vec(),
                limit: limits.of(*kind),
                exact: kind.is_identity(),
            })
            .collect();
        let customer_ref_ix = match (&request.customer_ref, request.customer_ref_ix) {
            (Some(given), _) => Some(indexer.index("customer-ref", &[given]).to_vec()),
            (None, indexed) => indexed.map(|ix| ix.to_vec()),
        };
        let today = OffsetDateTime::now_utc().date();
        let signer = match request.offer_id {
            Some(_) => Some(ring.signer().await?),
            None => None,
        };
        Ok(Prepared {
            subjects,
            customer_ref_ix,
            keys: indexer.match_keys(&identity),
            claimed_person: indexer.person_key(&identity).map(|k| k.to_vec()),
            periods: Periods {
                subsegments: community.subsegments.clone(),
                days: community
                    .subsegments
                    .iter()
                    .map(|s| community.reverify_days(Some(s)))
                    .collect(),
                default_days: community.reverify_days(None),
            },
            age_ok: community.admits_age(identity.birth_date, today),
            signer,
            place_secret: indexer.place_secret(),
        })
    }

    fn call<'a>(
        &'a self,
        limits: &Limits,
        community: &'a Community,
        origin: &Origin<'a>,
        request: &'a Request,
    ) -> VerifyCall<'a> {
        VerifyCall {
            api_key_id: origin.api_key_id,
            idempotency_key: request.idempotency.as_ref().map(|k| k.key.as_str()),
            request_hash: request
                .idempotency
                .as_ref()
                .map(|k| k.fingerprint.as_slice())
                .unwrap_or_default(),
            attempt_id: Uuid::now_v7(),
            community: &community.key,
            subsegment: request.subsegment.as_deref(),
            keys: &self.keys,
            subjects: &self.subjects,
            window_secs: limits.window.as_secs_f64(),
            backoff: [
                limits.backoff.lookback.as_secs_f64(),
                f64::from(limits.backoff.free_failures),
                limits.backoff.base.as_secs_f64(),
                limits.backoff.max.as_secs_f64(),
            ],
            age_ok: self.age_ok,
            age_gated: community.min_age.is_some(),
            claimed_person: self.claimed_person.as_deref(),
            customer_ref_ix: self.customer_ref_ix.as_deref(),
            periods: &self.periods,
            offer: match (request.offer_id, &self.signer) {
                (Some(offer), Some(signer)) => Some((offer, new_token_id(), signer.kid())),
                _ => None,
            },
            place_secret: &self.place_secret,
            canon_version: CANON_VERSION,
        }
    }
}

/// The answer a `verify_consumer` row gives.
async fn answer(
    ring: &KeyRing,
    call: &VerifyCall<'_>,
    row: verifications::VerifyRow,
) -> Result<Answer<Verification>, VerifyError> {
    if row.replayed && row.request_hash != call.request_hash {
        return Err(VerifyError::KeyReused);
    }
    if let Some(wait) = row.wait {
        return Err(VerifyError::RateLimited {
            retry_after_secs: wait.ceil().max(1.0) as u64,
        });
    }
    let attempt_id = row.attempt_id.unwrap_or(call.attempt_id);
    let outcome = match (row.outcome.as_deref(), row.membership_id) {
        (Some("verified"), Some(membership_id)) => Outcome::Verified {
            attempt_id,
            subsegment: row.subsegment,
            membership_id,
            expires_at: row.expires_at,
        },
        _ => Outcome::NotVerified {
            attempt_id,
            subsegment: row.subsegment,
        },
    };
    let token = match &row.token_outcome {
        Some(token_outcome) => Some(
            granted_or_refused(ring, token_outcome, row.token.as_ref())
                .await
                .map_err(VerifyError::Key)?,
        ),
        None => None,
    };
    Ok(Answer {
        replayed: row.replayed,
        value: Verification { outcome, token },
    })
}
