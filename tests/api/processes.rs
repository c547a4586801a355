//! Several `offergate serve` processes sharing one database, with a checkout
//! and an admin key, for the tests in which processes die or stop.

use std::time::Duration;

use offergate::domain::api_key::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestDatabase};

/// Connections per process: the suite runs several multi-process tests at
/// once against one Postgres, whose default limit is 100 clients. A test's
/// own environment may set another.
const POOL: (&str, &str) = ("OFFERGATE_DATABASE__MAX_CONNECTIONS", "8");
/// Requests in flight at once that the client keeps connections for.
pub const IN_FLIGHT: usize = 32;

pub struct Processes {
    pub _database: TestDatabase,
    pub servers: Vec<ServerProcess>,
    pub db: sqlx::PgPool,
    pub client: reqwest::Client,
    pub admin: String,
    pub checkout: String,
}

impl Processes {
    /// One process per entry, each with the entry's environment.
    pub async fn start(environments: &[&[(&str, &str)]]) -> Self {
        let database = TestDatabase::new();
        let servers: Vec<ServerProcess> = environments
            .iter()
            .map(|env| ServerProcess::start_with_env(&database.url, &[&[POOL], *env].concat()))
            .collect();
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&database.url)
            .await
            .unwrap();
        let key = |role| {
            let db = db.clone();
            async move {
                let (key, _) = offergate::auth::create_key(&db, role, None, "faults")
                    .await
                    .unwrap();
                key.expose().to_owned()
            }
        };
        let (admin, checkout) = (key(Role::Admin).await, key(Role::Checkout).await);
        let processes = Processes {
            _database: database,
            servers,
            db,
            // Bounds a request that would hang; a lost answer must show as
            // a failure, not as a stalled test.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(IN_FLIGHT)
                .build()
                .unwrap(),
            admin,
            checkout,
        };
        processes.warm_key_caches().await;
        processes
    }

    /// Each process hashes a key the first time it sees it; done here, so
    /// that the time a retry takes is the time of its answer alone.
    async fn warm_key_caches(&self) {
        for server in &self.servers {
            for key in [&self.admin, &self.checkout] {
                let response = self
                    .client
                    .get(format!("{}/v1/offers", server.address))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    }

    /// A checkout's POST to one process, under an `Idempotency-Key` when given.
    pub fn post(
        &self,
        server: usize,
        path: &str,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .post(format!("{}{path}", self.servers[server].address))
            .bearer_auth(&self.checkout)
            .json(body);
        match idempotency_key {
            Some(key) => request.header("idempotency-key", key),
            None => request,
        }
    }

    /// Creates an active student offer from `fields` on the last process (a
    /// survivor: the tests' victim is the first).
    pub async fn offer(&self, fields: Value) -> String {
        let mut body = json!({"title": "Free flights", "communities": ["student"],
                              "discount": {"kind": "reward", "reward": "a free flight"}, "status": "active"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = self
            .client
            .post(format!(
                "{}/v1/offers",
                self.servers[self.servers.len() - 1].address
            ))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let offer: Value = response.json().await.unwrap();
        offer["id"].as_str().unwrap().to_owned()
    }

    /// A live student membership, written directly.
    pub async fn membership(&self) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO memberships (person_key, community, verified_at, expires_at)
             VALUES ($1, 'student', now(), now() + interval '1 day') RETURNING id",
        )
        .bind(Uuid::new_v4().as_bytes().to_vec())
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

pub fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}
