//! The events outbox: written by triggers in the migrations, read here.

use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Event {
    pub id: Uuid,
    pub tx: i64,
    pub seq: i64,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub occurred_at: OffsetDateTime,
    pub partner_id: Option<Uuid>,
    pub data: serde_json::Value,
}

/// A position in the outbox: events are read in (transaction, sequence)
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub tx: i64,
    pub seq: i64,
}

pub struct EventFilter<'a> {
    /// Only this partner's events (a partner's key).
    pub partner_id: Option<Uuid>,
    pub kind: Option<&'a str>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub after: Option<Position>,
    pub limit: i64,
}

const COLUMNS: &str = "id, tx::text::bigint AS tx, seq, type, occurred_at, partner_id, data";

/// Events after a position, oldest first, among those written before the
/// oldest transaction of this database still in flight: an event being
/// written now cannot appear behind a position a reader already passed.
/// (Transaction ids are shared by every database of the server; those
/// known to belong to another database hold nothing back.)
pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &EventFilter<'_>,
) -> Result<Vec<Event>, sqlx::Error> {
    let sql = format!(
        "WITH snap AS (SELECT pg_current_snapshot() AS s),
         elsewhere AS (
             SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
             WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()),
         horizon AS (
             SELECT coalesce(
                 (SELECT x FROM snap, pg_snapshot_xip(snap.s) AS x
                  WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid FROM elsewhere)
                  ORDER BY x LIMIT 1),
                 (SELECT pg_snapshot_xmax(s) FROM snap)) AS tx)
         SELECT {COLUMNS} FROM events
         WHERE tx < (SELECT tx FROM horizon)
           AND ($1::bigint IS NULL OR (tx, seq) > ($1::text::xid8, $2::bigint))
           AND ($3::uuid IS NULL OR partner_id = $3)
           AND ($4::text IS NULL OR type = $4)
           AND ($5::timestamptz IS NULL OR occurred_at >= $5)
           AND ($6::timestamptz IS NULL OR occurred_at < $6)
         ORDER BY tx, seq
         LIMIT $7"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(filter.after.map(|p| p.tx))
        .bind(filter.after.map(|p| p.seq))
        .bind(filter.partner_id)
        .bind(filter.kind)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.limit)
        .fetch_all(db)
        .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Event>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM events WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Writes `membership.expiring` for memberships ending within `before`,
/// at most `limit`; how many it wrote.
pub async fn announce_expiring(
    db: impl PgExecutor<'_>,
    before_secs: f64,
    limit: i32,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT announce_expiring_memberships(make_interval(secs => $1), $2)")
        .bind(before_secs)
        .bind(limit)
        .fetch_one(db)
        .await
}

/// Events written since `after_seq`, counted by type, and the highest
/// sequence number seen.
pub async fn written_since(
    db: impl PgExecutor<'_>,
    after_seq: i64,
) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT type, count(*), max(seq) FROM events WHERE seq > $1 GROUP BY type")
        .bind(after_seq)
        .fetch_all(db)
        .await
}

/// The highest sequence number written so far.
pub async fn last_seq(db: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
        .fetch_one(db)
        .await
}

/// Deletes up to `limit` events older than `older_than_secs` whose
/// deliveries are all over (their messages go with them); how many.
pub async fn prune(
    db: impl PgExecutor<'_>,
    older_than_secs: f64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "WITH old AS (
             SELECT e.id FROM events AS e
             WHERE e.occurred_at < now() - make_interval(secs => $1)
               AND NOT EXISTS (SELECT 1 FROM webhook_messages AS m
                               WHERE m.event_id = e.id AND m.state = 'pending')
             ORDER BY e.occurred_at LIMIT $2
             FOR UPDATE SKIP LOCKED)
         DELETE FROM events WHERE id IN (SELECT id FROM old)",
    )
    .bind(older_than_secs)
    .bind(limit)
    .execute(db)
    .await?
    .rows_affected())
}

/// Deletes up to `limit` delivery-log rows older than `older_than_secs`.
pub async fn prune_attempts(
    db: impl PgExecutor<'_>,
    older_than_secs: f64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM webhook_attempts WHERE id IN (
             SELECT id FROM webhook_attempts
             WHERE attempted_at < now() - make_interval(secs => $1)
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than_secs)
    .bind(limit)
    .execute(db)
    .await?
    .rows_affected())
}
