//! Deleting rows that only record the past, a bounded batch per statement.
//! Each batch claims its rows with `FOR UPDATE SKIP LOCKED`, so sweeps of
//! several processes (and the checkout path) never wait on one another.

use sqlx::{PgConnection, Row};
use uuid::Uuid;

/// The advisory lock a sweep holds, so one process sweeps at a time.
const SWEEP_LOCK: i64 = 0x0ffe_6a7e_5eed_0001;

pub async fn try_lock_sweep(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SWEEP_LOCK)
        .fetch_one(conn)
        .await
}

pub async fn unlock_sweep(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SWEEP_LOCK)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Strikes older than `older_than_secs`.
pub async fn strikes(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM verification_strikes WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM verification_strikes
             WHERE struck_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(older_than_secs)
    .bind(batch)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
}

/// Verification attempts older than `older_than_secs`.
pub async fn attempts(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM verification_attempts WHERE id = ANY (ARRAY(
             SELECT id FROM verification_attempts
             WHERE attempted_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(older_than_secs)
    .bind(batch)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
}

/// Hosted verification sessions whose link expired longer ago than
/// `older_than_secs`.
pub async fn sessions(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM verification_sessions WHERE id = ANY (ARRAY(
             SELECT id FROM verification_sessions
             WHERE expires_at < now() - make_interval(secs => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(older_than_secs)
    .bind(batch)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
}

/// Idempotency keys (with the answers they hold) older than
/// `older_than_secs`.
pub async fn idempotency_keys(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_keys AS k
         USING (SELECT api_key_id, key FROM idempotency_keys
                WHERE created_at < now() - make_interval(secs => $1)
                LIMIT $2 FOR UPDATE SKIP LOCKED) AS old
         WHERE k.api_key_id = old.api_key_id AND k.key = old.key",
    )
    .bind(older_than_secs)
    .bind(batch)
    .execute(conn)
    .await
    .map(|done| done.rows_affected())
}

/// Offers holding issued tokens that expired more than `older_than_secs`
/// ago: their places must be reclaimed before the tokens can go.
pub async fn offers_with_stale_tokens(
    conn: &mut PgConnection,
    older_than_secs: f64,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT offer_id FROM tokens
         WHERE state = 'issued' AND expires_at < now() - make_interval(secs => $1)
         LIMIT $2",
    )
    .bind(older_than_secs)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks the offer's expired issued tokens `expired` and gives their places
/// back, as issuance does at a full cap (`reclaim_expired_places`).
pub async fn reclaim_places(conn: &mut PgConnection, offer: Uuid) -> Result<u64, sqlx::Error> {
    let freed: i32 = sqlx::query_scalar("SELECT reclaim_expired_places($1, NULL)")
        .bind(offer)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(freed).unwrap_or_default())
}

/// Deletes tokens that expired unused (already reclaimed) or were revoked,
/// whose expiry is older than `older_than_secs`, with the idempotent
/// answers that name them. Tokens with a redemption (a financial record,
/// reversed or not) are kept with it. Returns (tokens, answers).
pub async fn expired_tokens(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let row = sqlx::query(
        "WITH doomed AS (
             SELECT t.id FROM tokens AS t
             WHERE t.state IN ('expired', 'revoked')
               AND t.expires_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM redemptions AS r WHERE r.token_id = t.id)
             LIMIT $2 FOR UPDATE SKIP LOCKED),
         answers AS (
             DELETE FROM idempotency_keys AS k USING doomed
             WHERE k.token_id = doomed.id RETURNING 1),
         gone AS (
             DELETE FROM tokens AS t USING doomed WHERE t.id = doomed.id RETURNING 1)
         SELECT (SELECT count(*) FROM gone) AS tokens, (SELECT count(*) FROM answers) AS answers",
    )
    .bind(older_than_secs)
    .bind(batch)
    .fetch_one(conn)
    .await?;
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        let n: i64 = row.try_get(name)?;
        Ok(u64::try_from(n).unwrap_or_default())
    };
    Ok((count("tokens")?, count("answers")?))
}

/// Forgets the per-person places of offers that ended, or were archived,
/// more than `older_than_secs` ago: the place keys on a batch of their
/// tokens, and their per-person counts. Only an offer that may still issue
/// needs to know a person again (see `offer_place_key` in the migrations).
/// Returns how many tokens let go of their place key.
pub async fn ended_offer_places(
    conn: &mut PgConnection,
    older_than_secs: f64,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let forgotten: i64 = sqlx::query_scalar(
        "WITH ended AS (
             SELECT id FROM offers
             WHERE ends_at < now() - make_interval(secs => $1)
                OR (status = 'archived' AND updated_at < now() - make_interval(secs => $1))),
         counts AS (
             DELETE FROM offer_person_places WHERE offer_id IN (SELECT id FROM ended)),
         forgotten AS (
             UPDATE tokens SET place_key = NULL WHERE id = ANY (ARRAY(
                 SELECT id FROM tokens
                 WHERE offer_id IN (SELECT id FROM ended) AND place_key IS NOT NULL
                 LIMIT $2 FOR UPDATE SKIP LOCKED))
             RETURNING 1)
         SELECT count(*) FROM forgotten",
    )
    .bind(older_than_secs)
    .bind(batch)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(forgotten).unwrap_or_default())
}
