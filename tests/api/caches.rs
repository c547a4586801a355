//! What every checkout and partner repeats is served from memory: a burst
//! costs one database read, a change made through a process shows on it at
//! once, and on every other process within five seconds.

use std::time::{Duration, Instant};

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestApp, TestDatabase, spawn_app};

const BURST: usize = 200;
/// How long a process serves what it read; the same on every process.
const TTL: Duration = Duration::from_secs(5);
/// Slack for the request that notices a change, and its polling step.
const EPSILON: Duration = Duration::from_millis(700);

/// `BURST` concurrent GETs of `path`; each must answer 200. Their bodies.
async fn burst(app: &TestApp, path: &str, key: Option<&str>) -> Vec<String> {
    let requests = (0..BURST).map(|_| async move {
        let mut request = app.client.get(app.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    });
    futures::future::join_all(requests).await
}

fn all_alike(bodies: &[String]) {
    assert!(bodies.iter().all(|b| *b == bodies[0]), "one answer for all");
}

#[tokio::test]
async fn a_burst_of_jwks_requests_reads_the_keys_once_per_expiry() {
    let app = spawn_app().await;

    // The very first burst also makes the first key.
    let cold = burst(&app, "/.well-known/jwks.json", None).await;
    let reads_cold = app.state.ring.jwks_reads();
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    let expired = burst(&app, "/.well-known/jwks.json", None).await;
    let reads_expired = app.state.ring.jwks_reads() - reads_cold;

    all_alike(&cold);
    all_alike(&expired);
    assert_eq!(cold[0], expired[0]);
    let jwks: Value = serde_json::from_str(&cold[0]).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert!(
        (1..=2).contains(&reads_cold),
        "{reads_cold} reads for {BURST} cold requests"
    );
    assert!(
        (1..=2).contains(&reads_expired),
        "{reads_expired} reads for {BURST} requests after expiry"
    );
}

#[tokio::test]
async fn a_burst_of_community_listings_reads_the_communities_once() {
    let app = spawn_app().await;
    let checkout = app.key(Role::Checkout).await;
    // Verify the key first (through another route), so the burst measures
    // the listing alone.
    assert_eq!(
        app.get_with_key("/v1/offers", &checkout).await.status(),
        200
    );

    let listed = burst(&app, "/v1/communities", Some(&checkout)).await;

    all_alike(&listed);
    let communities: Vec<Value> = serde_json::from_str(&listed[0]).unwrap();
    assert!(communities.iter().any(|c| c["key"] == "student"));
    let reads = app.state.catalog.community_reads();
    assert!(
        (1..=2).contains(&reads),
        "{reads} reads for {BURST} requests"
    );
}

#[tokio::test]
async fn a_burst_of_checkout_offer_listings_reads_the_active_offers_once() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.offer(&admin, json!({})).await;
    app.offer(&admin, json!({"communities": ["teacher"]})).await;
    assert_eq!(
        app.get_with_key("/v1/communities", &checkout)
            .await
            .status(),
        200
    );
    let before = app.state.catalog.offer_reads();

    let all = burst(&app, "/v1/offers", Some(&checkout)).await;
    let for_teachers = burst(&app, "/v1/offers?community=teacher", Some(&checkout)).await;

    all_alike(&all);
    all_alike(&for_teachers);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&all[0]).unwrap().len(),
        2
    );
    let teachers: Vec<Value> = serde_json::from_str(&for_teachers[0]).unwrap();
    assert_eq!(teachers.len(), 1);
    assert_eq!(teachers[0]["communities"], json!(["teacher"]));
    let reads = app.state.catalog.offer_reads() - before;
    assert!(
        (1..=2).contains(&reads),
        "{reads} reads for {} requests",
        2 * BURST
    );
}

#[tokio::test]
async fn the_catalogue_answers_active_offers_by_id() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let active = app.offer(&admin, json!({})).await;
    let draft = app.offer(&admin, json!({"status": "draft"})).await;
    let id = |offer: &Value| offer["id"].as_str().unwrap().parse().unwrap();

    let found = app.state.active_offer(id(&active)).await.unwrap();
    let not_active = app.state.active_offer(id(&draft)).await.unwrap();
    let unknown = app.state.active_offer(uuid::Uuid::now_v7()).await.unwrap();

    assert_eq!(found.map(|o| o.id), Some(id(&active)));
    assert!(not_active.is_none());
    assert!(unknown.is_none());
}

/// Two `offergate serve` processes sharing one database.
struct Pair {
    _database: TestDatabase,
    a: ServerProcess,
    b: ServerProcess,
    client: reqwest::Client,
    admin: String,
    checkout: String,
}

impl Pair {
    async fn start() -> Self {
        let database = TestDatabase::new();
        let a = ServerProcess::start(&database.url);
        let b = ServerProcess::start(&database.url);
        let db = sqlx::PgPool::connect(&database.url).await.unwrap();
        let mut keys = Vec::new();
        for role in [Role::Admin, Role::Checkout] {
            let (key, _) = offergate::auth::create_key(&db, role, None, "pair")
                .await
                .unwrap();
            keys.push(key.expose().to_owned());
        }
        db.close().await;
        let checkout = keys.pop().unwrap();
        let admin = keys.pop().unwrap();
        Pair {
            _database: database,
            a,
            b,
            client: reqwest::Client::new(),
            admin,
            checkout,
        }
    }

