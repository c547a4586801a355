//! The `offergate` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::RngExt;
use secrecy::ExposeSecret;
use uuid::Uuid;

use crate::config::Settings;
use crate::domain::api_key::{KeyId, Role};
use crate::domain::blind::BlindIndexer;
use crate::signing::{KEY_REFRESH, KeyRing, Revocation};
use crate::startup::{Application, open_database, shutdown_signal};
use crate::store::{api_keys, signing_keys};
use crate::usecases::import::{
    Format, ImportError, ImportOptions, ImportReport, Mode, OnError, import_records,
};
use crate::{auth, db, telemetry};

#[derive(Parser)]
#[command(
    name = "offergate",
    version,
    about = "Identity-gated offers with signed single-use tokens"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on (default: server.bind, 127.0.0.1:8080).
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Create the database if missing and apply migrations.
    Migrate,
    /// Import verification records from a CSV or NDJSON file (the same
    /// code path as POST /v1/records/import). Progress on stderr.
    Import {
        /// The data source; records are upserted by (source, external_id).
        #[arg(long)]
        source: String,
        /// upsert, or replace: also retire the source's records the file
        /// no longer holds.
        #[arg(long, default_value = "upsert")]
        mode: Mode,
        /// fail: one bad row writes nothing. skip: write the good rows.
        #[arg(long, default_value = "fail")]
        on_error: OnError,
        /// The file: .csv (with a header) or .ndjson / .jsonl.
        file: PathBuf,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Work with server secrets.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it, alone, on stdout. It is shown only once.
    Create {
        #[arg(long)]
        role: Role,
        /// The partner a partner key acts for.
        #[arg(long)]
        partner: Option<Uuid>,
        /// A label for people, e.g. "web checkout".
        #[arg(long, default_value = "")]
        name: String,
        /// For a checkout key: an origin its verification sessions may
        /// return to (`https://shop.example`); repeat for several.
        #[arg(long = "return-origin")]
        return_origins: Vec<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; every process refuses it within
    /// auth.revocation_delay_secs.
    Revoke { id: String },
    /// Add a new token signing key and sign with it from now on; older
    /// public keys stay in the JWKS while their tokens may be live.
    RotateSigning,
    /// Revoke a compromised token signing key: it leaves the JWKS and its
    /// tokens are refused, by redemption at once and by every process
    /// within 5 s. If it is the key that signs now, a new key takes over.
    RevokeSigning {
        /// The key's id, as the JWKS and a token's header name it.
        kid: String,
    },
    /// List token signing keys: kid, created, retired, revoked.
    ListSigning,
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Print a fresh random 32-byte secret as 64 hex digits.
    Generate,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Secrets {
        command: SecretsCommand::Generate,
    } = cli.command
    {
        let bytes: [u8; 32] = rand::rng().random();
        println!("{}", hex::encode(bytes));
        return Ok(());
    }
    let mut settings = Settings::load()?;
    telemetry::init(&settings.log);
    match cli.command {
        Command::Serve { bind } => {
            if let Some(bind) = bind {
                settings.server.bind = bind;
            }
            let app = Application::build(&settings).await?;
            tracing::info!(
                addr = %app.local_addr()?,
                profile = ?settings.profile,
                "offergate listening"
            );
            app.run_until(shutdown_signal()).await?;
            tracing::info!("offergate stopped");
        }
        Command::Migrate => {
            db::create_if_missing(&settings.database).await?;
            let pool = db::lazy_pool(&settings.database)?;
            db::migrate(&pool).await.context("applying migrations")?;
            let indexer = BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret())?;
            let turned = crate::usecases::places::adopt_legacy_person_keys(&pool, &indexer).await?;
            if turned > 0 {
                eprintln!("{turned} tokens' person keys turned into place keys");
            }
            eprintln!("database is up to date");
        }
        Command::Import {
            source,
            mode,
            on_error,
            file,
        } => import(&settings, source, mode, on_error, &file).await?,
        Command::Keys { command } => keys(command, &settings).await?,
        Command::Secrets { .. } => {}
    }
    Ok(())
}

async fn import(
    settings: &Settings,
    source: String,
    mode: Mode,
    on_error: OnError,
    file: &Path,
) -> anyhow::Result<()> {
    let format = Format::of_path(file)
        .with_context(|| format!("{}: name a .csv, .ndjson or .jsonl file", file.display()))?;
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let size = opened.metadata().await.map(|m| m.len()).unwrap_or(0);
    let pool = open_database(settings).await?;
    let indexer = BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret())?;
    let progress = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("{spinner} {bytes}/{total_bytes} {wide_bar} {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.set_draw_target(ProgressDrawTarget::stderr());
    let options = ImportOptions {
        source,
        mode,
        on_error,
        format,
        limits: settings.import.limits(),
    };
    let outcome = import_records(&pool, &indexer, &options, progress.wrap_async_read(opened)).await;
    progress.finish_and_clear();
    let report = match outcome {
        Ok(report) => report,
        Err(ImportError::Rejected(report)) => {
            print_rejections(&report);
            anyhow::bail!(
                "{} row(s) rejected; nothing was written (--on-error skip writes the good rows)",
                report.rejected_total
            );
        }
        Err(other) => return Err(other.into()),
    };
    print_rejections(&report);
    eprintln!(
        "{} rows read: {} inserted, {} updated, {} retired, {} rejected; {} memberships ended",
        report.rows_read,
        report.inserted,
        report.updated,
        report.retired,
        report.rejected_total,
        report.memberships_ended
    );
    Ok(())
}

