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
    let admin = app.key(offergate::domain::api_key::Role::Admin).await;
    assert_eq!(app.get_with_key("/v1/offers", &admin).await.status(), 200);

    link.cut().await;
    assert_problem(app.get("/readyz").await, 503, "unavailable").await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    // A request that needs the database is the caller's to retry, not a
    // failure of offergate's: 503 with Retry-After, never 500.
    let away = app.get_with_key("/v1/offers", &admin).await;
    assert!(away.headers().contains_key("retry-after"), "{away:?}");
    let problem = assert_problem(away, 503, "unavailable").await;
    assert_eq!(
        problem["detail"],
        "The database is unreachable; retry shortly."
    );

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
        "POST /v1/verification-sessions",
        "GET /v1/verification-sessions/{id}",
        "POST /v1/verification-sessions/{id}/cancel",
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
        "GET /v1/events",
        "POST /v1/events/{id}/redeliver",
        "GET /v1/webhook-endpoints",
        "POST /v1/webhook-endpoints",
        "GET /v1/webhook-endpoints/{id}",
        "PATCH /v1/webhook-endpoints/{id}",
        "DELETE /v1/webhook-endpoints/{id}",
        "POST /v1/webhook-endpoints/{id}/rotate-secret",
        "GET /v1/webhook-endpoints/{id}/deliveries",
        "POST /v1/webhook-endpoints/{id}/recover",
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

/// Every operation of the OpenAPI document, as (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            all.push((method.clone(), path.clone(), op.clone()));
        }
    }
    all
}

/// The response of `op` for `status`, following a `$ref` into components.
fn response<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let declared = op["responses"].get(status.to_string())?;
    match declared.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc.pointer(reference.trim_start_matches('#')),
        None => Some(declared),
    }
}

#[tokio::test]
async fn every_operation_documents_the_failures_it_can_answer_with_as_problems() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    for (method, path, op) in operations(&doc) {
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        let has_body = op.get("requestBody").is_some();
        let has_path_params = path.contains('{');
        let mut expected = vec![503];
        if secured {
            expected.extend([401, 403]);
        }
        if has_body {
            expected.extend([413, 415]);
        }
        if has_path_params {
            expected.extend([400, 404]);
        }
        for status in expected {
            let documented = response(&doc, &op, status)
                .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
            let schema = &documented["content"]["application/problem+json"]["schema"];
            let types = schema["allOf"][1]["properties"]["type"]["enum"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} {status}: no problem types"));
            assert!(!types.is_empty());
            assert!(
                documented["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty())
            );
        }
        for (status, answer) in op["responses"].as_object().unwrap() {
            let answer = match answer.get("$ref") {
                Some(_) => response(&doc, &op, status.parse().unwrap()).unwrap(),
                None => answer,
            };
            assert!(
                answer["description"].is_string(),
                "{method} {path} {status} has no description"
            );
        }
    }
}

#[tokio::test]
async fn every_reference_in_the_openapi_document_resolves_and_operation_ids_are_unique() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();

    fn walk<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
        match value {
            Value::Object(members) => {
                if let Some(Value::String(reference)) = members.get("$ref") {
                    refs.push(reference);
                }
                members.values().for_each(|v| walk(v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(refs.len() > 50, "the document references its components");
    for reference in refs {
        assert!(
            doc.pointer(reference.trim_start_matches('#')).is_some(),
            "{reference} does not resolve"
        );
    }

    let ids: Vec<String> = operations(&doc)
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");

    // Links name operations that exist.
    for (_, _, op) in operations(&doc) {
        for answer in op["responses"].as_object().unwrap().values() {
            for link in answer["links"]
                .as_object()
                .into_iter()
                .flat_map(|l| l.values())
            {
                let target = link["operationId"].as_str().unwrap();
                assert!(ids.iter().any(|id| id == target), "link to {target}");
            }
        }
    }
}

#[tokio::test]
async fn only_the_roles_the_document_names_get_in_and_others_are_refused_first() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let keys = [
        (
            "admin",
            app.key(offergate::domain::api_key::Role::Admin).await,
        ),
        (
            "checkout",
            app.key(offergate::domain::api_key::Role::Checkout).await,
        ),
        (
            "partner",
            app.key(offergate::domain::api_key::Role::Partner).await,
        ),
    ];

    for (method, path, op) in operations(&doc) {
        let Some(security) = op["security"].as_array().filter(|s| !s.is_empty()) else {
            continue;
        };
        let roles: Vec<&str> = security[0]["api_key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(!roles.is_empty(), "{method} {path} names no role");
        // The path holds an id that is not one and the body is not JSON: a
        // key of the wrong role is refused before either is read.
        let concrete = path
            .replace("{id}", "not-an-id")
            .replace("{key}", "Not A Key");
        for (role, key) in &keys {
            let mut request = app
                .client
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .bearer_auth(key);
            if op.get("requestBody").is_some() {
                request = request.header("content-type", "application/json").body("{");
            }
            let response = request.send().await.unwrap();
            let refused = response.status() == 403
                && response.json::<Value>().await.unwrap()["type"] == "forbidden";
            assert_eq!(
                refused,
                !roles.contains(role),
                "{method} {path} as {role}: the document names {roles:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_document_states_the_limits_the_server_enforces() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schema = |name: &str| doc["components"]["schemas"][name].clone();

    let offer = schema("OfferBody");
    assert_eq!(offer["properties"]["title"]["minLength"], 1);
    assert_eq!(offer["properties"]["title"]["maxLength"], 200);
    assert_eq!(offer["properties"]["communities"]["minItems"], 1);
    assert_eq!(offer["properties"]["token_ttl_secs"]["minimum"], 10);
    assert_eq!(offer["properties"]["total_cap"]["minimum"], 1);
    let discount = schema("Discount");
    let fixed = &discount["oneOf"][1]["properties"];
    assert_eq!(fixed["amount_minor"]["minimum"], 1);
    assert_eq!(fixed["currency"]["pattern"], "^[A-Z]{3}$");
    assert_eq!(schema("CommunityKey")["pattern"], "^[a-z][a-z0-9_]{1,62}$");
    assert!(schema("CreateCommunity")["properties"]["required_fields"]["anyOf"].is_array());
    assert_eq!(
        schema("CreateKey")["then"]["required"],
        serde_json::json!(["partner_id"])
    );

    let list = doc["paths"]["/v1/redemptions"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| {
        list.iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"].clone())
            .unwrap()
    };
    assert_eq!(param("limit")["minimum"], 1);
    assert_eq!(param("limit")["maximum"], 1000);
    assert_eq!(param("since")["format"], "date-time");
}
