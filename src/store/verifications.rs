//! Attempts, memberships and the rate-limit strikes of verification.

use sqlx::{PgConnection, PgExecutor};

use crate::domain::blind::MatchKeys;
use time::OffsetDateTime;
use uuid::Uuid;

/// A rate-limit subject and how many failures it may have in the window.
/// Exact subjects are locked until the attempt's transaction ends; the
/// others may overshoot by the attempts in flight on them.
pub struct Subject {
    pub key: Vec<u8>,
    pub limit: i32,
    pub exact: bool,
}

/// The record a verification rests on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MatchedRecord {
    pub id: i64,
    pub subsegment: Option<String>,
    pub valid_until: Option<OffsetDateTime>,
    pub person_key: Vec<u8>,
}

pub enum Checked {
    /// A subject is at its limit: retry after this many seconds.
    Limited(f64),
    Matched(Option<MatchedRecord>),
}

/// In one round trip: checks the rate limits (locking the exact subjects
/// until the transaction ends) and, when they allow it, finds a live record
/// of the community (and sub-status, if asked) that at least one match rule
/// hits and no given field contradicts.
pub const CHECK_AND_MATCH: &str = "SELECT limits.wait, m.id, m.subsegment, m.valid_until, m.person_key
     FROM (SELECT check_verification_limits($6, $7, $8, make_interval(secs => $9)) AS wait) AS limits
     LEFT JOIN LATERAL (
         SELECT id, subsegment, valid_until, person_key
         FROM verification_records
         WHERE community = $1
           AND retired_at IS NULL
           AND (valid_from IS NULL OR valid_from <= now())
           AND (valid_until IS NULL OR valid_until > now())
           AND ($2::text IS NULL OR subsegment = $2)
           AND (email_ix = $3 OR name_dob_ix = $4 OR license_ix = $5)
           AND ($3::bytea IS NULL OR email_ix IS NULL OR email_ix = $3)
           AND ($4::bytea IS NULL OR name_dob_ix IS NULL OR name_dob_ix = $4)
           AND ($5::bytea IS NULL OR license_ix IS NULL OR license_ix = $5)
         ORDER BY valid_until DESC NULLS FIRST
         LIMIT 1
     ) AS m ON limits.wait IS NULL";

type CheckedRow = (
    Option<f64>,
    Option<i64>,
    Option<String>,
    Option<OffsetDateTime>,
    Option<Vec<u8>>,
);

/// Run it first in the attempt's transaction.
pub async fn check_and_match(
    conn: &mut PgConnection,
    subjects: &[Subject],
    window_secs: f64,
    community: &str,
    subsegment: Option<&str>,
    keys: &MatchKeys,
) -> Result<Checked, sqlx::Error> {
    let subject_keys: Vec<&[u8]> = subjects.iter().map(|s| s.key.as_slice()).collect();
    let limits: Vec<i32> = subjects.iter().map(|s| s.limit).collect();
    let exact: Vec<bool> = subjects.iter().map(|s| s.exact).collect();
    let (wait, id, record_subsegment, valid_until, person_key): CheckedRow =
        sqlx::query_as(CHECK_AND_MATCH)
            .bind(community)
            .bind(subsegment)
            .bind(keys.email.map(|k| k.to_vec()))
            .bind(keys.name_dob.map(|k| k.to_vec()))
            .bind(keys.license.map(|k| k.to_vec()))
            .bind(subject_keys)
            .bind(limits)
            .bind(exact)
            .bind(window_secs)
            .fetch_one(conn)
            .await?;
    if let Some(wait) = wait {
        return Ok(Checked::Limited(wait));
    }
    Ok(Checked::Matched(match (id, person_key) {
        (Some(id), Some(person_key)) => Some(MatchedRecord {
            id,
            subsegment: record_subsegment,
            valid_until,
            person_key,
        }),
        _ => None,
    }))
}

pub struct Attempt<'a> {
    pub id: Uuid,
    pub community: &'a str,
    pub subsegment: Option<&'a str>,
    pub person_key: Option<&'a [u8]>,
    pub offer_id: Option<Uuid>,
    pub customer_ref_ix: Option<&'a [u8]>,
    pub api_key_id: &'a str,
}

