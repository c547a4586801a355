//! Connecting to Postgres, creating the database and applying migrations.

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseSettings;

/// The migrations, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A pool that connects on first use, so a process starts (and reports
/// itself unready) while the database is away.
pub fn lazy_pool(settings: &DatabaseSettings) -> Result<PgPool, sqlx::Error> {
    let options =
        PgConnectOptions::from_str(settings.url.expose_secret())?.application_name("offergate");
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        // A ping before every checkout doubles the round trips of a request;
        // a broken connection fails its query instead and is dropped, and
        // readiness notices a database that is gone.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
        .connect_lazy_with(options))
}

/// Creates the database named in the settings when it does not exist.
pub async fn create_if_missing(settings: &DatabaseSettings) -> Result<(), sqlx::Error> {
    let url = settings.url.expose_secret();
    if !Postgres::database_exists(url).await? {
        tracing::info!("creating the database");
        if let Err(error) = Postgres::create_database(url).await {
            // Another process may have created it in the meantime.
            if !Postgres::database_exists(url).await? {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Brings the schema up to date; safe to run from several processes at once
/// (the migrator takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
