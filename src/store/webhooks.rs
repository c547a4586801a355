//! Webhook endpoints, their queued deliveries (messages) and the attempt log.

use sqlx::{PgExecutor, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub id: Uuid,
    pub partner_id: Option<Uuid>,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub previous_until: Option<OffsetDateTime>,
    pub failing_since: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
    pub disabled_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const ENDPOINT: &str = "id, partner_id, url, description, event_types, enabled, previous_until, \
                        failing_since, disabled_at, disabled_reason, created_at, updated_at";

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub partner_id: Option<Uuid>,
    pub url: &'a str,
    pub description: &'a str,
    pub event_types: &'a [String],
    pub enabled: bool,
    pub sealed_secret: &'a [u8],
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    new: &NewEndpoint<'_>,
) -> Result<Endpoint, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_endpoints
             (id, partner_id, url, description, event_types, enabled, sealed_secret)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT}"
    )))
    .bind(new.id)
    .bind(new.partner_id)
    .bind(new.url)
    .bind(new.description)
    .bind(new.event_types)
    .bind(new.enabled)
    .bind(new.sealed_secret)
    .fetch_one(db)
    .await
}

/// Endpoints, oldest first; a partner's only when `partner_id` is set.
pub async fn list(
    db: impl PgExecutor<'_>,
    partner_id: Option<Uuid>,
) -> Result<Vec<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints
         WHERE $1::uuid IS NULL OR partner_id = $1 ORDER BY created_at, id"
    )))
    .bind(partner_id)
    .fetch_all(db)
    .await
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ENDPOINT} FROM webhook_endpoints WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await
}

pub struct EndpointChange<'a> {
    pub url: Option<&'a str>,
    pub description: Option<&'a str>,
    pub event_types: Option<&'a [String]>,
    pub enabled: Option<bool>,
}

/// Changes an endpoint. Enabling one clears why it was disabled and its
/// run of failures.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    change: &EndpointChange<'_>,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET
             url = coalesce($2, url),
             description = coalesce($3, description),
             event_types = coalesce($4, event_types),
             enabled = coalesce($5, enabled),
             disabled_at = CASE WHEN $5 THEN NULL
                                WHEN $5 = false AND enabled THEN now()
                                ELSE disabled_at END,
             disabled_reason = CASE WHEN $5 THEN NULL
                                    WHEN $5 = false AND enabled THEN 'disabled by a caller'
                                    ELSE disabled_reason END,
             failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
             updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT}"
    )))
    .bind(id)
    .bind(change.url)
    .bind(change.description)
    .bind(change.event_types)
    .bind(change.enabled)
    .fetch_optional(db)
    .await
}

pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?
        .rows_affected()
        == 1)
}

/// Replaces the secret; the current one becomes the previous, signing
/// until `overlap_secs` from now.
pub async fn rotate(
    db: impl PgExecutor<'_>,
    id: Uuid,
    sealed_secret: &[u8],
    overlap_secs: f64,
) -> Result<Option<Endpoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_endpoints SET
             sealed_previous_secret = sealed_secret,
             previous_until = now() + make_interval(secs => $3),
             sealed_secret = $2,
             updated_at = now()
         WHERE id = $1 RETURNING {ENDPOINT}"
    )))
    .bind(id)
    .bind(sealed_secret)
    .bind(overlap_secs)
    .fetch_optional(db)
    .await
}

/// Fails the queued deliveries of an endpoint that is disabled (those in
/// flight record their own outcome): nothing waits on a disabled endpoint,
/// and `recover` queues them again.
pub async fn fail_queued_of_disabled(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_messages AS m SET state = 'failed', finished_at = now()
         FROM webhook_endpoints AS e
         WHERE e.id = $1 AND NOT e.enabled AND m.endpoint_id = e.id
           AND m.state = 'pending' AND (m.claim IS NULL OR m.locked_until < now())",
    )
    .bind(id)
    .execute(db)
    .await?
    .rows_affected())
}

/// A claimed delivery: one event for one endpoint, with what signing and
/// sending it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempts: i32,
    pub round_start: i32,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub occurred_at: OffsetDateTime,
    pub data: serde_json::Value,
    pub url: String,
    pub sealed_secret: Vec<u8>,
    /// The previous secret, while it still signs.
    pub sealed_previous_secret: Option<Vec<u8>>,
}

pub struct ClaimCall {
    pub claim: Uuid,
    pub limit: i64,
    pub lease_secs: f64,
    pub per_endpoint: i64,
}

