//! What the benchmarks share: the bench database, pgbench runs, an HTTP
//! load generator and a release server process.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn server_url(database: &str) -> String {
    let raw = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/offergate".to_owned());
    let mut url = url::Url::parse(&raw).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

pub fn per_second(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64()
}

pub async fn fresh_database(name: &str) -> PgPool {
    let mut admin = PgConnection::connect(&server_url("postgres"))
        .await
        .expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create");
    // Few connections: the server under test and pgbench need the rest.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&server_url(name))
        .await
        .expect("connect bench db");
    offergate::db::migrate(&pool).await.expect("migrate");
    pool
}

pub struct Load {
    pub requests: usize,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Load {
    pub fn rate(&self) -> f64 {
        per_second(self.requests, self.elapsed)
    }
}

pub fn percentile(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let at = ((sorted_us.len() as f64 - 1.0) * q).round() as usize;
    sorted_us[at] as f64 / 1000.0
}

pub fn literal_bytes(bytes: &[u8]) -> String {
    let mut s = String::from("'\\x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s.push_str("'::bytea");
    s
}

/// A statement with its `$n` parameters replaced by SQL literals.
pub fn with_literals(statement: &str, values: &[String]) -> String {
    let mut sql = statement.to_owned();
    for (at, value) in values.iter().enumerate().rev() {
        sql = sql.replace(&format!("${}", at + 1), value);
    }
    sql
}

pub struct PgbenchScript {
    pub path: PathBuf,
}

/// A pgbench run: its load, and the most transactions one client ran (a
/// script that takes fresh rows per client must not run out of them).
pub struct PgbenchRun {
    pub load: Load,
    pub busiest_client: u64,
}

pub fn pgbench(
    database: &str,
    scripts: &[PgbenchScript],
    extra_args: &[&str],
    seconds: u64,
    concurrency: usize,
    dir: &Path,
    tag: &str,
) -> PgbenchRun {
    let log_prefix = dir.join(format!("log-{tag}"));
    let mut command = Command::new("pgbench");
    command
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            &concurrency.to_string(),
            "-j",
            "2",
        ])
        .args(extra_args)
        .args(["-T", &seconds.to_string(), "-l", "--log-prefix"])
        .arg(&log_prefix)
        .arg(server_url(database));
    for script in scripts {
        command.arg("-f").arg(&script.path);
    }
    let remove_logs = || {
        for entry in std::fs::read_dir(dir).expect("dir").flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&format!("log-{tag}")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    };
    // The PostgreSQL server may be shared: when other work holds all its
    // connections, wait for them rather than fail the whole benchmark.
    let mut attempts = 0;
    let output = loop {
        let output = command.current_dir(dir).output().expect("pgbench runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            break output;
        }
        attempts += 1;
        assert!(
            stderr.contains("too many clients") && attempts < 20,
            "pgbench: {stderr}"
        );
        remove_logs();
        std::thread::sleep(Duration::from_secs(3));
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut latencies = Vec::new();
    let mut per_client = std::collections::HashMap::<u64, u64>::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("log-{tag}")) {
            // Each line: client id, transaction number, latency (µs), ...
            for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                let mut fields = line.split_whitespace();
                let client = fields.next().and_then(|v| v.parse::<u64>().ok());
                let us = fields.nth(1).and_then(|v| v.parse::<u64>().ok());
                if let (Some(client), Some(us)) = (client, us) {
                    latencies.push(us);
                    *per_client.entry(client).or_default() += 1;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
    latencies.sort_unstable();
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("pgbench prints tps");
    PgbenchRun {
        load: Load {
            requests: latencies.len(),
            elapsed: Duration::from_secs_f64(latencies.len() as f64 / tps),
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
        },
        busiest_client: per_client.values().copied().max().unwrap_or(0),
    }
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Failed verifications the server under test allows per API key: every
/// attempt of a benchmark comes from one key.
pub const PER_KEY_LIMIT: i32 = 100_000_000;

pub fn start_server(database: &str, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_offergate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", server_url(database))
        .env("OFFERGATE_LOG__FILTER", "warn")
        .env(
            "OFFERGATE_VERIFICATION__MAX_FAILURES_PER_KEY",
            PER_KEY_LIMIT.to_string(),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("offergate serve starts");
    Server(child)
}

pub fn print_load(name: &str, load: &Load) {
    println!(
        "  {name:<44} {:>9.0} /s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} requests)",
        load.rate(),
        load.p50_ms,
        load.p99_ms,
        load.requests
    );
}

/// How a load run sends its requests.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each worker sends its next request as soon as the last is answered.
    Closed,
    /// The workers together send this many requests a second, each on its
    /// schedule; a latency counts from the moment its request was due, so an
    /// answer that comes late and delays the next is not hidden (as wrk2
    /// measures).
    Rate(f64),
}

/// Runs `concurrency` workers for `seconds`, each running `step(worker, k)`
/// for its k-th request (or journey) one after another; a step panics on
/// any failure.
pub async fn drive<F, Fut>(seconds: u64, concurrency: usize, pace: Pace, step: F) -> Load
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let step = std::sync::Arc::new(step);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let step = step.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut k = 0u64;
                loop {
                    let due = match pace {
                        Pace::Closed => Instant::now(),
                        Pace::Rate(rate) => {
                            let slot = k as f64 * concurrency as f64 + worker as f64;
                            started + Duration::from_secs_f64(slot / rate)
                        }
                    };
                    if due >= deadline {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                    step(worker, k).await;
                    latencies.push(due.elapsed().as_micros() as u64);
                    k += 1;
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Load {
        requests: all.len(),
        elapsed,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
    }
}

/// Sends a request and returns the answer's body; anything but a 2xx
/// fails the run.
pub async fn expect_success(request: reqwest::RequestBuilder) -> String {
    let response = request.send().await.expect("request");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert!(status.is_success(), "{status}: {body}");
    body
}

/// A free port on the loopback, for a server process.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("addr").port()
}

/// Waits until the server at `address` is ready.
pub async fn wait_ready(address: &str) {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server at {address} did not become ready");
}

/// Whether `wrk` is installed: it loads a server with less CPU than a load
/// generator of ours, which matters on a machine whose cores everything
/// shares.
pub fn wrk_installed() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

fn duration_ms(text: &str) -> f64 {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let value: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => value,
    }
}

/// wrk's threads: one per core of the machine it shares.
pub const WRK_THREADS: usize = 2;

/// Runs wrk with a Lua script against `url`: two threads, `concurrency`
/// connections, `seconds` long; `args` go to the script's `init`.
pub fn wrk(url: &str, script: &Path, args: &[String], seconds: u64, concurrency: usize) -> Load {
    let output = Command::new("wrk")
        .args([
            &format!("-t{WRK_THREADS}"),
            "-c",
            &concurrency.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .arg("--")
        .args(args)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wrk: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw failures (a script that ran out of fresh rows asks for /exhausted):\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("0")
            .to_owned()
    };
    let requests: usize = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rate: f64 = field("Requests/sec:").parse().unwrap_or(0.0);
    Load {
        requests,
        elapsed: Duration::from_secs_f64(requests as f64 / rate.max(1.0)),
        p50_ms: duration_ms(&field("50%")),
        p99_ms: duration_ms(&field("99%")),
    }
}

/// The development settings of a fresh clone.
pub fn settings() -> offergate::config::Settings {
    let mut env = std::collections::HashMap::new();
    env.insert(
        "OFFERGATE_CONFIG_DIR".to_owned(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/config").to_owned(),
    );
    offergate::config::Settings::load_from(env).expect("settings")
}
