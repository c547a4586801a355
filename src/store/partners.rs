use sqlx::PgExecutor;
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Partner {
    pub id: Uuid,
    pub name: String,
    pub created_at: OffsetDateTime,
}

pub async fn insert(db: impl PgExecutor<'_>, name: &str) -> Result<Partner, sqlx::Error> {
    sqlx::query_as("INSERT INTO partners (id, name) VALUES ($1, $2) RETURNING id, name, created_at")
        .bind(Uuid::now_v7())
        .bind(name)
        .fetch_one(db)
        .await
}

pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Partner>, sqlx::Error> {
    sqlx::query_as("SELECT id, name, created_at FROM partners ORDER BY created_at, id")
        .fetch_all(db)
        .await
}

pub async fn exists(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1)")
        .bind(id)
        .fetch_one(db)
        .await
}
