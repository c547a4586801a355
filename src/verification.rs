//! Where membership is decided: one consumer's attempt against the records,
//! under rate limits that hold across processes, and erasure.

use std::net::IpAddr;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Invalid;
use crate::domain::blind::{BlindIndexer, LimitSubject};
use crate::domain::community::Community;
use crate::domain::identity::{Identity, RawIdentity};
use crate::store::records;
use crate::store::verifications::{self, Attempt, Checked, Subject};

const CUSTOMER_REF_MAX_CHARS: usize = 200;

/// How many failed attempts each subject may have within the window.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub window: Duration,
    pub per_identity: i32,
    pub per_address: i32,
    pub per_key: i32,
}

impl Limits {
    fn of(&self, subject: LimitSubject) -> i32 {
        match subject {
            LimitSubject::Email | LimitSubject::NamePair | LimitSubject::License => {
                self.per_identity
            }
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
    pub offer_id: Option<Uuid>,
}

/// Who is asking, and from where.
pub struct Origin<'a> {
    pub api_key_id: &'a str,
    pub client_address: IpAddr,
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
    NotVerified { attempt_id: Uuid },
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid request")]
    Invalid(Vec<Invalid>),
    #[error("too many failed attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn person_field(error: Invalid) -> Invalid {
    Invalid::new(format!("person.{}", error.field), error.message)
}

/// Checks the request against the community; the identity it carries.
fn check(community: &Community, request: &Request) -> Result<Identity, Vec<Invalid>> {
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

/// Verifies one consumer. Every attempt is recorded; failures count
/// against the limits of each identity component, the client address and
/// the API key.
pub async fn verify(
    db: &sqlx::PgPool,
    indexer: &BlindIndexer,
    limits: &Limits,
    community: &Community,
    origin: &Origin<'_>,
    request: &Request,
) -> Result<Outcome, VerifyError> {
    let identity = check(community, request).map_err(VerifyError::Invalid)?;
    let attempt_id = Uuid::now_v7();

    let mut subjects: Vec<(LimitSubject, [u8; 16])> = indexer.identity_subjects(&identity);
    let address = origin.client_address.to_canonical().to_string();
    subjects.push((
        LimitSubject::ClientAddress,
        indexer.index("limit:address", &[&address]),
    ));
    subjects.push((
        LimitSubject::ApiKey,
        indexer.index("limit:api-key", &[origin.api_key_id]),
    ));
    let struck: Vec<Subject> = subjects
        .iter()
        .map(|(kind, subject)| Subject {
            key: subject.to_vec(),
            limit: limits.of(*kind),
            exact: kind.is_identity(),
        })
        .collect();
    let window_secs = limits.window.as_secs_f64();
    let customer_ref_ix = request
        .customer_ref
        .as_deref()
        .map(|r| indexer.index("customer-ref", &[r]).to_vec());
    let keys = indexer.match_keys(&identity);
    // One transaction: the identity subjects stay locked from the check to
    // the recorded outcome, so their limits hold exactly.
    let mut tx = db.begin().await?;
    let checked = verifications::check_and_match(
        &mut tx,
        &struck,
        window_secs,
        &community.key,
        request.subsegment.as_deref(),
        &keys,
    )
    .await?;
    let matched = match checked {
        Checked::Matched(record) => record,
        Checked::Limited(wait) => {
            tx.rollback().await?;
            return Err(VerifyError::RateLimited {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            });
        }
    };
    let now = OffsetDateTime::now_utc();
    let admitted = matched.filter(|_| community.admits_age(identity.birth_date, now.date()));

    let claimed_person = indexer.person_key(&identity).map(|k| k.to_vec());
    let Some(record) = admitted else {
        let attempt = Attempt {
            id: attempt_id,
            community: &community.key,
            subsegment: request.subsegment.as_deref(),
            person_key: claimed_person.as_deref(),
            offer_id: request.offer_id,
            customer_ref_ix: customer_ref_ix.as_deref(),
            api_key_id: origin.api_key_id,
        };
        verifications::record_failure(&mut tx, &attempt, &struck, window_secs).await?;
        tx.commit().await?;
        return Ok(Outcome::NotVerified { attempt_id });
    };

    let expires_at =
        community.membership_expiry(record.subsegment.as_deref(), record.valid_until, now);
    let attempt = Attempt {
        id: attempt_id,
        community: &community.key,
        subsegment: record.subsegment.as_deref(),
        person_key: Some(&record.person_key),
        offer_id: request.offer_id,
        customer_ref_ix: customer_ref_ix.as_deref(),
        api_key_id: origin.api_key_id,
    };
    let membership =
        verifications::record_success(&mut *tx, &attempt, record.id, expires_at).await?;
    tx.commit().await?;
    Ok(Outcome::Verified {
        attempt_id,
        subsegment: record.subsegment,
        membership_id: membership.id,
        expires_at: membership.expires_at,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub memberships_removed: i64,
    pub attempts_unlinked: i64,
    pub tokens_unlinked: i64,
}

/// Forgets a person named by identity fields: every person key the fields
/// or their records stand for.
pub async fn erase(
    db: &sqlx::PgPool,
    indexer: &BlindIndexer,
    person: &RawIdentity,
) -> Result<Erasure, VerifyError> {
    let identity = Identity::parse(person)
        .map_err(|errors| VerifyError::Invalid(errors.into_iter().map(person_field).collect()))?;
    if !identity.is_matchable() {
        return Err(VerifyError::Invalid(vec![Invalid::new(
            "person",
            "needs an email, or given_name, family_name and birth_date, or license_number and family_name",
        )]));
    }
    let mut person_keys: Vec<Vec<u8>> = indexer
        .person_keys(&identity)
        .into_iter()
        .map(|k| k.to_vec())
        .collect();
    let mut tx = db.begin().await?;
    for key in records::person_keys_matching(&mut *tx, &indexer.match_keys(&identity)).await? {
        if !person_keys.contains(&key) {
            person_keys.push(key);
        }
    }
    let erased = verifications::erase_people(&mut tx, &person_keys).await?;
    tx.commit().await?;
    Ok(Erasure {
        memberships_removed: erased.memberships,
        attempts_unlinked: erased.attempts,
        tokens_unlinked: erased.tokens,
    })
}