fn print_rejections(report: &ImportReport) {
    for row in &report.rejected {
        eprintln!("line {}: {}: {}", row.line, row.field, row.message);
    }
    if report.rejected_unlisted > 0 {
        eprintln!("... and {} more rejected rows", report.rejected_unlisted);
    }
}

async fn keys(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let pool = open_database(settings).await?;
    match command {
        KeysCommand::Create {
            role,
            partner,
            name,
            return_origins,
        } => {
            let (key, record) =
                auth::create_key_with_origins(&pool, role, partner, name.trim(), &return_origins)
                    .await?;
            eprintln!("created {} key {} (shown once)", record.role, record.id);
            println!("{}", key.expose());
        }
        KeysCommand::List => {
            println!(
                "{:<12}  {:<8}  {:<36}  {:<20}  {:<20}  NAME",
                "ID", "ROLE", "PARTNER", "CREATED", "REVOKED"
            );
            for key in api_keys::list(&pool).await? {
                let partner = key.partner_id.map(|p| p.to_string()).unwrap_or_default();
                let revoked = key.revoked_at.map(short_time).unwrap_or_default();
                println!(
                    "{:<12}  {:<8}  {:<36}  {:<20}  {:<20}  {}",
                    key.id,
                    key.role,
                    partner,
                    short_time(key.created_at),
                    revoked,
                    key.name
                );
            }
        }
        KeysCommand::RotateSigning => {
            let kid = key_ring(&pool, settings)?.rotate().await?;
            eprintln!("new signing key {kid}; every process signs with it within 5 s");
            println!("{kid}");
        }
        KeysCommand::RevokeSigning { kid } => {
            let ring = key_ring(&pool, settings)?;
            match ring.revoke(kid.trim()).await? {
                Revocation::Revoked {
                    successor,
                    tokens_revoked,
                } => {
                    eprintln!(
                        "revoked signing key {kid}: it is out of the JWKS and its tokens are \
                         refused at redemption now; every process stops verifying it within 5 s"
                    );
                    eprintln!(
                        "{tokens_revoked} unused tokens it signed were revoked; their places \
                         are free for new tokens"
                    );
                    if let Some(successor) = &successor {
                        eprintln!(
                            "it was the signing key: new key {successor} signs from now on \
                             (every process within 5 s)"
                        );
                    }
                    // A process that has not yet re-read the keys may sign
                    // a few more tokens with it: revoke those too.
                    tokio::time::sleep(KEY_REFRESH + Duration::from_secs(1)).await;
                    let late = ring.revoke_late_tokens(kid.trim()).await?;
                    if late > 0 {
                        eprintln!("{late} tokens signed with it since were revoked as well");
                    }
                    if let Some(successor) = successor {
                        println!("{successor}");
                    }
                }
                Revocation::AlreadyRevoked(at) => {
                    eprintln!(
                        "signing key {kid} was already revoked at {}",
                        short_time(at)
                    );
                }
            }
        }
        KeysCommand::ListSigning => {
            println!(
                "{:<16}  {:<20}  {:<20}  {:<20}",
                "KID", "CREATED", "RETIRED", "REVOKED"
            );
            for key in signing_keys::list(&pool).await? {
                println!(
                    "{:<16}  {:<20}  {:<20}  {:<20}",
                    key.kid,
                    short_time(key.created_at),
                    key.retired_at.map(short_time).unwrap_or_default(),
                    key.revoked_at.map(short_time).unwrap_or_default()
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key_id = KeyId::parse(&id).with_context(|| format!("`{id}` is not a key id"))?;
            match api_keys::revoke(&pool, &key_id).await? {
                Some(_) => eprintln!(
                    "revoked {key_id}; every process refuses it within {} s",
                    settings.auth.revocation_delay_secs
                ),
                None => anyhow::bail!("no API key has the id {key_id}"),
            }
        }
    }
    Ok(())
}

fn key_ring(pool: &sqlx::PgPool, settings: &Settings) -> anyhow::Result<KeyRing> {
    Ok(KeyRing::new(
        pool.clone(),
        settings.secrets.key_encryption_key.expose_secret(),
        &settings.tokens.issuer,
        &settings.tokens.audience,
    )?)
}

fn short_time(at: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    at.format(&format).unwrap_or_default()
}
