use std::collections::HashMap;

use offergate::config::{LogFormat, Profile, SettingsError};
use secrecy::ExposeSecret;

use crate::helpers::{TestDatabase, offergate_command, settings_from};

const FRESH_BLIND_INDEX_KEY: &str =
    "1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";
const FRESH_KEK: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_fresh_clone_gets_working_development_defaults() {
    let settings = settings_from(HashMap::new()).unwrap();

    assert_eq!(settings.profile, Profile::Development);
    assert_eq!(settings.server.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(
        settings.database.url.expose_secret(),
        "postgres://postgres@127.0.0.1:5432/offergate"
    );
    assert!(settings.database.create_if_missing && settings.database.migrate_on_start);
    assert_eq!(settings.log.format, LogFormat::Pretty);
}

#[test]
fn environment_variables_override_the_files() {
    let settings = settings_from(env(&[
        ("OFFERGATE_SERVER__BIND", "0.0.0.0:9999"),
        ("OFFERGATE_AUTH__REVOCATION_DELAY_SECS", "2"),
        ("DATABASE_URL", "postgres://app:pw@db:5432/offers"),
    ]))
    .unwrap();

    assert_eq!(settings.server.bind.to_string(), "0.0.0.0:9999");
    assert_eq!(settings.auth.revocation_delay_secs, 2);
    assert_eq!(
        settings.database.url.expose_secret(),
        "postgres://app:pw@db:5432/offers"
    );
}

#[test]
fn the_production_profile_refuses_development_secrets_and_names_each() {
    let error = settings_from(env(&[("OFFERGATE_PROFILE", "production")])).unwrap_err();

    let SettingsError::DevelopmentSecrets(offending) = &error else {
        panic!("expected the development-secrets refusal, got {error}");
    };
    let message = error.to_string();
    assert_eq!(offending.len(), 3, "{message}");
    for name in [
        "database.url",
        "secrets.blind_index_key",
        "secrets.key_encryption_key",
    ] {
        assert!(message.contains(name), "{message} names {name}");
    }
}

#[test]
fn the_production_profile_names_the_one_development_secret_left() {
    let error = settings_from(env(&[
        ("OFFERGATE_PROFILE", "production"),
        ("DATABASE_URL", "postgres://app:pw@db/offergate"),
        ("OFFERGATE_SECRETS__BLIND_INDEX_KEY", FRESH_BLIND_INDEX_KEY),
    ]))
    .unwrap_err();

    let message = error.to_string();
    assert!(message.contains("secrets.key_encryption_key"), "{message}");
    assert!(!message.contains("blind_index_key"), "{message}");
}

#[test]
fn the_production_profile_starts_with_its_own_secrets() {
    let settings = settings_from(env(&[
        ("OFFERGATE_PROFILE", "production"),
        ("DATABASE_URL", "postgres://app:pw@db/offergate"),
        ("OFFERGATE_SECRETS__BLIND_INDEX_KEY", FRESH_BLIND_INDEX_KEY),
        ("OFFERGATE_SECRETS__KEY_ENCRYPTION_KEY", FRESH_KEK),
    ]))
    .unwrap();

    assert_eq!(settings.profile, Profile::Production);
    assert_eq!(settings.log.format, LogFormat::Json);
    assert!(!settings.database.create_if_missing && !settings.database.migrate_on_start);
}

#[test]
fn secrets_and_the_database_password_never_print() {
    let settings = settings_from(env(&[
        ("DATABASE_URL", "postgres://app:hunter2@db/offergate"),
        ("OFFERGATE_SECRETS__BLIND_INDEX_KEY", FRESH_BLIND_INDEX_KEY),
    ]))
    .unwrap();

    let shown = format!("{settings:?}");

    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains(FRESH_BLIND_INDEX_KEY));
    assert!(!shown.contains(&settings.secrets.key_encryption_key.expose_secret()[..16]));
}

#[test]
fn a_secret_that_is_not_32_bytes_of_hex_is_refused() {
    let error =
        settings_from(env(&[("OFFERGATE_SECRETS__BLIND_INDEX_KEY", "password")])).unwrap_err();

    assert!(error.to_string().contains("secrets.blind_index_key"));
}

#[test]
fn the_binary_refuses_to_serve_in_production_with_development_secrets() {
    let database = TestDatabase::new();

    let output = offergate_command(crate::helpers::DEFAULT_DATABASE_URL)
        .env("OFFERGATE_PROFILE", "production")
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("secrets.blind_index_key"), "{stderr}");
    assert!(stderr.contains("secrets.key_encryption_key"), "{stderr}");
    drop(database);
}
