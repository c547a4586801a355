//! Starts the real application on port 0 against a fresh database.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use offergate::auth::create_key;
use offergate::config::Settings;
use offergate::domain::api_key::Role;
use offergate::http::AppState;
use offergate::startup::Application;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/offergate";

/// The server the tests use: `DATABASE_URL`, or the development default.
pub fn server_url() -> url::Url {
    let raw = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    url::Url::parse(&raw).expect("DATABASE_URL is a URL")
}

pub fn url_for_database(name: &str) -> String {
    let mut url = server_url();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Settings as a fresh clone has them, from `config/`.
pub fn settings_from(
    mut env: HashMap<String, String>,
) -> Result<Settings, offergate::config::SettingsError> {
    env.entry("OFFERGATE_CONFIG_DIR".into())
        .or_insert_with(|| concat!(env!("CARGO_MANIFEST_DIR"), "/config").into());
    Settings::load_from(env)
}

/// A database of its own for one test, dropped when the test ends.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub fn new() -> Self {
        let name = format!("offergate_test_{}", Uuid::new_v4().simple());
        let url = url_for_database(&name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = url_for_database("postgres");
        // Drop runs inside the test's runtime; do the async work on a
        // thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    // The name is ours: "offergate_test_" and 32 hex digits.
                    let drop = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _database: TestDatabase,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the application with settings adjusted by `customise`, which runs
/// after the test database and port 0 are set.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::new();
    let mut settings = settings_from(HashMap::new()).expect("development settings load");
    settings.database.url = SecretString::from(database.url.clone());
    settings.server.bind = "127.0.0.1:0".parse().expect("address");
    customise(&mut settings);
    let app = Application::build(&settings)
        .await
        .expect("application builds");
    let addr = app.local_addr().expect("bound");
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        address: format!("http://{addr}"),
        client: reqwest::Client::new(),
        db: state.db.clone(),
        state,
        shutdown: Some(tx),
        server: Some(server),
        _database: database,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_with_key(&self, path: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    /// A new key of the role (partner keys get a partner of their own).
    pub async fn key(&self, role: Role) -> String {
        let partner = match role {
            Role::Partner => Some(
                offergate::store::partners::insert(&self.db, "Test partner")
                    .await
                    .expect("partner created")
                    .id,
            ),
            _ => None,
        };
        let (key, _) = create_key(&self.db, role, partner, "test")
            .await
            .expect("key created");
        key.expose().to_owned()
    }

    pub fn hashes_computed(&self) -> u64 {
        self.state.keys.hashes_computed()
    }

    /// Signals shutdown; returns the server task to await.
    pub fn begin_shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("server still running")
    }
}

/// Asserts a response is a problem document of the status and type, and
/// returns its body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    kind: &str,
) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["type"], kind, "problem type in {body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
    body
}

