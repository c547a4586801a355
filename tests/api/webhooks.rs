//! Webhook endpoints and delivery per Standard Webhooks: a receiver in the
//! test verifies every delivery with the `standardwebhooks` crate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestApp, spawn_app_with, student, url_for_database};

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub body: Value,
    pub signatures: usize,
    pub answered: u16,
}

#[derive(Default)]
struct Seen {
    deliveries: Vec<Delivery>,
    in_flight: HashMap<String, usize>,
    /// The most deliveries of one webhook-id in flight at once.
    most_at_once: usize,
    /// The most deliveries of any ids in flight at once.
    busiest: usize,
    started: usize,
    attempts_by_id: HashMap<String, usize>,
}

/// What the receiver's handler shares with the test.
type Shared = (Arc<Mutex<Seen>>, Arc<Mutex<Behaviour>>);

#[derive(Clone)]
struct Behaviour {
    secrets: Vec<String>,
    /// Attempts of each webhook-id answered 500 before one is accepted.
    fail_first: usize,
    /// Every answer waits this long.
    delay: Duration,
    /// Answer every delivery with this status instead.
    status: Option<u16>,
}

/// An HTTP receiver on 127.0.0.1:0 that verifies each delivery's signature
/// with every secret it holds (each must pass) and records it.
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Seen>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

