//! Settings: `config/default.toml`, then `config/<profile>.toml`, then
//! `OFFERGATE_<SECTION>__<KEY>` environment variables, then `DATABASE_URL`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The development defaults, compiled in so the production guard can tell
/// when one of their public secrets is still in use.
const DEVELOPMENT_DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub profile: Profile,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub verification: VerificationSettings,
    pub tokens: TokenSettings,
    pub secrets: SecretSettings,
    pub log: LogSettings,
    pub import: ImportSettings,
    pub retention: RetentionSettings,
    #[serde(default)]
    pub events: EventSettings,
    #[serde(default)]
    pub webhooks: WebhookSettings,
    #[serde(default)]
    pub hosted: HostedSettings,
}

pub use crate::http::page::settings::HostedSettings;
pub use crate::webhooks::settings::{EventSettings, WebhookSettings};

#[derive(Debug, Clone, Deserialize)]
pub struct ImportSettings {
    /// The longest CSV record or NDJSON line, in bytes.
    pub max_record_bytes: usize,
    /// Rejected rows listed in an import's answer; the rest are counted.
    pub max_listed_rejections: usize,
    /// The largest import body, in bytes: a larger one is refused with 413
    /// and writes nothing.
    pub max_total_bytes: u64,
}

impl ImportSettings {
    pub fn limits(&self) -> crate::usecases::import::ImportLimits {
        crate::usecases::import::ImportLimits {
            max_record_bytes: self.max_record_bytes,
            max_listed_rejections: self.max_listed_rejections,
            max_total_bytes: self.max_total_bytes,
        }
    }
}

/// How long rows that only record the past are kept, and how `serve`
/// sweeps them away.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// How often each process tries to sweep (one process sweeps at a time).
    pub sweep_interval_secs: u64,
    /// Rows deleted per statement, so no sweep holds locks for long.
    pub batch_rows: i64,
    /// Verification attempts (and the stats counted from them).
    pub attempts_secs: u64,
    /// Verification strikes: at least the longest rate-limit window.
    pub strikes_secs: u64,
    /// Idempotency keys and the answers they replay.
    pub idempotency_keys_secs: u64,
    /// Tokens past their expiry that hold nothing (expired unused, revoked),
    /// counted from the expiry.
    pub expired_tokens_secs: u64,
    /// Hosted verification sessions, counted from their link's expiry.
    #[serde(default = "week_secs")]
    pub sessions_secs: u64,
}

impl RetentionSettings {
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }

    fn validate(&self, verification: &VerificationSettings) -> Result<(), String> {
        let longest = verification.longest_strike_window();
        if self.sweep_interval_secs == 0 || !(1..=100_000).contains(&self.batch_rows) {
            return Err(
                "retention: sweep_interval_secs must be at least 1 and batch_rows 1 to 100000"
                    .into(),
            );
        }
        if Duration::from_secs(self.strikes_secs) < longest {
            return Err(format!(
                "retention.strikes_secs ({}) must be at least the longest rate-limit window \
                 ({} s): younger strikes are the limits",
                self.strikes_secs,
                longest.as_secs()
            ));
        }
        if self.attempts_secs < self.idempotency_keys_secs {
            return Err(
                "retention.attempts_secs must be at least idempotency_keys_secs: a replayed \
                 verification answer reads its attempt"
                    .into(),
            );
        }
        if [
            self.attempts_secs,
            self.idempotency_keys_secs,
            self.expired_tokens_secs,
            self.sessions_secs,
        ]
        .iter()
        .any(|secs| *secs == 0 || *secs > 100 * 365 * 86_400)
        {
            return Err("retention: every *_secs is 1 second to 100 years".into());
        }
        Ok(())
    }
}

