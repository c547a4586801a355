use std::time::Duration;

use axum::body::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use offergate::domain::api_key::Role;
use serde_json::Value;

use crate::helpers::{ServerProcess, TestDatabase, spawn_app};

type Chunk = Result<Bytes, std::io::Error>;

/// Starts a POST whose body arrives in two parts, so the request is in
/// flight until the second part is sent.
fn slow_create_key(
    client: &reqwest::Client,
    url: String,
    admin: &str,
) -> (
    mpsc::Sender<Chunk>,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let (mut tx, rx) = mpsc::channel::<Chunk>(4);
    let request = client
        .post(url)
        .bearer_auth(admin)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    let in_flight = tokio::spawn(request);
    let _ = tx.try_send(Ok(Bytes::from_static(b"{\"role\": ")));
    (tx, in_flight)
}

async fn finish(mut tx: mpsc::Sender<Chunk>) {
    tx.send(Ok(Bytes::from_static(b"\"checkout\"}")))
        .await
        .unwrap();
    tx.close_channel();
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let mut app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let (tx, in_flight) = slow_create_key(&app.client, app.url("/v1/api-keys"), &admin);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(tx).await;

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["role"], "checkout");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops after its last request")
        .unwrap()
        .unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(app.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly_after_its_in_flight_request() {
    let database = TestDatabase::new();
    let mut server = ServerProcess::start(&database.url);
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let (key, _) = offergate::auth::create_key(&db, Role::Admin, None, "sigterm")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/healthz", server.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (tx, in_flight) = slow_create_key(
        &client,
        format!("{}/v1/api-keys", server.address),
        key.expose(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    finish(tx).await;

    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201, "{:?}", server.log.lock().unwrap());
    let status = server.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(log.contains("offergate stopped"));
    assert!(!log.contains(key.expose()), "the key never reaches the log");
    db.close().await;
}
