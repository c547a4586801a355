//! Tokens and the caps they count against. Concurrency rules live here, in
//! SQL: a token takes a place only through a conditional insert made while
//! the offer's row is locked, and the place counts are read in the same
//! transaction after the lock, so no two issuances see the same count.

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

/// A place is taken by a redeemed token or an issued, unexpired one.
const LIVE: &str = "(state = 'redeemed' OR (state = 'issued' AND expires_at > now()))";

pub struct NewToken<'a> {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub membership_id: Uuid,
    pub person_key: &'a [u8],
    pub community: &'a str,
    pub kid: &'a str,
    pub ttl_secs: i32,
    pub total_cap: Option<i32>,
    pub per_person_limit: Option<i32>,
}

#[derive(Debug, Clone, Copy)]
pub struct IssuedToken {
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug)]
pub enum Issued {
    Yes(IssuedToken),
    OfferExhausted,
    PersonLimitReached,
    /// The offer stopped being active meanwhile.
    OfferClosed,
}

type IssueRow = (i64, i64, Option<OffsetDateTime>, Option<OffsetDateTime>);

/// Issues a token if the offer's total cap and the person's limit allow.
pub async fn issue(db: &PgPool, token: &NewToken<'_>) -> Result<Issued, sqlx::Error> {
    let mut tx = db.begin().await?;
    let open: Option<bool> = sqlx::query_scalar(
        "SELECT status = 'active' AND (starts_at IS NULL OR starts_at <= now())
                AND (ends_at IS NULL OR now() < ends_at)
         FROM offers WHERE id = $1 FOR UPDATE",
    )
    .bind(token.offer_id)
    .fetch_optional(&mut *tx)
    .await?;
    if open != Some(true) {
        return Ok(Issued::OfferClosed);
    }
    let (taken, mine, issued_at, expires_at): IssueRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH counts AS (
             SELECT CASE WHEN $8::int IS NULL THEN 0
                         ELSE (SELECT count(*) FROM tokens WHERE offer_id = $2 AND {LIVE}) END AS taken,
                    CASE WHEN $9::int IS NULL THEN 0
                         ELSE (SELECT count(*) FROM tokens
                               WHERE offer_id = $2 AND person_key = $4 AND {LIVE}) END AS mine),
         issued AS (
             INSERT INTO tokens (id, offer_id, membership_id, person_key, community, kid, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)
             FROM counts
             WHERE ($8::int IS NULL OR counts.taken < $8) AND ($9::int IS NULL OR counts.mine < $9)
             RETURNING issued_at, expires_at)
         SELECT counts.taken, counts.mine, issued.issued_at, issued.expires_at
         FROM counts LEFT JOIN issued ON true"
    )))
    .bind(token.id)
    .bind(token.offer_id)
    .bind(token.membership_id)
    .bind(token.person_key)
    .bind(token.community)
    .bind(token.kid)
    .bind(f64::from(token.ttl_secs))
    .bind(token.total_cap)
    .bind(token.per_person_limit)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match (issued_at, expires_at) {
        (Some(issued_at), Some(expires_at)) => Issued::Yes(IssuedToken {
            issued_at,
            expires_at,
        }),
        _ if token.total_cap.is_some_and(|cap| taken >= i64::from(cap)) => Issued::OfferExhausted,
        _ if token
            .per_person_limit
            .is_some_and(|limit| mine >= i64::from(limit)) =>
        {
            Issued::PersonLimitReached
        }
        _ => Issued::OfferExhausted,
    })
}

/// A token's state as a caller sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenState {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub state: String,
    pub expires_at: OffsetDateTime,
    pub partner_id: Option<Uuid>,
    pub expired: bool,
}

impl TokenState {
    /// issued, expired, redeemed, reversed or revoked.
    pub fn shown_state(&self) -> &str {
        if self.state == "issued" && self.expired {
            "expired"
        } else {
            &self.state
        }
    }
}

pub async fn state(db: &PgPool, id: Uuid) -> Result<Option<TokenState>, sqlx::Error> {
    sqlx::query_as(
        "SELECT t.id, t.offer_id, t.state, t.expires_at, o.partner_id, t.expires_at <= now() AS expired
         FROM tokens AS t JOIN offers AS o ON o.id = t.offer_id WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Revokes an issued token; `None` when it is not issued (or unknown).
pub async fn revoke(db: &PgPool, id: Uuid) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE tokens SET state = 'revoked', revoked_at = now()
         WHERE id = $1 AND state = 'issued' RETURNING revoked_at",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}

/// A membership that can still have tokens.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveMembership {
    pub id: Uuid,
    pub person_key: Vec<u8>,
    pub community: String,
    pub subsegment: Option<String>,
    pub live: bool,
}

pub async fn membership(db: &PgPool, id: Uuid) -> Result<Option<LiveMembership>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, person_key, community, subsegment,
                (expires_at IS NULL OR expires_at > now()) AS live
         FROM memberships WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db)
    .await
}
