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

/// Why a database call failed when retrying the request shortly can
/// succeed: every connection stayed busy past the acquire timeout, or the
/// database is away (refused, dropped or shutting down). `None` for any
/// other failure, which is a fault of offergate's own.
pub fn unavailable(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::PoolTimedOut => {
            Some("Every database connection stayed busy for the acquire timeout; retry shortly.")
        }
        // The link broke: refused, reset, or closed mid-conversation (a
        // proxy in front of a database that is down answers the handshake
        // with nothing, which reads as a protocol error).
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(UNREACHABLE),
        // Class 08: connection exceptions; 57P01-57P03: the server is
        // shutting down or starting; 53300: too many connections.
        sqlx::Error::Database(e) => e
            .code()
            .filter(|code| {
                code.starts_with("08") || matches!(&**code, "57P01" | "57P02" | "57P03" | "53300")
            })
            .map(|_| UNREACHABLE),
        _ => None,
    }
}

const UNREACHABLE: &str = "The database is unreachable; retry shortly.";

#[cfg(test)]
mod tests {
    use super::unavailable;

    #[test]
    fn a_busy_pool_or_an_absent_database_is_retryable_and_nothing_else_is() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(unavailable(&sqlx::Error::PoolTimedOut).is_some());
        assert!(unavailable(&sqlx::Error::Io(refused)).is_some());
        assert!(unavailable(&sqlx::Error::PoolClosed).is_some());
        assert!(unavailable(&sqlx::Error::RowNotFound).is_none());
        assert!(unavailable(&sqlx::Error::ColumnNotFound("id".into())).is_none());
    }
}