/// A TCP relay to Postgres that can be cut and restored, to take the
/// database away from one application without stopping it for the others.
pub struct DatabaseLink {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    relays: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DatabaseLink {
    pub async fn start() -> Self {
        let server = server_url();
        let target = format!(
            "{}:{}",
            server.host_str().unwrap_or("127.0.0.1"),
            server.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let up = Arc::new(AtomicBool::new(true));
        let relays: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up_in_loop, relays_in_loop) = (up.clone(), relays.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up_in_loop.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                relays_in_loop.lock().await.push(relay);
            }
        });
        DatabaseLink { addr, up, relays }
    }

    pub fn url_for(&self, database: &str) -> String {
        let mut url = server_url();
        url.set_ip_host(self.addr.ip()).expect("ip host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for relay in self.relays.lock().await.drain(..) {
            relay.abort();
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The `offergate` binary, run as an operator would.
pub fn offergate_command(database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_offergate"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("OFFERGATE_PROFILE")
        .env("DATABASE_URL", database_url)
        .env("OFFERGATE_LOG__FORMAT", "json")
        .env("RUST_LOG", "info")
        // Several tests run server processes at once, each with its pool, on
        // one PostgreSQL that allows 100 connections; with fewer connections
        // a storm's requests queue longer for one, so they may wait longer.
        .env("OFFERGATE_DATABASE__MAX_CONNECTIONS", "8")
        .env("OFFERGATE_DATABASE__ACQUIRE_TIMEOUT_SECS", "15");
    command
}

/// `offergate serve` in a process of its own, on a free port.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub address: String,
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    pub fn start(database_url: &str) -> Self {
        Self::start_with_env(database_url, &[])
    }

    /// `start`, with environment variables for this process alone (such as
    /// `OFFERGATE_FAULT`, so that one process of several dies at a point).
    pub fn start_with_env(database_url: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let mut child = offergate_command(database_url)
            .envs(env.iter().copied())
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("offergate starts");
        let stderr = child.stderr.take().expect("stderr piped");
        let log: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log_in_thread = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "offergate listening"
                    && let Some(addr) = event["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                }
                log_in_thread.lock().expect("log").push(line);
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("offergate did not start: {:?}", log.lock().expect("log")));
        ServerProcess {
            child,
            address: format!("http://{addr}"),
            log,
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "offergate did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A date `days` from today (UTC, negative for the past), as YYYY-MM-DD.
pub fn days_from_today(days: i64) -> String {
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// How long the roster's current records run: their `valid_until` is this
/// many days from today, so a membership ends the midnight after.
pub const ROSTER_RECORDS_END_IN_DAYS: i64 = 220;

/// The roster the verification tests use, as a CSV file would hold it: the
/// rows of `examples/roster.csv`, with dates relative to today, so the tests
/// pass on any date. The students' year started 80 days ago and ends in 220
/// days; Maya Okafor's record ended 500 days ago; Elizabeth Nguyen serves
/// for 400 more days.
pub static ROSTER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (year_start, year_end) = (
        days_from_today(-80),
        days_from_today(ROSTER_RECORDS_END_IN_DAYS),
    );
    let (graduated_from, graduated_until) = (days_from_today(-1900), days_from_today(-500));
    let service_end = days_from_today(400);
    format!(
        "external_id,community,subsegment,organization,email,given_name,family_name,birth_date,license_number,valid_from,valid_until\n\
         stu-001,student,college,State University,ana.lima@state.edu,Ana,Lima,2004-03-09,,{year_start},{year_end}\n\
         stu-002,student,college,State University,robert.oneill@state.edu,Robert,O'Neill,2003-11-21,,{year_start},{year_end}\n\
         stu-003,student,high_school,Lincoln High,,Zoë,Müller-Lüdenscheidt,2009-01-15,,{year_start},{year_end}\n\
         stu-004,student,college,State University,old.grad@state.edu,Maya,Okafor,1999-05-02,,{graduated_from},{graduated_until}\n\
         tch-001,teacher,,Lincoln High,j.baptiste@lincoln.k12.us,Jean,Baptiste,1981-07-04,,,\n\
         vet-001,military,veteran,,,William,Carter,1962-02-14,,,\n\
         vet-002,military,active_duty,,,Elizabeth,Nguyen,1994-08-30,,,{service_end}\n\
         bad-001,student,college,State University,not-an-email,Sam,Bad,2004-13-45,,,\n"
    )
});

impl TestApp {
    pub async fn import(
        &self,
        admin: &str,
        query: &str,
        content_type: &str,
        body: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/records/import?{query}")))
            .bearer_auth(admin)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request sent")
    }

    /// Imports the example roster, skipping its one bad row.
    pub async fn import_roster(&self, admin: &str) -> serde_json::Value {
        let response = self
            .import(admin, "source=demo&on_error=skip", "text/csv", &ROSTER)
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("report")
    }

    pub async fn verify(&self, checkout: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/verifications"))
            .bearer_auth(checkout)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db)
            .await
            .expect("count")
    }
}

pub fn student(given: &str, family: &str, born: &str) -> serde_json::Value {
    serde_json::json!({
        "community": "student",
        "person": {"given_name": given, "family_name": family, "birth_date": born},
        "consent": true
    })
}

/// Keys, a partner and a verified student, ready for offers.
pub struct OfferSetup {
    pub admin: String,
    pub checkout: String,
    pub partner: String,
    pub partner_id: uuid::Uuid,
    /// Ana Lima's live student membership.
    pub membership_id: String,
}

impl TestApp {
    pub async fn offer_setup(&self) -> OfferSetup {
        let admin = self.key(Role::Admin).await;
        let checkout = self.key(Role::Checkout).await;
        let partner_id = offergate::store::partners::insert(&self.db, "Skyways")
            .await
            .expect("partner")
            .id;
        let (partner, _) = create_key(&self.db, Role::Partner, Some(partner_id), "partner")
            .await
            .expect("partner key");
        self.import_roster(&admin).await;
        let verified: serde_json::Value = self
            .verify(&checkout, student("Ana", "Lima", "2004-03-09"))
            .await
            .json()
            .await
            .expect("verified");
        OfferSetup {
            admin,
            checkout,
            partner: partner.expose().to_owned(),
            partner_id,
            membership_id: verified["membership_id"]
                .as_str()
                .expect("membership")
                .to_owned(),
        }
    }

    /// Creates an offer from `fields` over an active student offer.
    pub async fn offer(&self, admin: &str, fields: serde_json::Value) -> serde_json::Value {
        let mut body = serde_json::json!({
            "title": "Student spring sale",
            "communities": ["student"],
            "discount": {"kind": "percent", "percent_off": 15},
            "status": "active"
        });
        for (key, value) in fields.as_object().expect("object") {
            body[key] = value.clone();
        }
        let response = self
            .client
            .post(self.url("/v1/offers"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.expect("offer")
    }

    pub async fn post_json(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    pub async fn token(
        &self,
        checkout: &str,
        membership_id: &str,
        offer_id: &str,
    ) -> reqwest::Response {
        self.post_json(
            checkout,
            "/v1/tokens",
            serde_json::json!({"membership_id": membership_id, "offer_id": offer_id}),
        )
        .await
    }

    pub async fn redeem(
        &self,
        checkout: &str,
        idempotency_key: &str,
        token: &str,
        order: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url("/v1/redemptions"))
            .bearer_auth(checkout)
            .header("idempotency-key", idempotency_key)
            .json(&serde_json::json!({"token": token, "order_ref": order, "amount": 12900}))
            .send()
            .await
            .expect("sent")
    }
}

/// A token's id (its `jti`), read without verifying.
pub fn jti(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("claims");
    claims["jti"].as_str().expect("jti").to_owned()
}
