//! No idempotent answer is lost when a server process dies after the effect:
//! the same request, under the same `Idempotency-Key`, on another process
//! sharing the database gets the first answer at once.

use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use offergate::domain::api_key::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ROSTER, ServerProcess, TestDatabase, jti, student};

/// The process that dies in each test; the others survive.
const VICTIM: usize = 0;
/// A retry is answered from what is stored, with no stale-claim wait.
const RETRY_LIMIT: Duration = Duration::from_secs(1);
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;
/// Connections per process: the suite runs several multi-process tests at
/// once against one Postgres, whose default limit is 100 clients.
const POOL: (&str, &str) = ("OFFERGATE_DATABASE__MAX_CONNECTIONS", "8");

struct Processes {
    _database: TestDatabase,
    servers: Vec<ServerProcess>,
    db: sqlx::PgPool,
    client: reqwest::Client,
    admin: String,
    checkout: String,
}

impl Processes {
    /// One process per entry, each with the entry's environment.
    async fn start(environments: &[&[(&str, &str)]]) -> Self {
        let database = TestDatabase::new();
        let servers: Vec<ServerProcess> = environments
            .iter()
            .map(|env| ServerProcess::start_with_env(&database.url, &[*env, &[POOL]].concat()))
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
                .pool_max_idle_per_host(STORM_IN_FLIGHT)
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
    fn post(
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

    /// Creates an active student offer from `fields` on a surviving process.
    async fn offer(&self, fields: Value) -> String {
        let mut body = json!({"title": "Free flights", "communities": ["student"],
                              "discount": {"kind": "reward", "reward": "a free flight"}, "status": "active"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let response = self
            .client
            .post(format!("{}/v1/offers", self.servers[1].address))
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
    async fn membership(&self) -> Uuid {
        sqlx::query_scalar(
            "INSERT INTO memberships (person_key, community, verified_at, expires_at)
             VALUES ($1, 'student', now(), now() + interval '1 day') RETURNING id",
        )
        .bind(Uuid::new_v4().as_bytes().to_vec())
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    /// Sends the request to the victim, which must die at `point` with the
    /// client getting no answer, then the same request to a healthy
    /// process; returns that answer and how long after the failure it came.
    async fn answer_after_fault(
        &mut self,
        point: &str,
        path: &str,
        idempotency_key: &str,
        body: &Value,
    ) -> (reqwest::Response, Duration) {
        let first = self
            .post(VICTIM, path, Some(idempotency_key), body)
            .send()
            .await;
        let failed_at = Instant::now();
        let retry = self
            .post(1, path, Some(idempotency_key), body)
            .send()
            .await
            .unwrap();
        let waited = failed_at.elapsed();

        let error = match first {
            Err(error) => error,
            Ok(answer) => {
                let status = answer.status();
                let log = self.servers[VICTIM].log.lock().unwrap().join("\n");
                panic!(
                    "the faulty process answered {status}: {:?}\n{log}",
                    answer.text().await
                );
            }
        };
        assert!(!error.is_timeout(), "{error:?}");
        // The process died at the point, after the commit, not before it.
        let status = self.servers[VICTIM].wait(Duration::from_secs(5));
        assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
        let log = self.servers[VICTIM].log.lock().unwrap().join("\n");
        assert!(log.contains(&format!("injected fault at {point}")), "{log}");
        let mut cause = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause = format!("{cause}: {inner}");
            source = inner.source();
        }
        eprintln!("{point}: no answer ({cause}); the retry answered in {waited:?}");
        (retry, waited)
    }

    async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

fn replayed(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_redemption_committed_by_a_process_that_died_is_replayed_by_another() {
    let mut processes =
        Processes::start(&[&[("OFFERGATE_FAULT", "redeem.after_commit")], &[]]).await;
    let offer = processes.offer(json!({})).await;
    let membership = processes.membership().await;
    let issued: Value = processes
        .post(
            1,
            "/v1/tokens",
            None,
            &json!({"membership_id": membership, "offer_id": offer}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["token"].as_str().unwrap();

    let (retry, waited) = processes
        .answer_after_fault(
            "redeem.after_commit",
            "/v1/redemptions",
            "order-1-attempt",
            &json!({"token": token, "order_ref": "order-1", "amount": 12900}),
        )
        .await;

    assert_eq!(retry.status(), 201);
    assert!(replayed(&retry), "{:?}", retry.headers());
    assert!(waited < RETRY_LIMIT, "{waited:?}");
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(processes.count("SELECT count(*) FROM redemptions").await, 1);
    let (id, token_id, redeemed_at): (Uuid, Uuid, time::OffsetDateTime) =
        sqlx::query_as("SELECT id, token_id, redeemed_at FROM redemptions")
            .fetch_one(&processes.db)
            .await
            .unwrap();
    assert_eq!(answer["id"], id.to_string());
    assert_eq!(token_id.to_string(), jti(token));
    assert_eq!(answer["offer_id"], offer.as_str());
    assert_eq!(answer["discount"]["kind"], "reward");
    let answered_at = time::OffsetDateTime::parse(
        answer["redeemed_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(answered_at, redeemed_at);
}

#[tokio::test]
async fn a_token_issued_by_a_process_that_died_is_replayed_without_a_second_place() {
    let mut processes =
        Processes::start(&[&[("OFFERGATE_FAULT", "issue.after_commit")], &[]]).await;
    let offer = processes.offer(json!({"total_cap": 1})).await;
    let membership = processes.membership().await;
    let body = json!({"membership_id": membership, "offer_id": offer});

    let (retry, waited) = processes
        .answer_after_fault("issue.after_commit", "/v1/tokens", "issue-1", &body)
        .await;

    // With a cap of one, a second place would be refused: a 201 is the
    // first answer.
    assert_eq!(retry.status(), 201);
    assert!(replayed(&retry), "{:?}", retry.headers());
    assert!(waited < RETRY_LIMIT, "{waited:?}");
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(processes.count("SELECT count(*) FROM tokens").await, 1);
    let token_id: Uuid = sqlx::query_scalar("SELECT id FROM tokens")
        .fetch_one(&processes.db)
        .await
        .unwrap();
    assert_eq!(answer["token_id"], token_id.to_string());
    assert_eq!(jti(answer["token"].as_str().unwrap()), token_id.to_string());
    let again = processes
        .post(1, "/v1/tokens", Some("issue-2"), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["type"], "offer_exhausted", "{again}");
    assert_eq!(processes.count("SELECT count(*) FROM tokens").await, 1);
}

#[tokio::test]
async fn a_verification_with_a_token_from_a_process_that_died_is_replayed_without_a_second_place() {
    let mut processes =
        Processes::start(&[&[("OFFERGATE_FAULT", "verify.after_commit")], &[]]).await;
    let import = processes
        .client
        .post(format!(
            "{}/v1/records/import?source=demo&on_error=skip",
            processes.servers[1].address
        ))
        .bearer_auth(&processes.admin)
        .header("content-type", "text/csv")
        .body(ROSTER.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(import.status(), 200);
    let offer = processes.offer(json!({"total_cap": 1})).await;
    let mut body = student("Ana", "Lima", "2004-03-09");
    body["offer_id"] = json!(offer);

    let (retry, waited) = processes
        .answer_after_fault(
            "verify.after_commit",
            "/v1/verifications",
            "verify-1",
            &body,
        )
        .await;

    assert_eq!(retry.status(), 200);
    assert!(replayed(&retry), "{:?}", retry.headers());
    assert!(waited < RETRY_LIMIT, "{waited:?}");
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(answer["status"], "verified", "{answer}");
    assert_eq!(
        processes
            .count("SELECT count(*) FROM verification_attempts")
            .await,
        1
    );
    let attempt: Uuid = sqlx::query_scalar("SELECT id FROM verification_attempts")
        .fetch_one(&processes.db)
        .await
        .unwrap();
    assert_eq!(answer["id"], attempt.to_string());
    assert_eq!(processes.count("SELECT count(*) FROM tokens").await, 1);
    let token_id: Uuid = sqlx::query_scalar("SELECT id FROM tokens")
        .fetch_one(&processes.db)
        .await
        .unwrap();
    let token = answer["token"]["token"]
        .as_str()
        .expect("a token, {answer}");
    assert_eq!(jti(token), token_id.to_string());
    let again: Value = processes
        .post(1, "/v1/verifications", Some("verify-2"), &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["token_problem"], "offer_exhausted", "{again}");
    assert_eq!(processes.count("SELECT count(*) FROM tokens").await, 1);
}

const STORM_TOKENS: usize = 300;
const STORM_IN_FLIGHT: usize = 32;
/// The victim is killed when this many redemptions have started.
const KILL_AFTER: usize = STORM_TOKENS / 3;

struct Answer {
    status: u16,
    body: Value,
    replayed: bool,
}

impl Answer {
    /// The whole answer, or `None` when the client got none.
    async fn read(sent: reqwest::Result<reqwest::Response>) -> Option<Self> {
        let response = sent.ok()?;
        let status = response.status().as_u16();
        let replayed = replayed(&response);
        let body = response.json().await.ok()?;
        Some(Answer {
            status,
            body,
            replayed,
        })
    }

    fn kind(&self) -> String {
        self.body["type"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.to_string())
    }
}

struct Attempt {
    n: usize,
    token_id: Uuid,
    first: Option<Answer>,
    answered_before_kill: bool,
    retry: Option<(Option<Answer>, Duration)>,
}

impl Attempt {
    /// The answer the checkout ends up holding.
    fn last(&self) -> Option<&Answer> {
        match &self.retry {
            Some((retry, _)) => retry.as_ref(),
            None => self.first.as_ref(),
        }
    }
}

fn storm_key(n: usize) -> String {
    format!("storm-{n}")
}

fn storm_body(token: &str, n: usize) -> Value {
    json!({"token": token, "order_ref": format!("order-{n}"), "amount": 4200})
}

/// A surviving process for request `n`.
fn survivor(n: usize) -> usize {
    1 + n % 2
}

#[tokio::test]
async fn a_kill_9_during_three_hundred_redemptions_loses_no_answer_and_doubles_no_effect() {
    let mut processes = Processes::start(&[&[], &[], &[]]).await;
    let offer = processes.offer(json!({})).await;
    let membership = processes.membership().await;
    let issue = json!({"membership_id": membership, "offer_id": offer});
    let tokens: Vec<String> = futures::stream::iter(0..STORM_TOKENS)
        .map(|n| {
            let request = processes.post(n % 3, "/v1/tokens", None, &issue);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let issued: Value = response.json().await.unwrap();
                assert_eq!(status, 201, "{issued}");
                issued["token"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(STORM_IN_FLIGHT)
        .collect()
        .await;

    let started = AtomicUsize::new(0);
    let killed_at = OnceLock::<Instant>::new();
    let storm_began = Instant::now();
    let attempts: Vec<Attempt> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(n, token)| {
            let (processes, started, killed_at) = (&processes, &started, &killed_at);
            async move {
                if started.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    processes.servers[VICTIM].signal("KILL");
                    let _ = killed_at.set(Instant::now());
                }
                let (key, body) = (storm_key(n), storm_body(token, n));
                let sent = processes
                    .post(n % 3, "/v1/redemptions", Some(&key), &body)
                    .send()
                    .await;
                let first = Answer::read(sent).await;
                let answered_before_kill =
                    first.is_some() && killed_at.get().is_none_or(|k| Instant::now() < *k);
                let retry = match first {
                    Some(_) => None,
                    None => {
                        let failed_at = Instant::now();
                        let sent = processes
                            .post(survivor(n), "/v1/redemptions", Some(&key), &body)
                            .send()
                            .await;
                        let answer = Answer::read(sent).await;
                        Some((answer, failed_at.elapsed()))
                    }
                };
                Attempt {
                    n,
                    token_id: jti(token).parse().unwrap(),
                    first,
                    answered_before_kill,
                    retry,
                }
            }
        })
        .buffer_unordered(STORM_IN_FLIGHT)
        .collect()
        .await;
    let storm_took = storm_began.elapsed();
    let status = processes.servers[VICTIM].wait(Duration::from_secs(5));
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");

    let redemption_of: std::collections::HashMap<Uuid, Uuid> =
        sqlx::query_as::<_, (Uuid, Uuid)>("SELECT token_id, id FROM redemptions")
            .fetch_all(&processes.db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    // Every key is asked once more after the storm: each must still have
    // the answer of its redemption to give.
    let asked_again: Vec<Option<Answer>> = futures::stream::iter(tokens.iter().enumerate())
        .map(|(n, token)| {
            let request = processes.post(
                survivor(n),
                "/v1/redemptions",
                Some(&storm_key(n)),
                &storm_body(token, n),
            );
            async move { Answer::read(request.send().await).await }
        })
        .buffered(STORM_IN_FLIGHT)
        .collect()
        .await;
    let lost = attempts
        .iter()
        .filter(|attempt| {
            let Some(id) = redemption_of.get(&attempt.token_id) else {
                return false;
            };
            !asked_again[attempt.n]
                .as_ref()
                .is_some_and(|a| a.status == 201 && a.replayed && a.body["id"] == id.to_string())
        })
        .count();

    let retries: Vec<&(Option<Answer>, Duration)> =
        attempts.iter().filter_map(|a| a.retry.as_ref()).collect();
    let mut retry_kinds = std::collections::BTreeMap::<String, usize>::new();
    for (answer, _) in &retries {
        let kind = answer.as_ref().map_or("no answer".to_owned(), Answer::kind);
        *retry_kinds.entry(kind).or_default() += 1;
    }
    let replays = retries
        .iter()
        .filter(|(a, _)| a.as_ref().is_some_and(|a| a.status == 201 && a.replayed))
        .count();
    let first_effects = retries
        .iter()
        .filter(|(a, _)| a.as_ref().is_some_and(|a| a.status == 201 && !a.replayed))
        .count();
    let slowest_retry = retries
        .iter()
        .map(|(_, waited)| *waited)
        .max()
        .unwrap_or_default();
    let mismatched = attempts
        .iter()
        .filter(|a| {
            let held = a.last().map(|answer| answer.body["id"].clone());
            held != redemption_of.get(&a.token_id).map(|id| json!(id))
        })
        .count();
    eprintln!(
        "kill -9 storm: {} attempts over {} processes in {:.1} s; {} answered before the kill, \
         {} retried ({replays} replayed, {first_effects} first effects), lost {lost}, \
         mismatched {mismatched}, slowest retry answered {:.3} s after its failure; \
         retries: {retry_kinds:?}",
        attempts.len(),
        processes.servers.len(),
        storm_took.as_secs_f64(),
        attempts.iter().filter(|a| a.answered_before_kill).count(),
        retries.len(),
        slowest_retry.as_secs_f64(),
    );
    // A process's own account of a failed answer, to read beside the figures.
    for (n, server) in processes.servers.iter().enumerate() {
        let log = server.log.lock().unwrap();
        for line in log
            .iter()
            .filter(|l| l.contains(r#""level":"ERROR""#))
            .take(5)
        {
            eprintln!("process {n}: {line}");
        }
    }

    assert!(!retries.is_empty(), "the kill cut no request");
    assert!(
        attempts
            .iter()
            .filter_map(|a| a.first.as_ref())
            .all(|a| a.status == 201 && !a.replayed),
        "a first answer that is not a fresh redemption"
    );
    assert_eq!(
        retry_kinds.get("201"),
        Some(&retries.len()),
        "{retry_kinds:?}"
    );
    assert_eq!(
        processes.count("SELECT count(*) FROM redemptions").await,
        STORM_TOKENS as i64
    );
    assert_eq!(redemption_of.len(), STORM_TOKENS, "a token redeemed twice");
    assert_eq!(lost, 0);
    assert_eq!(mismatched, 0);
}