/// Records a failed attempt and strikes it against each subject, pruning
/// the subjects' strikes that have left the window.
pub async fn record_failure(
    conn: &mut PgConnection,
    attempt: &Attempt<'_>,
    subjects: &[Subject],
    window_secs: f64,
) -> Result<(), sqlx::Error> {
    let keys: Vec<&[u8]> = subjects.iter().map(|s| s.key.as_slice()).collect();
    sqlx::query(
        "WITH attempt AS (
             INSERT INTO verification_attempts
                 (id, community, subsegment, outcome, person_key, offer_id, customer_ref_ix, api_key_id)
             VALUES ($1, $2, $3, 'not_verified', $4, $5, $6, $7)),
         pruned AS (
             DELETE FROM verification_strikes
             WHERE subject = ANY ($8) AND struck_at <= now() - make_interval(secs => $9))
         INSERT INTO verification_strikes (subject, attempt_id)
         SELECT subject, $1 FROM unnest($8::bytea[]) AS subject",
    )
    .bind(attempt.id)
    .bind(attempt.community)
    .bind(attempt.subsegment)
    .bind(attempt.person_key)
    .bind(attempt.offer_id)
    .bind(attempt.customer_ref_ix)
    .bind(attempt.api_key_id)
    .bind(keys)
    .bind(window_secs)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub id: Uuid,
    pub expires_at: Option<OffsetDateTime>,
}

pub const RECORD_SUCCESS: &str = "WITH membership AS (
             INSERT INTO memberships (person_key, community, subsegment, record_id, verified_at, expires_at)
             VALUES ($4, $2, $3, $8, now(), $9)
             ON CONFLICT (person_key, community) DO UPDATE SET
                 subsegment = EXCLUDED.subsegment,
                 record_id = EXCLUDED.record_id,
                 verified_at = EXCLUDED.verified_at,
                 expires_at = EXCLUDED.expires_at
             RETURNING id, expires_at),
         attempt AS (
             INSERT INTO verification_attempts
                 (id, community, subsegment, outcome, person_key, membership_id, offer_id,
                  customer_ref_ix, api_key_id)
             SELECT $1, $2, $3, 'verified', $4, membership.id, $5, $6, $7 FROM membership)
         SELECT id, expires_at FROM membership";

/// Records a success in one statement: creates or extends the membership
/// and records the attempt.
pub async fn record_success(
    db: impl PgExecutor<'_>,
    attempt: &Attempt<'_>,
    record_id: i64,
    expires_at: Option<OffsetDateTime>,
) -> Result<Membership, sqlx::Error> {
    sqlx::query_as(RECORD_SUCCESS)
        .bind(attempt.id)
        .bind(attempt.community)
        .bind(attempt.subsegment)
        .bind(attempt.person_key)
        .bind(attempt.offer_id)
        .bind(attempt.customer_ref_ix)
        .bind(attempt.api_key_id)
        .bind(record_id)
        .bind(expires_at)
        .fetch_one(db)
        .await
}

pub struct Erased {
    pub memberships: i64,
    pub attempts: i64,
    pub tokens: i64,
}

/// Forgets people: their memberships go; their attempts and tokens stay (so
/// counts and redemptions stay right) but no longer point at them.
pub async fn erase_people(
    conn: &mut PgConnection,
    person_keys: &[Vec<u8>],
) -> Result<Erased, sqlx::Error> {
    // Tokens first: deleting the memberships would only null their link.
    let tokens = sqlx::query(
        "UPDATE tokens SET person_key = NULL, membership_id = NULL WHERE person_key = ANY ($1)",
    )
    .bind(person_keys)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let (memberships, attempts): (i64, i64) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM memberships WHERE person_key = ANY ($1) RETURNING id),
         unlinked AS (
             UPDATE verification_attempts SET person_key = NULL, membership_id = NULL
             WHERE person_key = ANY ($1) RETURNING id)
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM unlinked)",
    )
    .bind(person_keys)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Erased {
        memberships,
        attempts,
        tokens: i64::try_from(tokens).unwrap_or(i64::MAX),
    })
}
