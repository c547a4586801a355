//! Building and running the HTTP service.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{EventSettings, RetentionSettings, Settings};
use crate::db;
use crate::http::{self, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    grace: Duration,
    retention: RetentionSettings,
    events: EventSettings,
}

/// Opens the database as the settings say: in development it is created
/// and migrated on the way; in production it must already be migrated, and
/// may be unreachable for now (readiness says so).
pub async fn open_database(settings: &Settings) -> anyhow::Result<PgPool> {
    if settings.database.create_if_missing {
        db::create_if_missing(&settings.database)
            .await
            .context("creating the database")?;
    }
    let pool = db::lazy_pool(&settings.database).context("reading database.url")?;
    if settings.database.migrate_on_start {
        db::migrate(&pool).await.context("applying migrations")?;
    }
    Ok(pool)
}

impl Application {
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = open_database(settings).await?;
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("binding {}", settings.server.bind))?;
        let state = AppState::new(pool.clone(), settings)?;
        match crate::usecases::places::adopt_legacy_person_keys(&pool, &state.indexer).await {
            Ok(0) => {}
            Ok(tokens) => tracing::info!(
                tokens,
                "legacy person keys of tokens turned into place keys"
            ),
            Err(error) => tracing::warn!(%error, "legacy person keys of tokens not turned yet"),
        }
        tokio::spawn(report_outdated_records(pool));
        let router = http::app(state.clone(), settings);
        Ok(Application {
            listener,
            router,
            state,
            grace: settings.shutdown_grace(),
            retention: settings.retention.clone(),
            events: settings.events.clone(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// and lets in-flight requests finish, for at most the grace period.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, mut stopping_rx) = watch::channel(false);
        // Retention runs beside the server and stops with it.
        tokio::spawn(crate::usecases::prune::run(
            self.state.db.clone(),
            self.retention,
            stopping_rx.clone(),
        ));
        // So do the events job and, where this process delivers, webhooks.
        tokio::spawn(crate::usecases::events::run(
            self.state.db.clone(),
            self.events,
            stopping_rx.clone(),
        ));
        if self.state.webhooks.settings.deliver {
            tokio::spawn(crate::webhooks::deliver::run(
                self.state.db.clone(),
                self.state.webhooks.clone(),
                stopping_rx.clone(),
            ));
        }
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(true);
        });
        let grace = self.grace;
        let deadline = async move {
            if stopping_rx.wait_for(|stopping| *stopping).await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = server => served,
            () = deadline => {
                tracing::warn!(?grace, "grace period over: dropping unfinished requests");
                Ok(())
            }
        }
    }
}

/// Warns of records indexed under an older canonicalisation: their names
/// may no longer match until their source is imported again. Also a gauge,
/// `records_outdated_canonicalisation`. Quiet while the database is down.
async fn report_outdated_records(pool: PgPool) {
    let Ok(outdated) = crate::store::records::outdated(&pool).await else {
        return;
    };
    let total: i64 = outdated.iter().map(|(_, count)| count).sum();
    // Installs the recorder, which may not have seen its first scrape yet.
    crate::http::metrics::handle();
    ::metrics::gauge!("records_outdated_canonicalisation").set(total as f64);
    for (source, count) in outdated {
        tracing::warn!(
            source,
            count,
            canon_version = crate::domain::identity::CANON_VERSION,
            "records indexed under an older canonicalisation: import this source again"
        );
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