async fn receive(
    State((seen, behaviour)): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let behaviour = behaviour.lock().unwrap().clone();
    for secret in &behaviour.secrets {
        let verifier = standardwebhooks::Webhook::new(secret).expect("a whsec_ secret");
        if verifier.verify(&body, &headers).is_err() {
            return StatusCode::UNAUTHORIZED;
        }
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    let attempt = {
        let mut seen = seen.lock().unwrap();
        seen.started += 1;
        let now = {
            let n = seen.in_flight.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        seen.most_at_once = seen.most_at_once.max(now);
        let total: usize = seen.in_flight.values().sum();
        seen.busiest = seen.busiest.max(total);
        let attempt = seen.attempts_by_id.entry(id.clone()).or_default();
        *attempt += 1;
        *attempt
    };
    // Out of flight when answered, or when the sender hangs up.
    let _in_flight = InFlight {
        seen: seen.clone(),
        id: id.clone(),
    };
    tokio::time::sleep(behaviour.delay).await;
    let status = match behaviour.status {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None if attempt <= behaviour.fail_first => StatusCode::INTERNAL_SERVER_ERROR,
        None => StatusCode::NO_CONTENT,
    };
    seen.lock().unwrap().deliveries.push(Delivery {
        webhook_id: id,
        body: serde_json::from_slice(&body).expect("a JSON body"),
        signatures: headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        answered: status.as_u16(),
    });
    status
}

struct InFlight {
    seen: Arc<Mutex<Seen>>,
    id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut seen) = self.seen.lock()
            && let Some(n) = seen.in_flight.get_mut(&self.id)
        {
            *n -= 1;
        }
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let behaviour = Arc::new(Mutex::new(Behaviour {
            secrets: Vec::new(),
            fail_first: 0,
            delay: Duration::ZERO,
            status: None,
        }));
        let router = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state((seen.clone(), behaviour.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            seen,
            behaviour,
        }
    }

    pub fn trust(&self, secret: &str) {
        self.behaviour.lock().unwrap().secrets = vec![secret.to_owned()];
    }

    /// Requires every one of `secrets` to verify each delivery.
    pub fn trust_all(&self, secrets: &[&str]) {
        self.behaviour.lock().unwrap().secrets = secrets.iter().map(|s| s.to_string()).collect();
    }

    fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }

    /// Deliveries it accepted (2xx).
    pub fn accepted(&self) -> Vec<Delivery> {
        self.seen
            .lock()
            .unwrap()
            .deliveries
            .iter()
            .filter(|d| (200..300).contains(&d.answered))
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().deliveries.clone()
    }

    fn started(&self) -> usize {
        self.seen.lock().unwrap().started
    }

    fn busiest(&self) -> usize {
        self.seen.lock().unwrap().busiest
    }

    fn most_at_once(&self) -> usize {
        self.seen.lock().unwrap().most_at_once
    }

    /// Waits until `done` holds of the accepted deliveries, at most `limit`.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Delivery]) -> bool) {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.accepted()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "deliveries not in time: {:?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Fast delivery for tests: short polls and retries.
fn fast(settings: &mut offergate::config::Settings) {
    settings.webhooks.poll_interval_ms = 20;
    settings.webhooks.retry_delays_ms = vec![50, 50, 50, 50];
    settings.webhooks.request_timeout_ms = 2_000;
    settings.webhooks.lease_ms = 3_000;
    settings.events.job_interval_ms = 100;
}

/// Registers an endpoint with `key`; its id and secret.
pub async fn register(app: &TestApp, key: &str, body: Value) -> (String, String) {
    let response = app.post_json(key, "/v1/webhook-endpoints", body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_redeemed_token_reaches_the_endpoint_signed_and_verifiable() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    let setup = app.offer_setup().await;
    let (endpoint, secret) = register(
        &app,
        &setup.admin,
        json!({"url": receiver.url, "event_types": ["token.redeemed"]}),
    )
    .await;
    receiver.trust(&secret);
    assert!(secret.starts_with("whsec_"));
    let offer = app.offer(&setup.admin, json!({})).await;
    let offer_id = offer["id"].as_str().unwrap();
    let granted: Value = app
        .token(&setup.checkout, &setup.membership_id, offer_id)
        .await
        .json()
        .await
        .unwrap();
    let redeemed: Value = app
        .redeem(
            &setup.checkout,
            "k1",
            granted["token"].as_str().unwrap(),
            "order-1",
        )
        .await
        .json()
        .await
        .unwrap();

    receiver
        .wait_for(Duration::from_secs(10), |d| !d.is_empty())
        .await;
    let delivery = &receiver.accepted()[0];
    assert_eq!(delivery.body["type"], "token.redeemed");
    assert_eq!(delivery.body["id"], delivery.webhook_id);
    let data = &delivery.body["data"];
    assert_eq!(data["redemption_id"], redeemed["id"]);
    assert_eq!(data["offer_id"], offer_id);
    assert_eq!(data["amount_minor"], 12900);
    assert_eq!(data["discount"]["kind"], "percent");
    // Nothing of the person, nor the order.
    let text = delivery.body.to_string();
    for private in ["Ana", "Lima", "2004", "order-1", &setup.membership_id] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    // The secret is never shown again.
    let shown: Value = app
        .get_with_key(&format!("/v1/webhook-endpoints/{endpoint}"), &setup.admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(shown.get("secret").is_none());
    assert!(!shown.to_string().contains(&secret[6..]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log: Value = app
            .get_with_key(
                &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
                &setup.admin,
            )
            .await
            .json()
            .await
            .unwrap();
        if log["items"] != json!([]) || tokio::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(log["items"][0]["outcome"], "delivered");
    assert_eq!(log["items"][0]["status_code"], 204);
    assert_eq!(log["items"][0]["event_id"], delivery.webhook_id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains(r#"events_written_total{type="token.redeemed"}"#)
            && metrics.contains(r#"webhook_deliveries_total{outcome="delivered"}"#)
            && metrics.contains("webhook_outbox_lag_seconds")
            && metrics.contains("webhook_oldest_undelivered_event_age_seconds")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_and_the_log_shows_four() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    receiver.set(|b| b.fail_first = 3);
    let setup = app.offer_setup().await;
    let (endpoint, secret) = register(
        &app,
        &setup.admin,
        json!({"url": receiver.url, "event_types": ["token.issued"]}),
    )
    .await;
    receiver.trust(&secret);
    let offer = app.offer(&setup.admin, json!({})).await;
    let granted = app
        .token(
            &setup.checkout,
            &setup.membership_id,
            offer["id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(granted.status(), 201);

    receiver
        .wait_for(Duration::from_secs(10), |d| !d.is_empty())
        .await;
    let all = receiver.all();
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|d| d.webhook_id == all[0].webhook_id));
    assert_eq!(
        all.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [500, 500, 500, 204]
    );
    // The success is logged once its answer is in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log: Value = app
            .get_with_key(
                &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
                &setup.admin,
            )
            .await
            .json()
            .await
            .unwrap();
        if log["items"].as_array().unwrap().len() >= 4 || tokio::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 4, "{log}");
    // Newest first.
    let attempts: Vec<(i64, &str, i64)> = items
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (4, "delivered", 204),
            (3, "failed", 500),
            (2, "failed", 500),
            (1, "failed", 500)
        ]
    );
    assert!(items.iter().all(|a| a["latency_ms"].as_i64().unwrap() >= 0));
    let shown: Value = app
        .get_with_key(&format!("/v1/webhook-endpoints/{endpoint}"), &setup.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["failing_since"],
        Value::Null,
        "a success ends the run"
    );
}

#[tokio::test]
async fn a_partner_endpoint_never_receives_another_partners_event() {
    let app = spawn_app_with(fast).await;
    let setup = app.offer_setup().await;
    let other_partner = offergate::store::partners::insert(&app.db, "Railways")
        .await
        .unwrap()
        .id;
    let (other_key, _) =
        offergate::auth::create_key(&app.db, Role::Partner, Some(other_partner), "rail")
            .await
            .unwrap();
    let (ours, theirs, everything) = (
        Receiver::start().await,
        Receiver::start().await,
        Receiver::start().await,
    );
    let (_, secret) = register(&app, &setup.partner, json!({"url": ours.url})).await;
    ours.trust(&secret);
    let (_, secret) = register(&app, other_key.expose(), json!({"url": theirs.url})).await;
    theirs.trust(&secret);
    let (_, secret) = register(&app, &setup.admin, json!({"url": everything.url})).await;
    everything.trust(&secret);
    // A partner key may not register for another partner.
    let response = app
        .post_json(
            &setup.partner,
            "/v1/webhook-endpoints",
            json!({"url": ours.url, "partner_id": other_partner}),
        )
        .await;
    crate::helpers::assert_problem(response, 403, "forbidden").await;

    let mine = app
        .offer(&setup.admin, json!({"partner_id": setup.partner_id}))
        .await;
    let rail = app
        .offer(&setup.admin, json!({"partner_id": other_partner}))
        .await;
    for offer in [&mine, &rail] {
        let granted: Value = app
            .token(
                &setup.checkout,
                &setup.membership_id,
                offer["id"].as_str().unwrap(),
            )
            .await
            .json()
            .await
            .unwrap();
        let id = offer["id"].as_str().unwrap();
        let redeemed = app
            .redeem(&setup.checkout, id, granted["token"].as_str().unwrap(), "o")
            .await;
        assert_eq!(redeemed.status(), 201);
    }
    // token.issued and token.redeemed of each offer reach the admin's endpoint.
    everything
        .wait_for(Duration::from_secs(10), |d| d.len() >= 4)
        .await;
    ours.wait_for(Duration::from_secs(10), |d| d.len() >= 2)
        .await;
    theirs
        .wait_for(Duration::from_secs(10), |d| d.len() >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (receiver, offer) in [(&ours, &mine), (&theirs, &rail)] {
        let got = receiver.accepted();
        assert_eq!(got.len(), 2, "{got:?}");
        for d in got {
            assert_eq!(d.body["data"]["offer_id"], offer["id"], "{:?}", d.body);
        }
    }
    let partner_endpoints: Value = app
        .get_with_key("/v1/webhook-endpoints", &setup.partner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(partner_endpoints.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_says_why() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    receiver.set(|b| b.status = Some(410));
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let (endpoint, secret) = register(&app, &admin, json!({"url": receiver.url})).await;
    receiver.trust(&secret);
    let verified = app
        .verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    assert_eq!(verified.status(), 200);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown: Value = app
            .get_with_key(&format!("/v1/webhook-endpoints/{endpoint}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if shown["enabled"] == false {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(shown["disabled_at"].is_string());
    assert!(shown["disabled_reason"].as_str().unwrap().contains("410"));
    // No retry after a 410, and nothing more while disabled.
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.all().len(), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_messages WHERE state = 'pending'")
            .await,
        0,
        "nothing waits on a disabled endpoint"
    );
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_and_says_since_when() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    receiver.set(|b| b.status = Some(503));
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let (endpoint, secret) = register(&app, &admin, json!({"url": receiver.url})).await;
    receiver.trust(&secret);
    // It has been failing for six days already.
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE id = $1::uuid",
    )
    .bind(&endpoint)
    .execute(&app.db)
    .await
    .unwrap();
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let shown: Value = app
            .get_with_key(&format!("/v1/webhook-endpoints/{endpoint}"), &admin)
            .await
            .json()
            .await
            .unwrap();
        if shown["enabled"] == false {
            assert!(
                shown["disabled_reason"]
                    .as_str()
                    .unwrap()
                    .starts_with("failing without a success since"),
                "{shown}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn private_addresses_and_hosts_off_the_allow_list_are_refused() {
    let app = spawn_app_with(|s| {
        s.webhooks.allow_private_addresses = false;
        s.webhooks.allowed_hosts = vec!["*.example.com".into(), "127.0.0.1".into()];
    })
    .await;
    let admin = app.key(Role::Admin).await;
    for (url, why) in [
        ("http://127.0.0.1:9/hook", "private"),
        ("https://hooks.example.org/x", "allow-list"),
        ("ftp://hooks.example.com/x", "http"),
        ("https://user:pw@hooks.example.com/x", "password"),
        ("not a url", "http"),
    ] {
        let response = app
            .post_json(&admin, "/v1/webhook-endpoints", json!({"url": url}))
            .await;
        let problem = crate::helpers::assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "url", "{problem}");
        assert!(problem.to_string().contains(why), "{url}: {problem}");
    }
    let response = app
        .post_json(
            &admin,
            "/v1/webhook-endpoints",
            json!({"url": "https://h.example.com/x", "event_types": ["token.stolen"]}),
        )
        .await;
    crate::helpers::assert_problem(response, 422, "validation_failed").await;
    let response = app
        .post_json(
            &admin,
            "/v1/webhook-endpoints",
            json!({"url": "https://h.example.com/x", "event_types": vec!["token.issued"; 9]}),
        )
        .await;
    let problem = crate::helpers::assert_problem(response, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "event_types");
    let checkout = app.key(Role::Checkout).await;
    let response = app.get_with_key("/v1/webhook-endpoints", &checkout).await;
    crate::helpers::assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn after_a_rotation_both_secrets_sign_until_the_overlap_ends() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let (endpoint, old) = register(&app, &admin, json!({"url": receiver.url})).await;
    let rotated: Value = app
        .post_json(
            &admin,
            &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            json!(null),
        )
        .await
        .json()
        .await
        .unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previous_secret_until"].is_string());
    receiver.trust_all(&[&old, &new]);
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    receiver
        .wait_for(Duration::from_secs(10), |d| !d.is_empty())
        .await;
    assert_eq!(receiver.accepted()[0].signatures, 2);

    // Once the overlap is over, only the new secret signs.
    sqlx::query("UPDATE webhook_endpoints SET previous_until = now() WHERE id = $1::uuid")
        .bind(&endpoint)
        .execute(&app.db)
        .await
        .unwrap();
    receiver.trust(&new);
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    receiver
        .wait_for(Duration::from_secs(10), |d| d.len() >= 2)
        .await;
    assert_eq!(receiver.accepted()[1].signatures, 1);
}

#[tokio::test]
async fn redeliver_and_recover_send_again_with_the_same_webhook_id() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let (endpoint, secret) = register(&app, &admin, json!({"url": receiver.url})).await;
    receiver.trust(&secret);
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    receiver
        .wait_for(Duration::from_secs(10), |d| !d.is_empty())
        .await;
    let id = receiver.accepted()[0].webhook_id.clone();

    let response = app
        .post_json(&admin, &format!("/v1/events/{id}/redeliver"), json!(null))
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap()["queued"], 1);
    receiver
        .wait_for(Duration::from_secs(10), |d| d.len() >= 2)
        .await;
    assert_eq!(receiver.accepted()[1].webhook_id, id);

    // Disabled meanwhile, the endpoint misses an event; recover sends it
    // once it is enabled again.
    let patched = app
        .client
        .patch(app.url(&format!("/v1/webhook-endpoints/{endpoint}")))
        .bearer_auth(&admin)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.accepted().len(), 2);
    let recovered: Value = app
        .post_json(
            &admin,
            &format!("/v1/webhook-endpoints/{endpoint}/recover"),
            json!({"since": since}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(recovered["queued"], 1, "{recovered}");
    app.client
        .patch(app.url(&format!("/v1/webhook-endpoints/{endpoint}")))
        .bearer_auth(&admin)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    receiver
        .wait_for(Duration::from_secs(10), |d| d.len() >= 3)
        .await;
    assert_ne!(receiver.accepted()[2].webhook_id, id);

    let unknown = uuid::Uuid::new_v4();
    let response = app
        .post_json(
            &admin,
            &format!("/v1/events/{unknown}/redeliver"),
            json!(null),
        )
        .await;
    crate::helpers::assert_problem(response, 404, "not_found").await;
}

/// The database name of an app, for server processes sharing it.
fn database_url(app: &TestApp) -> String {
    let name = app.db.connect_options().get_database().unwrap().to_owned();
    url_for_database(&name)
}

/// Server processes that deliver fast, with a short lease.
const DELIVERING: &[(&str, &str)] = &[
    ("OFFERGATE_WEBHOOKS__POLL_INTERVAL_MS", "20"),
    ("OFFERGATE_WEBHOOKS__REQUEST_TIMEOUT_MS", "3000"),
    ("OFFERGATE_WEBHOOKS__LEASE_MS", "4000"),
    ("OFFERGATE_WEBHOOKS__PER_ENDPOINT_CONCURRENCY", "4"),
    ("OFFERGATE_WEBHOOKS__RETRY_DELAYS_MS", "50,50,50"),
];

/// An app that writes events but delivers none, an endpoint at `receiver`
/// for verification.succeeded, and `n` such events queued for it.
async fn queued_events(receiver: &Receiver, n: usize) -> (TestApp, Vec<String>) {
    let app = spawn_app_with(|s| s.webhooks.deliver = false).await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let (_, secret) = register(
        &app,
        &admin,
        json!({"url": receiver.url, "event_types": ["verification.succeeded"]}),
    )
    .await;
    receiver.trust(&secret);
    for _ in 0..n {
        let verified = app
            .verify(&checkout, student("Ana", "Lima", "2004-03-09"))
            .await;
        assert_eq!(verified.status(), 200);
    }
    let ids: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM webhook_messages")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(ids.len(), n);
    (app, ids)
}

#[tokio::test]
async fn a_deliverer_killed_mid_batch_leaves_every_event_delivered_with_its_id() {
    let receiver = Receiver::start().await;
    receiver.set(|b| b.delay = Duration::from_millis(1_000));
    let (app, ids) = queued_events(&receiver, 10).await;
    let url = database_url(&app);
    let first = ServerProcess::start_with_env(&url, DELIVERING);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while receiver.started() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing was sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Mid-batch: deliveries are in flight, none answered yet.
    first.signal("KILL");
    drop(first);
    assert!(receiver.accepted().is_empty());
    let _second = ServerProcess::start_with_env(&url, DELIVERING);
    receiver
        .wait_for(Duration::from_secs(60), |d| {
            ids.iter().all(|id| d.iter().any(|x| &x.webhook_id == id))
        })
        .await;
    for delivery in receiver.accepted() {
        assert!(ids.contains(&delivery.webhook_id));
        assert_eq!(delivery.body["id"], delivery.webhook_id);
    }
    let interrupted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_messages WHERE attempts > 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(
        interrupted >= 1,
        "the killed process's claims were taken over"
    );
}

#[tokio::test]
async fn two_deliverers_never_send_one_event_at_once() {
    let receiver = Receiver::start().await;
    receiver.set(|b| b.delay = Duration::from_millis(150));
    let (app, ids) = queued_events(&receiver, 24).await;
    let url = database_url(&app);
    let _one = ServerProcess::start_with_env(&url, DELIVERING);
    let _two = ServerProcess::start_with_env(&url, DELIVERING);
    receiver
        .wait_for(Duration::from_secs(60), |d| {
            ids.iter().all(|id| d.iter().any(|x| &x.webhook_id == id))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.most_at_once(), 1);
    // Nothing failed, so each was sent exactly once.
    assert_eq!(receiver.all().len(), ids.len());
}

#[tokio::test]
async fn a_slow_endpoint_has_at_most_its_share_of_deliveries_in_flight() {
    let receiver = Receiver::start().await;
    receiver.set(|b| b.delay = Duration::from_millis(200));
    let (app, ids) = queued_events(&receiver, 8).await;
    let url = database_url(&app);
    let mut env = DELIVERING.to_vec();
    env.retain(|(name, _)| !name.ends_with("PER_ENDPOINT_CONCURRENCY"));
    env.push(("OFFERGATE_WEBHOOKS__PER_ENDPOINT_CONCURRENCY", "2"));
    let _server = ServerProcess::start_with_env(&url, &env);
    receiver
        .wait_for(Duration::from_secs(30), |d| d.len() >= ids.len())
        .await;
    assert_eq!(receiver.busiest(), 2);
}

#[tokio::test]
async fn a_receiver_resolving_to_a_private_address_is_refused_at_delivery_too() {
    let receiver = Receiver::start().await;
    // Registered where private addresses are allowed (development) ...
    let app = spawn_app_with(|s| s.webhooks.deliver = false).await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    for url in [
        receiver.url.clone(),
        receiver.url.replace("127.0.0.1", "localhost"),
    ] {
        let (_, secret) = register(&app, &admin, json!({"url": url})).await;
        receiver.trust(&secret);
    }
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    // ... delivered by a process where they are not.
    let mut env = DELIVERING.to_vec();
    env.push(("OFFERGATE_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "false"));
    let _server = ServerProcess::start_with_env(&database_url(&app), &env);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let errors: Vec<String> = loop {
        let errors: Vec<String> = sqlx::query_scalar(
            "SELECT error FROM webhook_attempts WHERE attempt = 1 AND error IS NOT NULL",
        )
        .fetch_all(&app.db)
        .await
        .unwrap();
        if errors.len() >= 2 {
            break errors;
        }
        assert!(tokio::time::Instant::now() < deadline, "{errors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for error in errors {
        assert!(error.contains("private"), "{error}");
    }
    assert!(receiver.all().is_empty());
}