/// Claims due deliveries: at most `limit`, and no more per endpoint than
/// makes `per_endpoint` in flight. Rows another process is claiming are
/// skipped, not waited for; a claim is a lease (`locked_until`), so the
/// deliveries of a process that died are due again once it lapses.
pub async fn claim(db: impl PgExecutor<'_>, call: &ClaimCall) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH candidates AS (
             SELECT m.event_id, m.endpoint_id, m.next_attempt_at
             FROM webhook_messages AS m
             JOIN webhook_endpoints AS e ON e.id = m.endpoint_id
             WHERE m.state = 'pending' AND m.next_attempt_at <= now()
               AND m.locked_until < now() AND e.enabled
             ORDER BY m.next_attempt_at
             LIMIT $1
             FOR UPDATE OF m SKIP LOCKED),
         ranked AS (
             SELECT c.event_id, c.endpoint_id,
                    row_number() OVER (PARTITION BY c.endpoint_id
                                       ORDER BY c.next_attempt_at) AS n
             FROM candidates AS c),
         busy AS (
             SELECT m.endpoint_id, count(*) AS n FROM webhook_messages AS m
             WHERE m.endpoint_id IN (SELECT endpoint_id FROM candidates)
               AND m.state = 'pending' AND m.locked_until >= now()
             GROUP BY m.endpoint_id)
         UPDATE webhook_messages AS m
         SET locked_until = now() + make_interval(secs => $2), claim = $3,
             attempts = m.attempts + 1
         FROM ranked AS r
         JOIN webhook_endpoints AS e ON e.id = r.endpoint_id
         JOIN events AS ev ON ev.id = r.event_id
         LEFT JOIN busy AS b ON b.endpoint_id = r.endpoint_id
         WHERE m.event_id = r.event_id AND m.endpoint_id = r.endpoint_id
           AND r.n + coalesce(b.n, 0) <= $4
         RETURNING m.event_id, m.endpoint_id, m.attempts, m.round_start, ev.type,
                   ev.occurred_at, ev.data, e.url, e.sealed_secret,
                   CASE WHEN e.previous_until > now() THEN e.sealed_previous_secret END
                       AS sealed_previous_secret",
    )
    .bind(call.limit)
    .bind(call.lease_secs)
    .bind(call.claim)
    .bind(call.per_endpoint)
    .fetch_all(db)
    .await
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Failed; retried after `retry_in_secs`, or given up when None.
    Failed {
        retry_in_secs: Option<f64>,
    },
    /// 410 Gone: the receiver asks not to be called again.
    Gone,
}

pub struct AttemptRecord<'a> {
    pub claim: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempt: i32,
    pub outcome: Outcome,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub response_excerpt: Option<&'a str>,
    pub error: Option<&'a str>,
    pub disable_after_secs: f64,
}

