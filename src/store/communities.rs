use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgExecutor, Row};

use crate::domain::community::Community;
use crate::domain::identity::IdentityField;

struct CommunityRow(Community);

impl FromRow<'_, PgRow> for CommunityRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let fields: Vec<String> = row.try_get("required_fields")?;
        let required_fields = fields
            .iter()
            .map(|f| {
                IdentityField::parse(f).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown identity field {f}").into())
                })
            })
            .collect::<Result<_, _>>()?;
        let Json(subsegment_reverify): Json<HashMap<String, Option<i32>>> =
            row.try_get("subsegment_reverify")?;
        Ok(CommunityRow(Community {
            key: row.try_get("key")?,
            display_name: row.try_get("display_name")?,
            subsegments: row.try_get("subsegments")?,
            required_fields,
            reverify_after_days: row.try_get("reverify_after_days")?,
            subsegment_reverify,
            min_age: row.try_get("min_age")?,
            builtin: row.try_get("builtin")?,
        }))
    }
}

const COLUMNS: &str = "key, display_name, subsegments, required_fields, reverify_after_days, \
                       subsegment_reverify, min_age, builtin";

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Community>, sqlx::Error> {
    let rows: Vec<CommunityRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM communities ORDER BY builtin DESC, key"
    )))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn all_by_key(
    db: impl PgExecutor<'_>,
) -> Result<HashMap<String, Community>, sqlx::Error> {
    Ok(list(db)
        .await?
        .into_iter()
        .map(|c| (c.key.clone(), c))
        .collect())
}

pub async fn get(db: impl PgExecutor<'_>, key: &str) -> Result<Option<Community>, sqlx::Error> {
    let row: Option<CommunityRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM communities WHERE key = $1"
    )))
    .bind(key)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.0))
}

fn field_names(community: &Community) -> Vec<&'static str> {
    community
        .required_fields
        .iter()
        .map(|f| f.as_str())
        .collect()
}

/// Inserts a community; `None` when the key is taken.
pub async fn insert(
    db: impl PgExecutor<'_>,
    community: &Community,
) -> Result<Option<Community>, sqlx::Error> {
    let row: Option<CommunityRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO communities (key, display_name, subsegments, required_fields,
                                  reverify_after_days, subsegment_reverify, min_age, builtin)
         VALUES ($1, $2, $3, $4, $5, $6, $7, false)
         ON CONFLICT (key) DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(&community.key)
    .bind(&community.display_name)
    .bind(&community.subsegments)
    .bind(field_names(community))
    .bind(community.reverify_after_days)
    .bind(Json(&community.subsegment_reverify))
    .bind(community.min_age)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.0))
}

pub async fn update(
    db: impl PgExecutor<'_>,
    community: &Community,
) -> Result<Option<Community>, sqlx::Error> {
    let row: Option<CommunityRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE communities SET display_name = $2, subsegments = $3, required_fields = $4,
                reverify_after_days = $5, subsegment_reverify = $6, min_age = $7, updated_at = now()
         WHERE key = $1
         RETURNING {COLUMNS}"
    )))
    .bind(&community.key)
    .bind(&community.display_name)
    .bind(&community.subsegments)
    .bind(field_names(community))
    .bind(community.reverify_after_days)
    .bind(Json(&community.subsegment_reverify))
    .bind(community.min_age)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| r.0))
}

pub enum Deleted {
    Yes,
    NotFound,
    InUse,
}

/// Deletes a community nobody's records or memberships use.
pub async fn delete(db: impl PgExecutor<'_>, key: &str) -> Result<Deleted, sqlx::Error> {
    let outcome: Result<Option<(bool,)>, sqlx::Error> = sqlx::query_as(
        "WITH target AS (SELECT key FROM communities WHERE key = $1),
              in_use AS (
                  SELECT EXISTS (SELECT 1 FROM verification_records WHERE community = $1)
                      OR EXISTS (SELECT 1 FROM memberships WHERE community = $1) AS used),
              deleted AS (
                  DELETE FROM communities WHERE key = $1 AND NOT (SELECT used FROM in_use)
                  RETURNING key)
         SELECT (SELECT count(*) FROM deleted) = 1 FROM target",
    )
    .bind(key)
    .fetch_optional(db)
    .await;
    Ok(match outcome {
        // A record written meanwhile: the foreign key refused the delete.
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Deleted::InUse,
        Err(e) => return Err(e),
        Ok(None) => Deleted::NotFound,
        Ok(Some((true,))) => Deleted::Yes,
        Ok(Some((false,))) => Deleted::InUse,
    })
}
