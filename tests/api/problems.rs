use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use offergate::domain::api_key::Role;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::helpers::{assert_problem, settings_from, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"role": "admin""#)
        .send()
        .await
        .unwrap();

    assert_problem(response, 400, "malformed_json").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("role=admin")
        .send()
        .await
        .unwrap();

    assert_problem(response, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(|s| s.server.body_limit_bytes = 1024).await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&admin)
        .json(&json!({"role": "admin", "name": "x".repeat(4096)}))
        .send()
        .await
        .unwrap();

    assert_problem(response, 413, "payload_too_large").await;
}

#[tokio::test]
async fn invalid_missing_and_unknown_fields_are_named_in_a_422() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let cases = [
        (json!({"role": "superuser"}), "role"),
        (json!({"name": "no role"}), "role"),
        (json!({"role": "admin", "colour": "red"}), "colour"),
        (
            json!({"role": "admin", "partner_id": "not-a-uuid"}),
            "partner_id",
        ),
        (json!({"role": "admin", "name": "n".repeat(201)}), "name"),
        // A member named by the empty string is named by where it sits.
        (json!({"role": "admin", "": 1}), "body"),
    ];

    for (body, field) in cases {
        let response = app
            .client
            .post(app.url("/v1/api-keys"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(
            problem["errors"][0]["field"], field,
            "for {body}: {problem}"
        );
        if body.get("").is_some() {
            assert!(
                problem["detail"].as_str().unwrap().contains("empty name"),
                "{problem}"
            );
        }
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;

    assert_problem(app.get("/v1/no-such-thing").await, 404, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_that_keeps_the_allow_header() {
    let app = spawn_app().await;

    let response = app.client.put(app.url("/healthz")).send().await.unwrap();

    assert!(
        response.headers()["allow"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    assert_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_callers() {
    let app = spawn_app().await;

    let fresh = app.get("/nowhere").await;
    let given = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "checkout-42")
        .send()
        .await
        .unwrap();

    assert!(!fresh.headers()["x-request-id"].is_empty());
    assert_eq!(given.headers()["x-request-id"], "checkout-42");
}

fn test_server_settings() -> offergate::config::ServerSettings {
    let mut settings = settings_from(Default::default()).unwrap();
    settings.server.request_timeout_secs = 1;
    settings.server
}

async fn problem_of(router: Router, path: &str) -> (u16, Value, Option<String>) {
    let app = offergate::http::with_layers(router, &test_server_settings());
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap(), request_id)
}

#[tokio::test]
async fn a_panicking_handler_gives_a_500_problem_that_reveals_nothing() {
    let router = Router::new().route(
        "/boom",
        get(|| async {
            if std::hint::black_box(true) {
                panic!("connection string postgres://secret@db");
            }
            "unreachable"
        }),
    );

    let (status, body, request_id) = problem_of(router, "/boom").await;

    assert_eq!(status, 500);
    assert_eq!(body["type"], "internal");
    assert!(!body.to_string().contains("secret"));
    assert!(request_id.is_some());
}

#[tokio::test]
async fn a_request_past_the_deadline_gives_a_503_timeout_problem() {
    let router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );

    let (status, body, _) = problem_of(router, "/slow").await;

    assert_eq!(status, 503);
    assert_eq!(body["type"], "timeout");
}

#[tokio::test]
async fn an_integral_number_written_with_a_fraction_is_an_integer() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .client
        .post(app.url("/v1/offers"))
        .bearer_auth(&admin)
        .json(&json!({
            "title": "Student week",
            "communities": ["student"],
            "discount": {"kind": "percent", "percent_off": 10},
            "token_ttl_secs": 900.0,
        }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    let offer: Value = response.json().await.unwrap();
    assert_eq!(offer["token_ttl_secs"], 900);

    let response = app
        .client
        .post(app.url("/v1/offers"))
        .bearer_auth(&admin)
        .json(&json!({
            "title": "Student week",
            "communities": ["student"],
            "discount": {"kind": "percent", "percent_off": 10},
            "token_ttl_secs": 900.5,
        }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "token_ttl_secs");
}

#[tokio::test]
async fn a_reversal_whose_body_is_null_is_a_reversal_without_a_reason() {
    let app = spawn_app().await;
    let checkout = app.key(Role::Checkout).await;

    let response = app
        .client
        .post(app.url("/v1/redemptions/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/reverse"))
        .bearer_auth(&checkout)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .unwrap();

    // The body is read as no body: what is left is that no such redemption exists.
    assert_problem(response, 404, "not_found").await;
}
