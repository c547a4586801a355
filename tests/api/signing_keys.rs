//! A compromised signing key is revoked from the command line: it leaves
//! the JWKS of every process and its tokens are refused everywhere within
//! the key-refresh delay, while a new key takes over signing.

use std::time::{Duration, Instant};

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{ROSTER, ServerProcess, TestDatabase, offergate_command, student};

/// How long a process keeps the JWKS and the revoked kids it read.
const REFRESH: Duration = Duration::from_secs(5);
const MARGIN: Duration = Duration::from_secs(2);

fn cli(database: &TestDatabase, args: &[&str]) -> std::process::Output {
    offergate_command(&database.url)
        .args(args)
        .output()
        .unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

struct Pair {
    _database: TestDatabase,
    servers: [ServerProcess; 2],
    client: reqwest::Client,
    checkout: String,
    membership_id: String,
    offer_id: String,
}

impl Pair {
    async fn start(database: TestDatabase) -> Self {
        let servers = [
            ServerProcess::start(&database.url),
            ServerProcess::start(&database.url),
        ];
        let db = sqlx::PgPool::connect(&database.url).await.unwrap();
        let key = |role| {
            let db = db.clone();
            async move {
                let (key, _) = offergate::auth::create_key(&db, role, None, "pair")
                    .await
                    .unwrap();
                key.expose().to_owned()
            }
        };
        let (admin, checkout) = (key(Role::Admin).await, key(Role::Checkout).await);
        db.close().await;
        let client = reqwest::Client::new();
        let base = &servers[0].address;
        let imported = client
            .post(format!(
                "{base}/v1/records/import?source=demo&on_error=skip"
            ))
            .bearer_auth(&admin)
            .header("content-type", "text/csv")
            .body(ROSTER.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(imported.status(), 200);
        let verified: Value = client
            .post(format!("{base}/v1/verifications"))
            .bearer_auth(&checkout)
            .json(&student("Ana", "Lima", "2004-03-09"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let offer: Value = client
            .post(format!("{base}/v1/offers"))
            .bearer_auth(&admin)
            .json(&json!({"title": "Student sale", "communities": ["student"],
                          "discount": {"kind": "percent", "percent_off": 10},
                          "status": "active"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Pair {
            _database: database,
            servers,
            client,
            checkout,
            membership_id: verified["membership_id"].as_str().unwrap().to_owned(),
            offer_id: offer["id"].as_str().unwrap().to_owned(),
        }
    }

    async fn token(&self, server: usize) -> String {
        let response = self
            .client
            .post(format!("{}/v1/tokens", self.servers[server].address))
            .bearer_auth(&self.checkout)
            .json(&json!({"membership_id": self.membership_id, "offer_id": self.offer_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    async fn kids(&self, server: usize) -> Vec<String> {
        let jwks: Value = self
            .client
            .get(format!(
                "{}/.well-known/jwks.json",
                self.servers[server].address
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn post(&self, server: usize, path: &str, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.servers[server].address))
            .bearer_auth(&self.checkout)
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_revoked_signing_key_leaves_every_jwks_and_its_tokens_are_refused_everywhere() {
    let pair = Pair::start(TestDatabase::new()).await;
    let doomed = pair.token(0).await;
    let spared = pair.token(1).await;
    let kid = kid_of(&doomed);
    // Both processes hold the JWKS and their key caches from before.
    for server in 0..2 {
        assert_eq!(pair.kids(server).await, std::slice::from_ref(&kid));
        let validated = pair
            .post(server, "/v1/tokens/validate", "v", json!({"token": doomed}))
            .await;
        assert_eq!(validated.status(), 200);
    }

    let revoked = cli(&pair._database, &["keys", "revoke-signing", &kid]);
    let said = String::from_utf8_lossy(&revoked.stderr).into_owned();
    assert!(revoked.status.success(), "{said}");
    let successor = String::from_utf8(revoked.stdout).unwrap().trim().to_owned();
    assert_eq!(
        successor.len(),
        16,
        "the new signing key is printed: {said}"
    );
    assert!(
        said.contains("new key") && said.contains(&successor),
        "{said}"
    );
    let start = Instant::now();

    // Redemption refuses the key's tokens at once, on either process, as
    // it refuses a bad signature; the token is not consumed.
    for (server, token) in [(0, &doomed), (1, &spared)] {
        let refused = pair
            .post(
                server,
                "/v1/redemptions",
                &format!("now-{server}"),
                json!({"token": token, "order_ref": "o"}),
            )
            .await;
        crate::helpers::assert_problem(refused, 401, "invalid_token").await;
    }
    // Within the refresh delay both processes drop the kid from the JWKS
    // and refuse its tokens in memory as well.
    for server in 0..2 {
        loop {
            let kids = pair.kids(server).await;
            let validated = pair
                .post(server, "/v1/tokens/validate", "v", json!({"token": doomed}))
                .await
                .status();
            if !kids.contains(&kid) && validated == 401 {
                assert_eq!(kids, std::slice::from_ref(&successor));
                break;
            }
            assert!(
                start.elapsed() < REFRESH + MARGIN,
                "process {server} still trusts {kid}: {kids:?}, validate {validated}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(REFRESH.saturating_sub(start.elapsed())).await;
    for server in 0..2 {
        let fresh = pair.token(server).await;
        assert_eq!(
            kid_of(&fresh),
            successor,
            "process {server} signs with the new key"
        );
        let redeemed = pair
            .post(
                server,
                "/v1/redemptions",
                &format!("fresh-{server}"),
                json!({"token": fresh, "order_ref": "o"}),
            )
            .await;
        assert_eq!(redeemed.status(), 201);
    }
    let again = cli(&pair._database, &["keys", "revoke-signing", &kid]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already revoked"));
    let listed = String::from_utf8(cli(&pair._database, &["keys", "list-signing"]).stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&kid) && l.trim_end().len() > 60),
        "{listed}"
    );
}

#[test]
fn revoking_an_unknown_or_malformed_kid_fails_and_says_why() {
    let database = TestDatabase::new();
    assert!(cli(&database, &["migrate"]).status.success());

    let unknown = cli(&database, &["keys", "revoke-signing", "0123456789abcdef"]);
    let malformed = cli(&database, &["keys", "revoke-signing", "../etc"]);

    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("no signing key has the kid `0123456789abcdef`"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    assert!(!malformed.status.success());
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("not a signing key id"),
        "{}",
        String::from_utf8_lossy(&malformed.stderr)
    );
}

#[tokio::test]
async fn revoking_a_retired_key_keeps_the_signing_key() {
    let database = TestDatabase::new();
    let db = {
        assert!(cli(&database, &["migrate"]).status.success());
        sqlx::PgPool::connect(&database.url).await.unwrap()
    };
    let old = String::from_utf8(cli(&database, &["keys", "rotate-signing"]).stdout).unwrap();
    let current = String::from_utf8(cli(&database, &["keys", "rotate-signing"]).stdout).unwrap();

    let revoked = cli(&database, &["keys", "revoke-signing", old.trim()]);

    assert!(revoked.status.success());
    assert!(revoked.stdout.is_empty(), "no new key was needed");
    let signing: Vec<String> = sqlx::query_scalar(
        "SELECT kid FROM signing_keys WHERE retired_at IS NULL AND revoked_at IS NULL",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(signing, [current.trim().to_owned()]);
    db.close().await;
}

#[tokio::test]
async fn revoking_a_key_frees_the_places_of_its_unused_tokens() {
    let app = crate::helpers::spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"per_person_limit": 1})).await;
    let offer_id = offer["id"].as_str().unwrap();
    let first: Value = app
        .token(&s.checkout, &s.membership_id, offer_id)
        .await
        .json()
        .await
        .unwrap();
    let held = app.token(&s.checkout, &s.membership_id, offer_id).await;
    crate::helpers::assert_problem(held, 409, "person_limit_reached").await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.db)
        .await
        .unwrap();

    let revoked = offergate_command(&crate::helpers::url_for_database(&database))
        .args([
            "keys",
            "revoke-signing",
            &kid_of(first["token"].as_str().unwrap()),
        ])
        .output()
        .unwrap();

    let said = String::from_utf8_lossy(&revoked.stderr).into_owned();
    assert!(revoked.status.success(), "{said}");
    assert!(
        said.contains("1 unused tokens it signed were revoked"),
        "{said}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM tokens WHERE state = 'revoked'")
            .await,
        1
    );
    // The in-process app re-reads the signing key within the refresh delay.
    tokio::time::sleep(REFRESH).await;
    let again = app.token(&s.checkout, &s.membership_id, offer_id).await;
    assert_eq!(again.status(), 201, "{:?}", again.text().await);
}
