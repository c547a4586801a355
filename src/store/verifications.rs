//! Attempts, memberships and the rate-limit strikes of verification.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

/// Strikes an attempt against its rate-limit subjects (one statement,
/// atomic across processes). `Some(seconds)` when a subject is at its limit.
pub async fn strike(
    db: impl PgExecutor<'_>,
    subjects: &[(Vec<u8>, i32)],
    window_secs: f64,
    attempt_id: Uuid,
) -> Result<Option<f64>, sqlx::Error> {
    let (keys, limits): (Vec<&[u8]>, Vec<i32>) =
        subjects.iter().map(|(k, l)| (k.as_slice(), *l)).unzip();
    sqlx::query_scalar("SELECT strike_verification($1, $2, make_interval(secs => $3), $4)")
        .bind(keys)
        .bind(limits)
        .bind(window_secs)
        .bind(attempt_id)
        .fetch_one(db)
        .await
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

/// Records a failed attempt; its strikes stay and count.
pub async fn record_failure(
    db: impl PgExecutor<'_>,
    attempt: &Attempt<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO verification_attempts
             (id, community, subsegment, outcome, person_key, offer_id, customer_ref_ix, api_key_id)
         VALUES ($1, $2, $3, 'not_verified', $4, $5, $6, $7)",
    )
    .bind(attempt.id)
    .bind(attempt.community)
    .bind(attempt.subsegment)
    .bind(attempt.person_key)
    .bind(attempt.offer_id)
    .bind(attempt.customer_ref_ix)
    .bind(attempt.api_key_id)
    .execute(db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub id: Uuid,
    pub expires_at: Option<OffsetDateTime>,
}

/// Records a success in one statement: creates or extends the membership,
/// records the attempt, and takes back the attempt's strikes.
pub async fn record_success(
    db: impl PgExecutor<'_>,
    attempt: &Attempt<'_>,
    record_id: i64,
    expires_at: Option<OffsetDateTime>,
) -> Result<Membership, sqlx::Error> {
    sqlx::query_as(
        "WITH membership AS (
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
             SELECT $1, $2, $3, 'verified', $4, membership.id, $5, $6, $7 FROM membership),
         refund AS (
             DELETE FROM verification_strikes WHERE attempt_id = $1)
         SELECT id, expires_at FROM membership",
    )
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
}

/// Forgets people: their memberships go, their attempts stay (so counts
/// stay right) but no longer point at them.
pub async fn erase_people(
    conn: &mut PgConnection,
    person_keys: &[Vec<u8>],
) -> Result<Erased, sqlx::Error> {
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
    })
}
