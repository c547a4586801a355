//! Events that `serve` writes itself (`membership.expiring`), and the event
//! metrics. Every process runs the job; the database makes it safe: each
//! expiring membership is announced by one conditional update of its row
//! (rows another process holds are skipped), so once per expiry.
//!
//! Events older than `events.retention_days` whose deliveries are over are
//! deleted by the same job, with the delivery log as old.
//!
//! The metrics describe the database, not the process: every process
//! reports the same totals (take the maximum across processes, not the sum).

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::EventSettings;
use crate::store::{events, webhooks};

/// Events written, labelled by `type`.
pub const WRITTEN_METRIC: &str = "events_written_total";
/// How far behind schedule the oldest due delivery is, in seconds.
pub const LAG_METRIC: &str = "webhook_outbox_lag_seconds";
/// The age of the oldest event not yet delivered to an endpoint, in seconds.
pub const OLDEST_METRIC: &str = "webhook_oldest_undelivered_event_age_seconds";

/// Memberships announced per statement.
const ANNOUNCE_BATCH: i32 = 500;

/// Every event type, as payloads and filters name them.
pub const TYPES: [&str; 8] = [
    "verification.succeeded",
    "verification.failed",
    "membership.expiring",
    "token.issued",
    "token.redeemed",
    "redemption.reversed",
    "redemption.confirmed",
    "offer.exhausted",
];

/// Writes `membership.expiring` for every membership that now comes within
/// the setting of its end and was not announced for this end yet; how many.
pub async fn announce_expiring(db: &PgPool, settings: &EventSettings) -> Result<u64, sqlx::Error> {
    if settings.membership_expiring_before_days == 0 {
        return Ok(0);
    }
    let before = Duration::from_secs(u64::from(settings.membership_expiring_before_days) * 86_400);
    let mut total = 0;
    loop {
        let written = events::announce_expiring(db, before.as_secs_f64(), ANNOUNCE_BATCH).await?;
        total += u64::try_from(written).unwrap_or(0);
        if written < ANNOUNCE_BATCH {
            return Ok(total);
        }
    }
}

/// Rows deleted per statement by the retention of events.
const PRUNE_BATCH: i64 = 1_000;

/// Deletes events older than `older_than` whose deliveries are over, and
/// delivery-log rows as old; how many of each.
pub async fn prune(db: &PgPool, older_than: Duration) -> Result<(u64, u64), sqlx::Error> {
    let secs = older_than.as_secs_f64();
    let (mut events_gone, mut attempts_gone) = (0, 0);
    loop {
        let gone = events::prune(db, secs, PRUNE_BATCH).await?;
        events_gone += gone;
        if gone < PRUNE_BATCH as u64 {
            break;
        }
    }
    loop {
        let gone = events::prune_attempts(db, secs, PRUNE_BATCH).await?;
        attempts_gone += gone;
        if gone < PRUNE_BATCH as u64 {
            break;
        }
    }
    Ok((events_gone, attempts_gone))
}

/// Counts events written since the last look (by sequence number).
struct Counter {
    last_seq: Option<i64>,
}

impl Counter {
    async fn refresh(&mut self, db: &PgPool) -> Result<(), sqlx::Error> {
        let Some(last) = self.last_seq else {
            // The first look counts nothing: the totals start with the process.
            self.last_seq = Some(events::last_seq(db).await?);
            return Ok(());
        };
        let mut highest = last;
        for (kind, count, max_seq) in events::written_since(db, last).await? {
            metrics::counter!(WRITTEN_METRIC, "type" => kind)
                .increment(u64::try_from(count).unwrap_or(0));
            highest = highest.max(max_seq);
        }
        self.last_seq = Some(highest);
        let (lag, oldest) = webhooks::backlog(db).await?;
        metrics::gauge!(LAG_METRIC).set(lag);
        metrics::gauge!(OLDEST_METRIC).set(oldest);
        Ok(())
    }
}

/// Runs every `job_interval_ms` until `stopping` turns true.
pub async fn run(db: PgPool, settings: EventSettings, mut stopping: watch::Receiver<bool>) {
    let mut counter = Counter { last_seq: None };
    loop {
        match announce_expiring(&db, &settings).await {
            Ok(0) => {}
            Ok(written) => tracing::info!(written, "membership.expiring events written"),
            Err(error) => tracing::warn!(%error, "announcing expiring memberships failed"),
        }
        let retention = Duration::from_secs(u64::from(settings.retention_days) * 86_400);
        match prune(&db, retention).await {
            Ok((0, 0)) => {}
            Ok((events, attempts)) => tracing::info!(events, attempts, "old events pruned"),
            Err(error) => tracing::warn!(%error, "pruning old events failed"),
        }
        if let Err(error) = counter.refresh(&db).await {
            tracing::warn!(%error, "refreshing the event metrics failed");
        }
        tokio::select! {
            () = tokio::time::sleep(settings.job_interval()) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
    }
}
