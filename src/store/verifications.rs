//! Attempts, memberships and the rate-limit strikes of verification.

use sqlx::{PgConnection, PgExecutor};
use time::OffsetDateTime;
use uuid::Uuid;

use super::tokens::{TokenRow, token_row};
use crate::domain::blind::MatchKeys;

/// A rate-limit subject and how many failures it may have in the window.
/// Exact subjects are locked until the attempt's transaction ends; the
/// others may overshoot by the attempts in flight on them.
pub struct Subject {
    pub key: Vec<u8>,
    pub limit: i32,
    pub exact: bool,
}

/// One call does the whole verification: see `verify_consumer` in the
/// migrations.
pub const VERIFY: &str = "SELECT replayed, request_hash, wait, outcome, attempt_id, subsegment,
            membership_id, expires_at, token_outcome, token_id, token_offer_id,
            token_membership_id, token_community, token_kid, token_issued_at, token_expires_at
     FROM verify_consumer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
                          $16, $17, $18, $19, $20, $21, $22)";

/// How long a success lasts, per the community: (sub-status, days) pairs
/// and the default; `None` days: no re-verification period.
pub struct Periods {
    pub subsegments: Vec<String>,
    pub days: Vec<Option<i32>>,
    pub default_days: Option<i32>,
}

pub struct VerifyCall<'a> {
    pub api_key_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a [u8],
    pub attempt_id: Uuid,
    pub community: &'a str,
    pub subsegment: Option<&'a str>,
    pub keys: &'a MatchKeys,
    pub subjects: &'a [Subject],
    pub window_secs: f64,
    pub age_ok: bool,
    pub claimed_person: Option<&'a [u8]>,
    pub customer_ref_ix: Option<&'a [u8]>,
    pub periods: &'a Periods,
    /// With an offer: the token to issue, and the key that signs it.
    pub offer: Option<(Uuid, Uuid, &'a str)>,
}

pub struct VerifyRow {
    pub replayed: bool,
    pub request_hash: Vec<u8>,
    /// Set when a limit refused the attempt: retry after this many seconds.
    pub wait: Option<f64>,
    /// `verified` or `not_verified`.
    pub outcome: Option<String>,
    pub attempt_id: Option<Uuid>,
    pub subsegment: Option<String>,
    pub membership_id: Option<Uuid>,
    pub expires_at: Option<OffsetDateTime>,
    /// With an offer: `issued` or why not (see `store::tokens::IssueRow`).
    pub token_outcome: Option<String>,
    pub token: Option<TokenRow>,
}

pub async fn verify(
    db: impl PgExecutor<'_>,
    call: &VerifyCall<'_>,
) -> Result<VerifyRow, sqlx::Error> {
    use sqlx::Row;
    let subject_keys: Vec<&[u8]> = call.subjects.iter().map(|s| s.key.as_slice()).collect();
    let limits: Vec<i32> = call.subjects.iter().map(|s| s.limit).collect();
    let exact: Vec<bool> = call.subjects.iter().map(|s| s.exact).collect();
    let (offer_id, token_id, kid) = match call.offer {
        Some((offer, token, kid)) => (Some(offer), Some(token), Some(kid)),
        None => (None, None, None),
    };
    let row = sqlx::query(VERIFY)
        .bind(call.api_key_id)
        .bind(call.idempotency_key)
        .bind(call.request_hash)
        .bind(call.attempt_id)
        .bind(call.community)
        .bind(call.subsegment)
        .bind(call.keys.email.map(|k| k.to_vec()))
        .bind(call.keys.name_dob.map(|k| k.to_vec()))
        .bind(call.keys.license.map(|k| k.to_vec()))
        .bind(subject_keys)
        .bind(limits)
        .bind(exact)
        .bind(call.window_secs)
        .bind(call.age_ok)
        .bind(call.claimed_person)
        .bind(call.customer_ref_ix)
        .bind(&call.periods.subsegments)
        .bind(&call.periods.days)
        .bind(call.periods.default_days)
        .bind(offer_id)
        .bind(token_id)
        .bind(kid)
        .fetch_one(db)
        .await?;
    Ok(VerifyRow {
        replayed: row.try_get("replayed")?,
        request_hash: row.try_get("request_hash")?,
        wait: row.try_get("wait")?,
        outcome: row.try_get("outcome")?,
        attempt_id: row.try_get("attempt_id")?,
        subsegment: row.try_get("subsegment")?,
        membership_id: row.try_get("membership_id")?,
        expires_at: row.try_get("expires_at")?,
        token_outcome: row.try_get("token_outcome")?,
        token: token_row(
            row.try_get("token_id")?,
            row.try_get("token_offer_id")?,
            row.try_get("token_membership_id")?,
            row.try_get("token_community")?,
            row.try_get("token_kid")?,
            row.try_get("token_issued_at")?,
            row.try_get("token_expires_at")?,
        ),
    })
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
    sqlx::query("DELETE FROM offer_person_places WHERE person_key = ANY ($1)")
        .bind(person_keys)
        .execute(&mut *conn)
        .await?;
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