/// Records an attempt: the log row, the message's next state and the
/// endpoint's run of failures, in one transaction. A claim that lapsed and
/// was taken over changes nothing (false).
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    r: &AttemptRecord<'_>,
) -> Result<bool, sqlx::Error> {
    let (state, retry_in) = match r.outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::Failed {
            retry_in_secs: Some(secs),
        } => ("pending", Some(secs)),
        Outcome::Failed {
            retry_in_secs: None,
        }
        | Outcome::Gone => ("failed", None),
    };
    let updated = sqlx::query(
        "UPDATE webhook_messages SET
             state = $4,
             next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at
                                    ELSE now() + make_interval(secs => $5) END,
             locked_until = '-infinity', claim = NULL,
             finished_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END
         WHERE event_id = $1 AND endpoint_id = $2 AND claim = $3",
    )
    .bind(r.event_id)
    .bind(r.endpoint_id)
    .bind(r.claim)
    .bind(state)
    .bind(retry_in)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    let outcome = match r.outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed { .. } => "failed",
        Outcome::Gone => "gone",
    };
    sqlx::query(
        "INSERT INTO webhook_attempts (event_id, endpoint_id, attempt, outcome, status_code,
                                       latency_ms, response_excerpt, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(r.event_id)
    .bind(r.endpoint_id)
    .bind(r.attempt)
    .bind(outcome)
    .bind(r.status_code)
    .bind(r.latency_ms)
    .bind(r.response_excerpt)
    .bind(r.error)
    .execute(&mut **tx)
    .await?;
    match r.outcome {
        Outcome::Delivered => {
            sqlx::query(
                "UPDATE webhook_endpoints SET failing_since = NULL
                 WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .bind(r.endpoint_id)
            .execute(&mut **tx)
            .await?;
        }
        Outcome::Gone => {
            sqlx::query(
                "UPDATE webhook_endpoints SET enabled = false, disabled_at = now(),
                     disabled_reason = 'the receiver answered 410 Gone', updated_at = now()
                 WHERE id = $1 AND enabled",
            )
            .bind(r.endpoint_id)
            .execute(&mut **tx)
            .await?;
        }
        Outcome::Failed { .. } => {
            sqlx::query(
                "UPDATE webhook_endpoints SET
                     failing_since = coalesce(failing_since, now()),
                     enabled = enabled AND coalesce(failing_since, now())
                                           > now() - make_interval(secs => $2),
                     disabled_at = CASE WHEN enabled AND coalesce(failing_since, now())
                                           <= now() - make_interval(secs => $2)
                                        THEN now() ELSE disabled_at END,
                     disabled_reason = CASE WHEN enabled AND coalesce(failing_since, now())
                                           <= now() - make_interval(secs => $2)
                                        THEN 'failing without a success since '
                                             || event_instant(failing_since)
                                        ELSE disabled_reason END
                 WHERE id = $1",
            )
            .bind(r.endpoint_id)
            .bind(r.disable_after_secs)
            .execute(&mut **tx)
            .await?;
        }
    }
    if r.outcome != Outcome::Delivered {
        fail_queued_of_disabled(&mut **tx, r.endpoint_id).await?;
    }
    Ok(true)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Attempt {
    pub id: i64,
    pub event_id: Uuid,
    pub attempt: i32,
    pub attempted_at: OffsetDateTime,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub latency_ms: i32,
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// An endpoint's attempts, newest first, before `before` (an attempt id).
pub async fn attempts(
    db: impl PgExecutor<'_>,
    endpoint_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, event_id, attempt, attempted_at, outcome, status_code, latency_ms,
                response_excerpt, error
         FROM webhook_attempts
         WHERE endpoint_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(endpoint_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Queues an event again for the enabled endpoints that take it (a
/// partner's only, when `partner_id` is set): due now, with a new round of
/// retries. How many deliveries it queued.
pub async fn redeliver(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    partner_id: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO webhook_messages (event_id, endpoint_id)
         SELECT ev.id, e.id FROM events AS ev JOIN webhook_endpoints AS e
             ON e.enabled
            AND (e.partner_id IS NULL OR e.partner_id = ev.partner_id)
            AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types))
         WHERE ev.id = $1 AND ($2::uuid IS NULL OR e.partner_id = $2)
         ON CONFLICT (event_id, endpoint_id) DO UPDATE SET
             state = 'pending', next_attempt_at = now(),
             round_start = webhook_messages.attempts, finished_at = NULL
         WHERE webhook_messages.state <> 'pending'",
    )
    .bind(event_id)
    .bind(partner_id)
    .execute(db)
    .await?
    .rows_affected())
}

/// Queues again, for one endpoint, every event since `since` that it takes
/// and has not received: those whose delivery failed, and those never
/// queued for it (written while it was disabled). How many.
pub async fn recover(
    db: impl PgExecutor<'_>,
    endpoint_id: Uuid,
    since: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO webhook_messages (event_id, endpoint_id)
         SELECT ev.id, e.id FROM webhook_endpoints AS e JOIN events AS ev
             ON (e.partner_id IS NULL OR e.partner_id = ev.partner_id)
            AND (cardinality(e.event_types) = 0 OR ev.type = ANY (e.event_types))
         WHERE e.id = $1 AND ev.occurred_at >= $2
         ON CONFLICT (event_id, endpoint_id) DO UPDATE SET
             state = 'pending', next_attempt_at = now(),
             round_start = webhook_messages.attempts, finished_at = NULL
         WHERE webhook_messages.state = 'failed'",
    )
    .bind(endpoint_id)
    .bind(since)
    .execute(db)
    .await?
    .rows_affected())
}

/// The deliverers' backlog: how far behind schedule the oldest due
/// delivery is, and the age of the oldest undelivered event (seconds).
pub async fn backlog(db: impl PgExecutor<'_>) -> Result<(f64, f64), sqlx::Error> {
    sqlx::query_as(
        "SELECT
             coalesce(extract(epoch FROM now() - (
                 SELECT min(next_attempt_at) FROM webhook_messages
                 WHERE state = 'pending' AND next_attempt_at <= now()))::float8, 0),
             coalesce(extract(epoch FROM now() - (
                 SELECT ev.occurred_at FROM webhook_messages AS m
                 JOIN events AS ev ON ev.id = m.event_id
                 WHERE m.state = 'pending' ORDER BY m.created_at LIMIT 1))::float8, 0)",
    )
    .fetch_one(db)
    .await
}
