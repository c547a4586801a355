//! The caps and single use hold under concurrency, across three server
//! processes sharing one database.

use futures::StreamExt;
use offergate::domain::api_key::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestDatabase};

const IN_FLIGHT: usize = 96;

struct Cluster {
    _database: TestDatabase,
    servers: Vec<ServerProcess>,
    db: sqlx::PgPool,
    client: reqwest::Client,
    admin: String,
    checkout: String,
}

impl Cluster {
    async fn start() -> Self {
        let database = TestDatabase::new();
        let servers: Vec<ServerProcess> = (0..3)
            .map(|_| ServerProcess::start(&database.url))
            .collect();
        let db = sqlx::PgPool::connect(&database.url).await.unwrap();
        let key = |role| {
            let db = db.clone();
            async move {
                let (key, _) = offergate::auth::create_key(&db, role, None, "cluster")
                    .await
                    .unwrap();
                key.expose().to_owned()
            }
        };
        let (admin, checkout) = (key(Role::Admin).await, key(Role::Checkout).await);
        Cluster {
            _database: database,
            servers,
            db,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(IN_FLIGHT)
                .build()
                .unwrap(),
            admin,
            checkout,
        }
    }

    /// The n-th request's server: requests go round the three processes.
    fn url(&self, n: usize, path: &str) -> String {
        format!("{}{path}", self.servers[n % self.servers.len()].address)
    }

    async fn offer(&self, fields: Value) -> String {
        let mut body = json!({"title": "Free flights", "communities": ["student", "teacher"],
                              "discount": {"kind": "reward", "reward": "a free flight"}, "status": "active"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let offer: Value = self
            .client
            .post(self.url(0, "/v1/offers"))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        offer["id"].as_str().unwrap().to_owned()
    }

    /// `n` live memberships of distinct people (or of one person, each in
    /// another community), written directly.
    async fn memberships(&self, people: &[(Vec<u8>, &str)]) -> Vec<Uuid> {
        let keys: Vec<Vec<u8>> = people.iter().map(|(k, _)| k.clone()).collect();
        let communities: Vec<&str> = people.iter().map(|(_, c)| *c).collect();
        sqlx::query_scalar(
            "INSERT INTO memberships (person_key, community, verified_at, expires_at)
             SELECT k, c, now(), now() + interval '1 day' FROM unnest($1::bytea[], $2::text[]) AS u(k, c)
             RETURNING id",
        )
        .bind(keys)
        .bind(communities)
        .fetch_all(&self.db)
        .await
        .unwrap()
    }

    async fn issue_all(&self, requests: Vec<(Uuid, String)>) -> Vec<(u16, Value)> {
        futures::stream::iter(requests.into_iter().enumerate())
            .map(|(n, (membership, offer))| async move {
                let response = self
                    .client
                    .post(self.url(n, "/v1/tokens"))
                    .bearer_auth(&self.checkout)
                    .json(&json!({"membership_id": membership, "offer_id": offer}))
                    .send()
                    .await
                    .unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await
    }

    async fn redeem_all(&self, requests: Vec<(String, String)>) -> Vec<(u16, Value)> {
        futures::stream::iter(requests.into_iter().enumerate())
            .map(|(n, (idempotency_key, token))| async move {
                let response = self
                    .client
                    .post(self.url(n, "/v1/redemptions"))
                    .bearer_auth(&self.checkout)
                    .header("idempotency-key", idempotency_key)
                    .json(&json!({"token": token, "order_ref": "order"}))
                    .send()
                    .await
                    .unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

fn person(n: u32) -> Vec<u8> {
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&n.to_be_bytes());
    key.to_vec()
}

fn tally(answers: &[(u16, Value)]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (status, body) in answers {
        let kind = body["type"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn two_thousand_redemptions_of_a_hundred_tokens_succeed_exactly_a_hundred_times() {
    let cluster = Cluster::start().await;
    let offer = cluster.offer(json!({})).await;
    let member = cluster.memberships(&[(person(1), "student")]).await[0];
    let issued = cluster
        .issue_all((0..100).map(|_| (member, offer.clone())).collect())
        .await;
    let tokens: Vec<String> = issued
        .iter()
        .map(|(_, t)| t["token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens.len(), 100);

    let attempts: Vec<(String, String)> = (0..2_000)
        .map(|n| (format!("attempt-{n}"), tokens[(n * 37) % 100].clone()))
        .collect();
    let answers = cluster.redeem_all(attempts).await;

    let counts = tally(&answers);
    assert_eq!(counts.get("201"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("already_redeemed"), Some(&1_900), "{counts:?}");
    assert_eq!(cluster.count("SELECT count(*) FROM redemptions").await, 100);
    assert_eq!(
        cluster
            .count("SELECT count(DISTINCT token_id) FROM redemptions")
            .await,
        100
    );
}

#[tokio::test]
async fn a_cap_of_fifty_issues_exactly_fifty_tokens_to_five_hundred_concurrent_members() {
    let cluster = Cluster::start().await;
    let offer = cluster.offer(json!({"total_cap": 50})).await;
    let people: Vec<(Vec<u8>, &str)> = (0..500).map(|n| (person(n), "student")).collect();
    let members = cluster.memberships(&people).await;

    let answers = cluster
        .issue_all(members.into_iter().map(|m| (m, offer.clone())).collect())
        .await;

    let counts = tally(&answers);
    assert_eq!(counts.get("201"), Some(&50), "{counts:?}");
    assert_eq!(counts.get("offer_exhausted"), Some(&450), "{counts:?}");
    assert_eq!(cluster.count("SELECT count(*) FROM tokens").await, 50);
}

#[tokio::test]
async fn a_per_person_limit_holds_across_concurrent_requests_and_memberships() {
    let cluster = Cluster::start().await;
    let offer = cluster.offer(json!({"per_person_limit": 3})).await;
    // One person, verified as a student and as a teacher: one limit.
    let members = cluster
        .memberships(&[(person(7), "student"), (person(7), "teacher")])
        .await;

    let requests = (0..60).map(|n| (members[n % 2], offer.clone())).collect();
    let answers = cluster.issue_all(requests).await;

    let counts = tally(&answers);
    assert_eq!(counts.get("201"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("person_limit_reached"), Some(&57), "{counts:?}");
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_have_one_effect() {
    let cluster = Cluster::start().await;
    let offer = cluster.offer(json!({})).await;
    let member = cluster.memberships(&[(person(3), "student")]).await[0];
    let issued = cluster.issue_all(vec![(member, offer)]).await;
    let token = issued[0].1["token"].as_str().unwrap().to_owned();

    let answers = cluster
        .redeem_all(
            (0..30)
                .map(|_| ("one-key".to_owned(), token.clone()))
                .collect(),
        )
        .await;

    let counts = tally(&answers);
    let succeeded: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b)
        .collect();
    assert!(!succeeded.is_empty(), "{counts:?}");
    assert!(
        succeeded.iter().all(|b| b["id"] == succeeded[0]["id"]),
        "one redemption, replayed"
    );
    assert_eq!(
        counts.get("201").copied().unwrap_or(0)
            + counts.get("request_in_progress").copied().unwrap_or(0),
        30,
        "{counts:?}"
    );
    assert_eq!(cluster.count("SELECT count(*) FROM redemptions").await, 1);
}
