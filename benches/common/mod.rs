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
    let pool = PgPool::connect(&server_url(name))
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

pub fn pgbench(
    database: &str,
    scripts: &[PgbenchScript],
    extra_args: &[&str],
    seconds: u64,
    concurrency: usize,
    dir: &Path,
    tag: &str,
) -> Load {
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
    let output = command.current_dir(dir).output().expect("pgbench runs");
    assert!(
        output.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("log-{tag}")) {
            for line in std::fs::read_to_string(&path).unwrap_or_default().lines() {
                if let Some(us) = line
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    latencies.push(us);
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
    Load {
        requests: latencies.len(),
        elapsed: Duration::from_secs_f64(latencies.len() as f64 / tps),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
    }
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_server(database: &str, port: u16) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_offergate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", server_url(database))
        .env("OFFERGATE_LOG__FILTER", "warn")
        .env("OFFERGATE_VERIFICATION__MAX_FAILURES_PER_KEY", "100000000")
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

/// Runs `concurrency` workers for `seconds`, each sending the requests
/// `request(worker, k)` builds one after another; every answer must be 2xx.
pub async fn drive<F>(seconds: u64, concurrency: usize, request: F) -> Load
where
    F: Fn(usize, u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = std::sync::Arc::new(request);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut k = 0u64;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let response = request(worker, k).send().await.expect("request");
                    let status = response.status();
                    let body = response.bytes().await.expect("body");
                    assert!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                    latencies.push(sent.elapsed().as_micros() as u64);
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

/// Runs wrk with a Lua script against `url`: two threads, `concurrency`
/// connections, `seconds` long.
pub fn wrk(url: &str, script: &Path, seconds: u64, concurrency: usize) -> Load {
    let output = Command::new("wrk")
        .args([
            "-t2",
            "-c",
            &concurrency.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(url)
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "wrk: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("Non-2xx"), "wrk saw failures:\n{text}");
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
