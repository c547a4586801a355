use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, Row};
use uuid::Uuid;

use crate::domain::offer::{Discount, Offer, OfferStatus};

pub struct OfferRow(pub Offer);

impl FromRow<'_, PgRow> for OfferRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let discount = discount_of(row)?;
        let status: String = row.try_get("status")?;
        Ok(OfferRow(Offer {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            description: row.try_get("description")?,
            communities: row.try_get("communities")?,
            subsegments: row.try_get("subsegments")?,
            discount,
            starts_at: row.try_get("starts_at")?,
            ends_at: row.try_get("ends_at")?,
            status: OfferStatus::parse(&status)
                .ok_or_else(|| sqlx::Error::Decode(format!("offer status {status}").into()))?,
            partner_id: row.try_get("partner_id")?,
            total_cap: row.try_get("total_cap")?,
            per_person_limit: row.try_get("per_person_limit")?,
            token_ttl_secs: row.try_get("token_ttl_secs")?,
            reversal_returns_token: row.try_get("reversal_returns_token")?,
        }))
    }
}

/// The discount held in a row's discount columns.
pub fn discount_of(row: &PgRow) -> Result<Discount, sqlx::Error> {
    let kind: String = row.try_get("discount_kind")?;
    Ok(match kind.as_str() {
        "percent" => Discount::Percent {
            percent_off: row.try_get("percent_off")?,
        },
        "fixed" => Discount::Fixed {
            amount_minor: row.try_get("amount_minor")?,
            currency: row.try_get("currency")?,
        },
        _ => Discount::Reward {
            reward: row.try_get("reward")?,
        },
    })
}

const COLUMNS: &str = "id, title, description, communities, subsegments, discount_kind, \
    percent_off::float8 AS percent_off, amount_minor, currency, reward, starts_at, ends_at, status, \
    partner_id, total_cap, per_person_limit, token_ttl_secs, reversal_returns_token";

fn discount_columns(
    d: &Discount,
) -> (
    &'static str,
    Option<f64>,
    Option<i64>,
    Option<&str>,
    Option<&str>,
) {
    match d {
        Discount::Percent { percent_off } => ("percent", Some(*percent_off), None, None, None),
        Discount::Fixed {
            amount_minor,
            currency,
        } => ("fixed", None, Some(*amount_minor), Some(currency), None),
        Discount::Reward { reward } => ("reward", None, None, None, Some(reward)),
    }
}

/// Inserts or, by id, replaces an offer.
pub async fn save(db: impl PgExecutor<'_>, offer: &Offer) -> Result<Offer, sqlx::Error> {
    let (kind, percent, amount, currency, reward) = discount_columns(&offer.discount);
    let row: OfferRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO offers (id, title, description, communities, subsegments, discount_kind,
             percent_off, amount_minor, currency, reward, starts_at, ends_at, status, partner_id,
             total_cap, per_person_limit, token_ttl_secs, reversal_returns_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (id) DO UPDATE SET
             title = EXCLUDED.title, description = EXCLUDED.description,
             communities = EXCLUDED.communities, subsegments = EXCLUDED.subsegments,
             discount_kind = EXCLUDED.discount_kind, percent_off = EXCLUDED.percent_off,
             amount_minor = EXCLUDED.amount_minor, currency = EXCLUDED.currency,
             reward = EXCLUDED.reward, starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
             status = EXCLUDED.status, partner_id = EXCLUDED.partner_id,
             total_cap = EXCLUDED.total_cap, per_person_limit = EXCLUDED.per_person_limit,
             token_ttl_secs = EXCLUDED.token_ttl_secs,
             reversal_returns_token = EXCLUDED.reversal_returns_token, updated_at = now()
         RETURNING {COLUMNS}"
    )))
    .bind(offer.id)
    .bind(&offer.title)
    .bind(&offer.description)
    .bind(&offer.communities)
    .bind(&offer.subsegments)
    .bind(kind)
    .bind(percent)
    .bind(amount)
    .bind(currency)
    .bind(reward)
    .bind(offer.starts_at)
    .bind(offer.ends_at)
    .bind(offer.status.as_str())
    .bind(offer.partner_id)
    .bind(offer.total_cap)
    .bind(offer.per_person_limit)
    .bind(offer.token_ttl_secs)
    .bind(offer.reversal_returns_token)
    .fetch_one(db)
    .await?;
    Ok(row.0)
}

pub async fn get(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Offer>, sqlx::Error> {
    let row: Option<OfferRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM offers WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.0))
}

/// Which offers a listing shows.
pub struct OfferFilter<'a> {
    pub status: Option<OfferStatus>,
    pub community: Option<&'a str>,
    pub partner_id: Option<Uuid>,
}

pub async fn list(
    db: impl PgExecutor<'_>,
    filter: &OfferFilter<'_>,
) -> Result<Vec<Offer>, sqlx::Error> {
    let rows: Vec<OfferRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM offers
         WHERE ($1::text IS NULL OR status = $1)
           AND ($2::text IS NULL OR $2 = ANY (communities))
           AND ($3::uuid IS NULL OR partner_id = $3)
         ORDER BY created_at DESC, id"
    )))
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.community)
    .bind(filter.partner_id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Recounts the offer's places under its caps from its tokens
/// (`recount_places` in the migrations).
pub async fn recount_places(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT recount_places($1)")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}