    async fn listed(&self, server: &ServerProcess, path: &str) -> Vec<Value> {
        let response = self
            .client
            .get(format!("{}{path}", server.address))
            .bearer_auth(&self.checkout)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn send(&self, request: reqwest::RequestBuilder, body: Value) -> Value {
        let response = request
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    /// How long `server` took to list something `found` accepts, polling;
    /// panics when it has not after the time to live and a margin.
    async fn time_until_listed(
        &self,
        server: &ServerProcess,
        path: &str,
        found: impl Fn(&[Value]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if found(&self.listed(server, path).await) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < TTL + EPSILON,
                "{path} did not change within {:?}",
                TTL + EPSILON
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn has_key(key: &'static str) -> impl Fn(&[Value]) -> bool {
    move |listed| listed.iter().any(|c| c["key"] == key)
}

#[tokio::test]
async fn a_community_created_on_one_process_is_listed_on_another_within_five_seconds() {
    let pair = Pair::start().await;
    // Both processes hold the list from before the change.
    pair.listed(&pair.a, "/v1/communities").await;
    pair.listed(&pair.b, "/v1/communities").await;

    pair.send(
        pair.client
            .post(format!("{}/v1/communities", pair.a.address)),
        json!({"key": "ski_instructor", "display_name": "Ski instructors",
               "required_fields": ["email"]}),
    )
    .await;
    let on_a = pair.listed(&pair.a, "/v1/communities").await;
    let on_b = pair
        .time_until_listed(&pair.b, "/v1/communities", has_key("ski_instructor"))
        .await;

    assert!(
        has_key("ski_instructor")(&on_a),
        "at once where it was made"
    );
    assert!(on_b <= TTL + EPSILON, "{on_b:?}");
}

#[tokio::test]
async fn an_offer_activated_on_one_process_is_listed_on_another_within_five_seconds() {
    let pair = Pair::start().await;
    let mut body = json!({"title": "Student spring sale", "communities": ["student"],
                          "discount": {"kind": "percent", "percent_off": 15},
                          "status": "draft"});
    let draft = pair
        .send(
            pair.client.post(format!("{}/v1/offers", pair.a.address)),
            body.clone(),
        )
        .await;
    let id = draft["id"].as_str().unwrap().to_owned();
    let is_listed = |listed: &[Value]| listed.iter().any(|o| o["id"] == id.as_str());
    assert!(!is_listed(&pair.listed(&pair.a, "/v1/offers").await));
    assert!(!is_listed(&pair.listed(&pair.b, "/v1/offers").await));

    body["status"] = json!("active");
    pair.send(
        pair.client
            .put(format!("{}/v1/offers/{id}", pair.a.address)),
        body,
    )
    .await;
    let on_a = pair.listed(&pair.a, "/v1/offers").await;
    let on_b = pair
        .time_until_listed(&pair.b, "/v1/offers?community=student", &is_listed)
        .await;

    assert!(is_listed(&on_a), "at once where it was changed");
    assert!(on_b <= TTL + EPSILON, "{on_b:?}");
}

#[tokio::test]
async fn changes_through_a_process_show_on_it_at_once() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let keys = |listed: Vec<Value>| -> Vec<String> {
        listed
            .iter()
            .map(|c| c["key"].as_str().unwrap().to_owned())
            .collect()
    };
    let communities = || async {
        keys(
            app.get_with_key("/v1/communities", &checkout)
                .await
                .json()
                .await
                .unwrap(),
        )
    };
    let offers = || async {
        app.get_with_key("/v1/offers", &checkout)
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
    };
    assert!(!communities().await.contains(&"club".to_owned()));
    assert!(offers().await.is_empty());

    let created = app
        .post_json(
            &admin,
            "/v1/communities",
            json!({"key": "club", "display_name": "Club", "required_fields": ["email"]}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let after_create = communities().await;
    let renamed = app
        .client
        .patch(app.url("/v1/communities/club"))
        .bearer_auth(&admin)
        .json(&json!({"display_name": "The club"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let after_change: Vec<Value> = app
        .get_with_key("/v1/communities", &checkout)
        .await
        .json()
        .await
        .unwrap();
    let deleted = app
        .client
        .delete(app.url("/v1/communities/club"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let after_delete = communities().await;
    let offer = app.offer(&admin, json!({})).await;
    let after_offer = offers().await;
    let mut paused = after_offer[0].clone();
    paused["status"] = json!("paused");
    paused.as_object_mut().unwrap().remove("id");
    let put = app
        .client
        .put(app.url(&format!("/v1/offers/{}", offer["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .json(&paused)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    let after_pause = offers().await;

    assert!(after_create.contains(&"club".to_owned()));
    let club = after_change.iter().find(|c| c["key"] == "club").unwrap();
    assert_eq!(club["display_name"], "The club");
    assert!(!after_delete.contains(&"club".to_owned()));
    assert_eq!(after_offer.len(), 1);
    assert!(after_pause.is_empty());
}