fn week_secs() -> u64 {
    7 * 86_400
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    pub request_timeout_secs: u64,
    pub body_limit_bytes: usize,
    pub shutdown_grace_secs: u64,
    pub import_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// Holds the database password, so it is never printed.
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub create_if_missing: bool,
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    pub revocation_delay_secs: u64,
    pub cache_capacity: u64,
    pub max_concurrent_hashes: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VerificationSettings {
    pub window_secs: u64,
    pub max_failures_per_identity: i32,
    pub max_failures_per_address: i32,
    pub max_failures_per_key: i32,
    /// Back-off of each identity component: within the lookback, once it
    /// has `backoff_free_failures` failures, each further attempt waits
    /// `backoff_base_secs` doubled per failure past the free ones, at most
    /// `backoff_max_secs`, after the last failure.
    pub backoff_lookback_secs: u64,
    pub backoff_free_failures: u32,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl VerificationSettings {
    /// The longest window over which strikes are counted (the window, or
    /// the identity components' back-off lookback): strikes younger than
    /// this are the limits and must not be pruned.
    pub fn longest_strike_window(&self) -> Duration {
        Duration::from_secs(self.window_secs.max(self.backoff_lookback_secs))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecretSettings {
    /// HMAC key of the blind indexes that stand in for identity fields.
    pub blind_index_key: SecretString,
    /// Encrypts the private halves of the token signing keys.
    pub key_encryption_key: SecretString,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
    #[error(
        "the production profile refuses to start with development settings: {}",
        .0.join("; ")
    )]
    DevelopmentSecrets(Vec<String>),
}

impl Settings {
    /// Loads settings from the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        Self::load_from(std::env::vars().collect())
    }

    /// Loads settings as `load` does, from the given environment variables.
    pub fn load_from(env: HashMap<String, String>) -> Result<Self, SettingsError> {
        let dir = env
            .get("OFFERGATE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let profile = env
            .get("OFFERGATE_PROFILE")
            .cloned()
            .unwrap_or_else(|| "development".to_owned());
        let default_file = dir.join("default.toml");
        if !default_file.is_file() {
            return Err(SettingsError::Invalid(format!(
                "{} not found: run from the project folder or set OFFERGATE_CONFIG_DIR",
                default_file.display()
            )));
        }
        let profile_file = dir.join(format!("{profile}.toml"));
        let settings: Settings = Config::builder()
            .add_source(File::from(default_file).format(FileFormat::Toml))
            .add_source(
                File::from(profile_file)
                    .format(FileFormat::Toml)
                    .required(profile != "development"),
            )
            .add_source(
                Environment::with_prefix("OFFERGATE")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("verification.trusted_proxies")
                    .with_list_parse_key("webhooks.allowed_hosts")
                    .with_list_parse_key("hosted.return_origins")
                    .with_list_parse_key("webhooks.retry_delays_ms")
                    .source(Some(env.clone())),
            )
            .set_override("profile", profile)?
            .set_override_option("database.url", env.get("DATABASE_URL").cloned())?
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        for (name, secret) in self.secrets.named() {
            let value = secret.expose_secret();
            if value.len() != 64 || hex::decode(value).is_err() {
                return Err(SettingsError::Invalid(format!(
                    "secrets.{name} must be 32 bytes written as 64 hex digits \
                     (`offergate secrets generate` prints one)"
                )));
            }
        }
        let v = &self.verification;
        if v.window_secs == 0
            || v.max_failures_per_identity < 1
            || v.max_failures_per_address < 1
            || v.max_failures_per_key < 1
        {
            return Err(SettingsError::Invalid(
                "verification: window_secs and every max_failures_* must be at least 1".into(),
            ));
        }
        if v.backoff_base_secs == 0
            || v.backoff_max_secs < v.backoff_base_secs
            || v.backoff_lookback_secs < v.window_secs
            || v.backoff_lookback_secs > 366 * 86_400
            || v.backoff_max_secs > v.backoff_lookback_secs
        {
            return Err(SettingsError::Invalid(
                "verification: need 1 <= backoff_base_secs <= backoff_max_secs <= \
                 backoff_lookback_secs, window_secs <= backoff_lookback_secs <= one year"
                    .into(),
            ));
        }
        if self.import.max_record_bytes < 256
            || self.import.max_listed_rejections == 0
            || self.import.max_total_bytes < self.import.max_record_bytes as u64
        {
            return Err(SettingsError::Invalid(
                "import: max_record_bytes must be at least 256, max_listed_rejections at least 1, \
                 and max_total_bytes at least max_record_bytes"
                    .into(),
            ));
        }
        self.retention
            .validate(&self.verification)
            .map_err(SettingsError::Invalid)?;
        self.events.validate().map_err(SettingsError::Invalid)?;
        self.webhooks.validate().map_err(SettingsError::Invalid)?;
        self.hosted.validate().map_err(SettingsError::Invalid)?;
        if self.auth.max_concurrent_hashes == 0 {
            return Err(SettingsError::Invalid(
                "auth.max_concurrent_hashes must be at least 1".into(),
            ));
        }
        if self.profile == Profile::Production {
            let hosted = &self.hosted;
            if !hosted.public_url.is_empty() && !hosted.public_url.starts_with("https://") {
                return Err(SettingsError::Invalid(
                    "hosted.public_url must be an https origin in production".into(),
                ));
            }
            if hosted.public_url.is_empty() && !hosted.return_origins.is_empty() {
                return Err(SettingsError::Invalid(
                    "hosted.return_origins is set but hosted.public_url is not: the page's \
                     links need the origin shoppers reach it on (https://…)"
                        .into(),
                ));
            }
            let offending = self.development_values_in_use();
            if !offending.is_empty() {
                return Err(SettingsError::DevelopmentSecrets(offending));
            }
        }
        Ok(())
    }

    /// Names each setting that still holds its public development value.
    fn development_values_in_use(&self) -> Vec<String> {
        let defaults: toml_defaults::Defaults = match toml_defaults::parse(DEVELOPMENT_DEFAULTS) {
            Ok(defaults) => defaults,
            Err(_) => return vec!["the compiled-in development defaults are unreadable".into()],
        };
        let mut offending = Vec::new();
        if self.database.url.expose_secret() == defaults.database_url {
            offending.push("database.url is the development database (set DATABASE_URL)".into());
        }
        for (name, secret) in self.secrets.named() {
            if defaults.secrets.get(name).map(String::as_str) == Some(secret.expose_secret()) {
                offending.push(format!(
                    "secrets.{name} is the development value (set OFFERGATE_SECRETS__{})",
                    name.to_uppercase()
                ));
            }
        }
        offending
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.server.request_timeout_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_grace_secs)
    }
}

impl SecretSettings {
    fn named(&self) -> [(&'static str, &SecretString); 2] {
        [
            ("blind_index_key", &self.blind_index_key),
            ("key_encryption_key", &self.key_encryption_key),
        ]
    }
}

mod toml_defaults {
    use std::collections::HashMap;

    pub struct Defaults {
        pub database_url: String,
        pub secrets: HashMap<String, String>,
    }

    #[derive(serde::Deserialize)]
    struct File {
        database: Database,
        secrets: HashMap<String, String>,
    }

    #[derive(serde::Deserialize)]
    struct Database {
        url: String,
    }

    pub fn parse(text: &str) -> Result<Defaults, config::ConfigError> {
        let file: File = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        Ok(Defaults {
            database_url: file.database.url,
            secrets: file.secrets,
        })
    }
}
