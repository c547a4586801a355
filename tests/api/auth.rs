use std::time::Duration;

use offergate::domain::api_key::{ApiKey, KeyId, Role};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, spawn_app_with};

const ADMIN_ROUTE: &str = "/v1/api-keys";

#[tokio::test]
async fn an_admin_key_reaches_an_admin_route() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app.get_with_key(ADMIN_ROUTE, &admin).await;

    assert_eq!(response.status(), 200);
    let keys: Vec<Value> = response.json().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["role"], "admin");
    assert!(keys[0].get("secret_hash").is_none() && keys[0].get("key").is_none());
}

#[tokio::test]
async fn a_request_without_a_key_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;

    let response = app.get(ADMIN_ROUTE).await;

    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_key_sent_with_another_scheme_is_401() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .client
        .get(app.url(ADMIN_ROUTE))
        .header("Authorization", format!("Basic {admin}"))
        .send()
        .await
        .unwrap();

    assert_problem(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn malformed_keys_are_refused_without_hashing() {
    let app = spawn_app().await;
    let valid = app.key(Role::Admin).await;
    let truncated = &valid[..valid.len() - 1];
    let wrong_prefix = valid.replacen("ogk_", "sk__", 1);

    for bad in ["", "hunter2", truncated, wrong_prefix.as_str()] {
        let response = app.get_with_key(ADMIN_ROUTE, bad).await;
        assert_problem(response, 401, "unauthorized").await;
    }

    assert_eq!(app.hashes_computed(), 0);
}

#[tokio::test]
async fn a_key_with_a_wrong_checksum_is_refused_without_hashing() {
    let app = spawn_app().await;
    let valid = app.key(Role::Admin).await;
    let mut typo: Vec<char> = valid.chars().collect();
    typo[30] = if typo[30] == 'x' { 'y' } else { 'x' };
    let typo: String = typo.into_iter().collect();

    let body = assert_problem(
        app.get_with_key(ADMIN_ROUTE, &typo).await,
        401,
        "unauthorized",
    )
    .await;

    assert!(body["detail"].as_str().unwrap().contains("checksum"));
    assert_eq!(app.hashes_computed(), 0);
}

#[tokio::test]
async fn an_unknown_key_is_refused_without_hashing() {
    let app = spawn_app().await;
    let unknown = ApiKey::generate();

    let response = app.get_with_key(ADMIN_ROUTE, unknown.expose()).await;

    assert_problem(response, 401, "unauthorized").await;
    assert_eq!(app.hashes_computed(), 0);
}

#[tokio::test]
async fn a_wrong_secret_for_a_real_key_id_is_refused_and_hashed_only_once() {
    let app = spawn_app().await;
    let real = ApiKey::parse(&app.key(Role::Admin).await).unwrap();
    let forged = ApiKey::assemble(real.id(), &"A".repeat(32));
    assert!(
        ApiKey::parse(forged.expose()).is_ok(),
        "forged key is well formed"
    );

    for _ in 0..10 {
        let response = app.get_with_key(ADMIN_ROUTE, forged.expose()).await;
        assert_problem(response, 401, "unauthorized").await;
    }

    assert_eq!(app.hashes_computed(), 1);
}

#[tokio::test]
async fn a_checkout_key_on_an_admin_route_is_403() {
    let app = spawn_app().await;
    let checkout = app.key(Role::Checkout).await;

    let response = app.get_with_key(ADMIN_ROUTE, &checkout).await;

    let body = assert_problem(response, 403, "forbidden").await;
    assert!(body["detail"].as_str().unwrap().contains("admin"));
}

#[tokio::test]
async fn a_partner_key_on_an_admin_route_is_403() {
    let app = spawn_app().await;
    let partner = app.key(Role::Partner).await;

    assert_problem(
        app.get_with_key(ADMIN_ROUTE, &partner).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn many_concurrent_requests_with_a_new_key_pay_one_hash() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let requests = (0..32).map(|_| app.get_with_key(ADMIN_ROUTE, &admin));
    let responses = futures::future::join_all(requests).await;

    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(app.hashes_computed(), 1);
}

#[tokio::test]
async fn a_revoked_key_is_refused_once_the_revocation_delay_has_passed() {
    let app = spawn_app_with(|s| s.auth.revocation_delay_secs = 1).await;
    let admin = app.key(Role::Admin).await;
    let doomed = app.key(Role::Admin).await;
    assert_eq!(app.get_with_key(ADMIN_ROUTE, &doomed).await.status(), 200);
    let doomed_id = ApiKey::parse(&doomed).unwrap().id().to_string();

    let revoked = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{doomed_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoked: Value = revoked.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let body = assert_problem(
        app.get_with_key(ADMIN_ROUTE, &doomed).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("revoked"));
    // The recheck after the delay is a lookup, not a second hash.
    assert_eq!(app.hashes_computed(), 2);
}

#[tokio::test]
async fn a_key_created_over_the_api_is_shown_once_and_works() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let created = app
        .client
        .post(app.url(ADMIN_ROUTE))
        .bearer_auth(&admin)
        .json(&json!({"role": "checkout", "name": "web checkout"}))
        .send()
        .await
        .unwrap();

    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let key = created["key"].as_str().unwrap();
    assert_eq!(created["role"], "checkout");
    assert_eq!(created["name"], "web checkout");
    assert_eq!(ApiKey::parse(key).unwrap().id().as_str(), created["id"]);
    let listed: Value = app
        .get_with_key(ADMIN_ROUTE, &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !listed.to_string().contains(key),
        "the secret is never listed"
    );
    assert_problem(app.get_with_key(ADMIN_ROUTE, key).await, 403, "forbidden").await;
}

#[tokio::test]
async fn a_partner_key_must_name_its_partner_and_only_partner_keys_may() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let create = |body: Value| {
        app.client
            .post(app.url(ADMIN_ROUTE))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };

    let without = create(json!({"role": "partner"})).await.unwrap();
    let body = assert_problem(without, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "partner_id");

    let unknown = create(json!({"role": "partner", "partner_id": uuid::Uuid::new_v4()}))
        .await
        .unwrap();
    assert_problem(unknown, 422, "validation_failed").await;
    let partner_id = offergate::store::partners::insert(&app.db, "Skyways")
        .await
        .unwrap()
        .id;
    let misplaced = create(json!({"role": "checkout", "partner_id": partner_id}))
        .await
        .unwrap();
    assert_problem(misplaced, 422, "validation_failed").await;

    let bound = create(json!({"role": "partner", "partner_id": partner_id}))
        .await
        .unwrap();
    assert_eq!(bound.status(), 201);
    let bound: Value = bound.json().await.unwrap();
    assert_eq!(bound["partner_id"], partner_id.to_string());
}

#[tokio::test]
async fn revoking_an_unknown_key_is_404() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let unknown = KeyId::parse("AAAAAAAAAAAA").unwrap();

    for id in [unknown.as_str(), "not-a-key-id"] {
        let response = app
            .client
            .delete(app.url(&format!("/v1/api-keys/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_problem(response, 404, "not_found").await;
    }
}
