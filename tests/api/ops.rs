use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{DatabaseLink, TestDatabase, assert_problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn readyz_answers_ready_while_the_database_is_reachable() {
    let app = spawn_app().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn a_process_pointed_at_a_dead_database_starts_and_reports_unready() {
    let app = spawn_app_with(|s| {
        s.database.url = SecretString::from("postgres://postgres@127.0.0.1:1/offergate".to_owned());
        s.database.create_if_missing = false;
        s.database.migrate_on_start = false;
        s.database.acquire_timeout_secs = 1;
    })
    .await;

    assert_eq!(app.get("/healthz").await.status(), 200);
    let body = assert_problem(app.get("/readyz").await, 503, "unavailable").await;
    assert!(body["detail"].as_str().unwrap().contains("database"));
}

#[tokio::test]
async fn readyz_fails_while_the_database_is_away_and_recovers_without_a_restart() {
    let link = DatabaseLink::start().await;
    let database = TestDatabase::new();
    let through_link = link.url_for(&database.name);
    let app = spawn_app_with(move |s| {
        s.database.url = SecretString::from(through_link);
        s.database.acquire_timeout_secs = 1;
    })
    .await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    link.cut().await;
    assert_problem(app.get("/readyz").await, 503, "unavailable").await;
    assert_eq!(app.get("/healthz").await.status(), 200);

    link.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.get("/readyz").await.status();
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(database);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_the_pool() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/no-such-route").await;

    let response = app.get("/metrics").await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    let counted = text.lines().any(|line| {
        line.starts_with("http_requests_total")
            && line.contains(r#"route="/healthz""#)
            && line.contains(r#"status="200""#)
    });
    assert!(counted, "{text}");
    assert!(text.contains(r#"route="unmatched""#));
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"db_pool_connections{state="idle"}"#));
    assert!(text.contains("db_pool_max_connections"));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    let expected: BTreeSet<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /docs",
        "GET /v1/api-keys",
        "POST /v1/api-keys",
        "DELETE /v1/api-keys/{id}",
        "GET /v1/communities",
        "POST /v1/communities",
        "GET /v1/communities/{key}",
        "PATCH /v1/communities/{key}",
        "DELETE /v1/communities/{key}",
        "POST /v1/records/import",
        "POST /v1/verifications",
        "POST /v1/people/erase",
        "GET /.well-known/jwks.json",
        "GET /v1/partners",
        "POST /v1/partners",
        "GET /v1/offers",
        "POST /v1/offers",
        "GET /v1/offers/{id}",
        "PUT /v1/offers/{id}",
        "GET /v1/offers/{id}/stats",
        "POST /v1/tokens",
        "POST /v1/tokens/validate",
        "POST /v1/tokens/{id}/revoke",
        "POST /v1/redemptions",
        "GET /v1/redemptions",
        "GET /v1/redemptions/{id}",
        "POST /v1/redemptions/{id}/reverse",
        "POST /v1/redemptions/{id}/confirm",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(routes, expected);
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "AAAAAAAAAAAA")
                .replace("{key}", "student");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .client
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            assert!(
                ![404, 405].contains(&response.status().as_u16()),
                "{method} {path} is documented but answers {}",
                response.status()
            );
        }
    }
}

#[tokio::test]
async fn the_docs_page_works_offline_and_covers_the_api() {
    let app = spawn_app().await;

    let response = app.get("/docs").await;

    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("/v1/api-keys"));
    assert!(html.contains("schema-Problem"));
    for external in ["<script", "<link", "src=\"http", "href=\"http", "@import"] {
        assert!(!html.contains(external), "the page loads {external}");
    }
}
