//! Retention: rows that only record the past are deleted once older than
//! their retention, by a sweep every `serve` process runs now and then.
//!
//! Processes coordinate through the database: a sweep runs only while it
//! holds an advisory lock (another process finding it taken skips its turn),
//! and each statement deletes at most `batch_rows` rows it claimed with
//! `FOR UPDATE SKIP LOCKED`, so no sweep holds long locks or waits on the
//! checkout path. What is kept:
//! - strikes younger than their retention, which is at least the longest
//!   rate-limit window (checked at start-up): they are the limits;
//! - tokens with a redemption, which is a financial record;
//! - the places under the caps: an issued token past its expiry still holds
//!   one, so it is reclaimed (`reclaim_expired_places`) before it may go.
//!
//! Offers that ended (or were archived) longer ago than the token retention
//! forget who held their places: the place keys on their tokens and their
//! per-person counts go, so nothing derived from a person outlives the
//! offer for long.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::RetentionSettings;
use crate::store::prune;

/// The metric counting deleted rows, labelled by `table`.
pub const PRUNED_METRIC: &str = "rows_pruned_total";

/// Offers whose stale tokens are reclaimed per pass of a sweep.
const OFFERS_PER_PASS: i64 = 100;

/// What one sweep deleted (and reclaimed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub strikes: u64,
    pub attempts: u64,
    pub idempotency_keys: u64,
    pub tokens: u64,
    pub places_reclaimed: u64,
    /// Tokens of offers long ended that let go of their place key.
    pub place_keys: u64,
    pub sessions: u64,
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// Repeats a batched delete until a batch comes back short; the total.
macro_rules! in_batches {
    ($batch:expr, $delete:expr) => {{
        let mut total: u64 = 0;
        loop {
            let deleted: u64 = $delete;
            total += deleted;
            if deleted < u64::try_from($batch).unwrap_or(u64::MAX) {
                break total;
            }
            tokio::task::yield_now().await;
        }
    }};
}

/// One sweep, unless another process is sweeping (`Ok(None)`).
pub async fn sweep(
    db: &PgPool,
    retention: &RetentionSettings,
) -> Result<Option<Pruned>, sqlx::Error> {
    let mut conn = db.acquire().await?;
    if !prune::try_lock_sweep(&mut conn).await? {
        return Ok(None);
    }
    let swept = sweep_locked(&mut conn, retention).await;
    let unlocked = prune::unlock_sweep(&mut conn).await;
    if swept.is_err() || unlocked.is_err() {
        // Closing the session is what surely releases its advisory lock.
        let _ = conn.close().await;
    }
    let pruned = swept?;
    unlocked?;
    Ok(Some(pruned))
}

async fn sweep_locked(
    conn: &mut sqlx::PgConnection,
    retention: &RetentionSettings,
) -> Result<Pruned, sqlx::Error> {
    let batch = retention.batch_rows;
    let mut pruned = Pruned::default();
    let strikes = secs(Duration::from_secs(retention.strikes_secs));
    pruned.strikes = in_batches!(batch, prune::strikes(conn, strikes, batch).await?);
    count("verification_strikes", pruned.strikes);

    let tokens = secs(Duration::from_secs(retention.expired_tokens_secs));
    loop {
        let offers = prune::offers_with_stale_tokens(conn, tokens, OFFERS_PER_PASS).await?;
        for offer in &offers {
            pruned.places_reclaimed += prune::reclaim_places(conn, *offer).await?;
        }
        if offers.len() < usize::try_from(OFFERS_PER_PASS).unwrap_or(usize::MAX) {
            break;
        }
    }
    let mut answers = 0;
    pruned.tokens = in_batches!(batch, {
        let (gone, token_answers) = prune::expired_tokens(conn, tokens, batch).await?;
        answers += token_answers;
        gone
    });
    count("tokens", pruned.tokens);

    pruned.place_keys = in_batches!(batch, prune::ended_offer_places(conn, tokens, batch).await?);
    count("place_keys", pruned.place_keys);

    let keys = secs(Duration::from_secs(retention.idempotency_keys_secs));
    pruned.idempotency_keys =
        answers + in_batches!(batch, prune::idempotency_keys(conn, keys, batch).await?);
    count("idempotency_keys", pruned.idempotency_keys);

    let attempts = secs(Duration::from_secs(retention.attempts_secs));
    pruned.attempts = in_batches!(batch, prune::attempts(conn, attempts, batch).await?);
    count("verification_attempts", pruned.attempts);

    let sessions = secs(Duration::from_secs(retention.sessions_secs));
    pruned.sessions = in_batches!(batch, prune::sessions(conn, sessions, batch).await?);
    count("verification_sessions", pruned.sessions);
    Ok(pruned)
}

fn count(table: &'static str, rows: u64) {
    metrics::counter!(PRUNED_METRIC, "table" => table).increment(rows);
}

/// Sweeps every `sweep_interval_secs` until `stopping` turns true.
pub async fn run(db: PgPool, retention: RetentionSettings, mut stopping: watch::Receiver<bool>) {
    let interval = retention.sweep_interval();
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
        match sweep(&db, &retention).await {
            Ok(Some(pruned)) if pruned != Pruned::default() => {
                tracing::info!(?pruned, "retention sweep");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention sweep failed; trying again later"),
        }
    }
}
