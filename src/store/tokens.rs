//! Tokens and the caps they count against. The concurrency rules live in
//! SQL (`take_place` in the migrations): a token takes a place only through
//! a conditional update of the offer's count, and of the person's, so no
//! two issuances take the last place, and the cost does not grow with the
//! number of outstanding tokens.

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

/// One call does the whole issuance: see `issue_token` in the migrations.
pub const ISSUE: &str = "SELECT replayed, request_hash, outcome, token_id, offer_id, membership_id,
            community, kid, issued_at, expires_at
     FROM issue_token($1, $2, $3, $4, $5, $6, $7, $8)";

pub struct IssueCall<'a> {
    pub api_key_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub request_hash: &'a [u8],
    pub token_id: Uuid,
    pub offer_id: Uuid,
    pub membership_id: Uuid,
    pub kid: &'a str,
    /// The secret of the place keys (`BlindIndexer::place_secret`).
    pub place_secret: &'a [u8],
}

/// A token row: what its signed form is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: Uuid,
    pub offer_id: Uuid,
    pub membership_id: Option<Uuid>,
    pub community: String,
    pub kid: String,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What an issuance answered: `outcome` is `issued` (with the token), or
/// `unknown_membership`, `membership_lapsed`, `unknown_offer`,
/// `offer_closed`, `wrong_community`, `offer_exhausted`,
/// `person_limit_reached`.
pub struct IssueRow {
    pub replayed: bool,
    pub request_hash: Vec<u8>,
    pub outcome: String,
    pub token: Option<TokenRow>,
}

type IssueTuple = (
    bool,
    Vec<u8>,
    String,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<OffsetDateTime>,
    Option<OffsetDateTime>,
);

/// A token row from the columns a call returned, when it holds one.
pub fn token_row(
    id: Option<Uuid>,
    offer_id: Option<Uuid>,
    membership_id: Option<Uuid>,
    community: Option<String>,
    kid: Option<String>,
    issued_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
) -> Option<TokenRow> {
    Some(TokenRow {
        id: id?,
        offer_id: offer_id?,
        membership_id,
        community: community?,
        kid: kid?,
        issued_at: issued_at?,
        expires_at: expires_at?,
    })
}

pub async fn issue(db: impl PgExecutor<'_>, call: &IssueCall<'_>) -> Result<IssueRow, sqlx::Error> {
    let (replayed, request_hash, outcome, id, offer, membership, community, kid, issued, expires): IssueTuple =
        sqlx::query_as(ISSUE)
            .bind(call.api_key_id)
            .bind(call.idempotency_key)
            .bind(call.request_hash)
            .bind(call.token_id)
            .bind(call.offer_id)
            .bind(call.membership_id)
            .bind(call.kid)
            .bind(call.place_secret)
            .fetch_one(db)
            .await?;
    Ok(IssueRow {
        replayed,
        request_hash,
        outcome,
        token: token_row(id, offer, membership, community, kid, issued, expires),
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

pub enum Revoked {
    Now(OffsetDateTime),
    /// The token is not issued: its state as shown.
    Not(String),
    NotFound,
}

/// Revokes an issued token and gives its place back (`revoke_token` in the
/// migrations).
pub async fn revoke(db: &PgPool, id: Uuid) -> Result<Revoked, sqlx::Error> {
    let row: Option<(bool, String, bool, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT revoked, state, expired, revoked_at FROM revoke_token($1)")
            .bind(id)
            .fetch_optional(db)
            .await?;
    Ok(match row {
        None => Revoked::NotFound,
        Some((true, _, _, Some(at))) => Revoked::Now(at),
        Some((_, state, expired, _)) => Revoked::Not(if state == "issued" && expired {
            "expired".to_owned()
        } else {
            state
        }),
    })
}

/// Gives every token that still holds a legacy person key its place key
/// (`offer_place_key`) and drops the person key; the tokens turned and the
/// offers they belong to.
pub async fn adopt_legacy_person_keys(
    conn: &mut sqlx::PgConnection,
    place_secret: &[u8],
) -> Result<(u64, Vec<Uuid>), sqlx::Error> {
    // Every change of places locks the offers' rows first.
    sqlx::query(
        "SELECT 1 FROM offers WHERE id IN (
             SELECT DISTINCT offer_id FROM tokens WHERE person_key IS NOT NULL)
         ORDER BY id FOR UPDATE",
    )
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH turned AS (
             UPDATE tokens SET place_key = offer_place_key(offer_id, person_key, $1),
                               person_key = NULL
             WHERE person_key IS NOT NULL
             RETURNING offer_id)
         SELECT offer_id, count(*) FROM turned GROUP BY offer_id ORDER BY offer_id",
    )
    .bind(place_secret)
    .fetch_all(&mut *conn)
    .await?;
    let tokens = rows
        .iter()
        .map(|(_, n)| u64::try_from(*n).unwrap_or(0))
        .sum();
    Ok((tokens, rows.into_iter().map(|(offer, _)| offer).collect()))
}
