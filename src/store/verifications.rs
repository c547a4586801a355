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
                          $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)";

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
    /// The identity components' back-off, in seconds: lookback, free
    /// failures, base, cap.
    pub backoff: [f64; 4],
    pub age_ok: bool,
    /// Whether the community has an age gate: its records must hold a
    /// birth date.
    pub age_gated: bool,
    pub claimed_person: Option<&'a [u8]>,
    pub customer_ref_ix: Option<&'a [u8]>,
    pub periods: &'a Periods,
    /// With an offer: the token to issue, and the key that signs it.
    pub offer: Option<(Uuid, Uuid, &'a str)>,
    /// The secret of the place keys (`BlindIndexer::place_secret`).
    pub place_secret: &'a [u8],
    /// Only records indexed under this canonicalisation version match.
    pub canon_version: i16,
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
        .bind(
            call.keys
                .agreement
                .iter()
                .map(|a| a.map(|k| k.to_vec()))
                .collect::<Vec<_>>(),
        )
        .bind(subject_keys)
        .bind(limits)
        .bind(exact)
        .bind(call.window_secs)
        .bind(call.backoff.to_vec())
        .bind(call.age_ok)
        .bind(call.age_gated)
        .bind(call.claimed_person)
        .bind(call.customer_ref_ix)
        .bind(&call.periods.subsegments)
        .bind(&call.periods.days)
        .bind(call.periods.default_days)
        .bind(offer_id)
        .bind(token_id)
        .bind(kid)
        .bind(call.place_secret)
        .bind(call.canon_version)
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
/// counts and redemptions stay right) but no longer point at them, nor carry
/// their customer references (nor do other attempts under those references);
/// the fingerprints of their keyed requests are
/// blanked (a retry of one is refused as another request); the strikes of
/// their attempts go. `own_subjects`: the rate-limit subjects only this
/// person has (their e-mail, their licence), whose strikes name their
/// attempts too. A name pair is not one: a namesake's erasure must not
/// lift the limits on guessing at another person of that name. A token keeps its place key, which names
/// the person for that offer alone (see `offer_place_key` in the
/// migrations), so an erased person who verifies again cannot go past the
/// offer's per-person limit.
pub async fn erase_people(
    conn: &mut PgConnection,
    person_keys: &[Vec<u8>],
    own_subjects: &[Vec<u8>],
) -> Result<Erased, sqlx::Error> {
    let (memberships, attempts, tokens): (i64, i64, i64) = sqlx::query_as(
        "WITH members AS (
             SELECT id FROM memberships WHERE person_key = ANY ($1)),
         tokens_unlinked AS (
             UPDATE tokens SET membership_id = NULL, person_key = NULL
             WHERE membership_id IN (SELECT id FROM members) OR person_key = ANY ($1)
             RETURNING id),
         attempts_unlinked AS (
             UPDATE verification_attempts
             SET person_key = NULL, membership_id = NULL, customer_ref_ix = NULL
             WHERE person_key = ANY ($1) OR membership_id IN (SELECT id FROM members)
                -- Attempts under the same customer reference are the same
                -- shop customer, whatever identity they claimed.
                OR customer_ref_ix IN (
                    SELECT customer_ref_ix FROM verification_attempts
                    WHERE (person_key = ANY ($1) OR membership_id IN (SELECT id FROM members))
                      AND customer_ref_ix IS NOT NULL)
                -- Attempts that gave the person's own e-mail or licence.
                OR id IN (SELECT attempt_id FROM verification_strikes WHERE subject = ANY ($2))
             RETURNING id),
         keys_blanked AS (
             UPDATE idempotency_keys SET request_hash = '\\x'::bytea
             WHERE attempt_id IN (SELECT id FROM attempts_unlinked)
                OR token_id IN (SELECT id FROM tokens_unlinked)),
         strikes_gone AS (
             DELETE FROM verification_strikes
             WHERE attempt_id IN (SELECT id FROM attempts_unlinked)),
         gone AS (
             DELETE FROM memberships WHERE id IN (SELECT id FROM members) RETURNING id)
         SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM attempts_unlinked),
                (SELECT count(*) FROM tokens_unlinked)",
    )
    .bind(person_keys)
    .bind(own_subjects)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Erased {
        memberships,
        attempts,
        tokens,
    })
}
