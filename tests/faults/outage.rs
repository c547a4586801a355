//! A PostgreSQL restart under load: while the database is down every
//! request is answered 503 `unavailable` with `Retry-After`, no process
//! panics or restarts, and each serves again within seconds of PostgreSQL
//! returning. Every request refused during the outage is retried afterwards
//! under its Idempotency-Key: no effect is lost or done twice.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::Answer;
use crate::helpers::jti;
use crate::issue_tokens;
use crate::processes::{IN_FLIGHT, Processes};

const WORKERS: usize = 8;
/// Each worker's pause between requests: a steady load, not a flood.
const PACE: Duration = Duration::from_millis(40);
const TOKENS: usize = 4000;
const BEFORE: Duration = Duration::from_secs(2);
const DOWN: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(7);
/// The promise: serving again within this long of PostgreSQL accepting
/// connections.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);
/// Bounds a request that would hang.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// `pg_ctl` of the cluster the suite runs against, with its data directory
/// and log file: `.ci/faults` sets it.
fn pg_ctl(action: &str) {
    let prefix = std::env::var("OFFERGATE_FAULTS_PG_CTL").expect(
        "OFFERGATE_FAULTS_PG_CTL names the pg_ctl of a cluster this test may restart; \
         .ci/faults sets it",
    );
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{prefix} {action}")])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("pg_ctl runs");
    assert!(status.success(), "pg_ctl {action}: {status}");
}

struct Sent {
    n: usize,
    server: usize,
    at: Duration,
    answer: Option<Answer>,
    retry_after: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts PostgreSQL: run by .ci/faults against a cluster of its own"]
async fn a_postgresql_restart_under_load_answers_503_and_recovers_without_a_restart() {
    let fast_acquire = [("OFFERGATE_DATABASE__ACQUIRE_TIMEOUT_SECS", "1")];
    let mut processes = Processes::start(&[&fast_acquire, &fast_acquire]).await;
    let offer = processes.offer(json!({})).await;
    let membership = processes.membership().await;
    let tokens = issue_tokens(&processes, &offer, membership, TOKENS).await;
    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let key = |n: usize| format!("outage-{n}");
    let body =
        |n: usize| json!({"token": tokens[n], "order_ref": format!("o-{n}"), "amount": 1000});
    let send = |server: usize, n: usize| {
        client
            .post(format!(
                "{}/v1/redemptions",
                processes.servers[server].address
            ))
            .bearer_auth(&processes.checkout)
            .header("idempotency-key", key(n))
            .json(&body(n))
            .send()
    };

    let began = Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let sent: Mutex<Vec<Sent>> = Mutex::default();
    let load = futures::future::join_all((0..WORKERS).map(|worker| {
        let (next, stop, sent, send) = (&next, &stop, &sent, &send);
        async move {
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                assert!(n < TOKENS, "the load ran out of tokens");
                let server = worker % 2;
                let at = began.elapsed();
                let response = send(server, n).await;
                let retry_after = response.as_ref().ok().and_then(|r| {
                    r.headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                });
                let answer = Answer::read(response).await;
                sent.lock().unwrap().push(Sent {
                    n,
                    server,
                    at,
                    answer,
                    retry_after,
                });
                tokio::time::sleep(PACE).await;
            }
        }
    }));
    let faults = async {
        tokio::time::sleep(BEFORE).await;
        let stopping = began.elapsed();
        tokio::task::block_in_place(|| pg_ctl("stop -m fast -w"));
        let down = began.elapsed();
        tokio::time::sleep(DOWN).await;
        tokio::task::block_in_place(|| pg_ctl("start -w"));
        let up = began.elapsed();
        tokio::time::sleep(AFTER).await;
        stop.store(true, Ordering::SeqCst);
        (stopping, down, up)
    };
    let ((stopping, down, up), _) = tokio::join!(faults, load);
    let sent = sent.into_inner().unwrap();

    // Retry everything not acknowledged, as a checkout would: same key.
    let unacknowledged: Vec<usize> = sent
        .iter()
        .filter(|s| s.answer.as_ref().is_none_or(|a| a.status != 201))
        .map(|s| s.n)
        .collect();
    let retried: Vec<(usize, Option<Answer>)> = futures::stream::iter(unacknowledged.clone())
        .map(|n| async move { (n, Answer::read(send(n % 2, n).await).await) })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;

    let redemption_of = crate::redemption_of_token(&processes).await;
    let rows = processes.count("SELECT count(*) FROM redemptions").await as usize;
    let held = |n: usize| {
        redemption_of
            .get(&jti(&tokens[n]).parse().unwrap())
            .copied()
    };
    let acknowledged: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.answer.as_ref().is_some_and(|a| a.status == 201))
        .collect();
    let lost_acknowledged = acknowledged
        .iter()
        .filter(|s| {
            let id = &s.answer.as_ref().unwrap().body["id"];
            held(s.n).is_none_or(|held| *id != json!(held))
        })
        .count();
    let retry_failed = retried
        .iter()
        .filter(|(n, answer)| {
            !answer
                .as_ref()
                .is_some_and(|a| a.status == 201 && a.body["id"] == json!(held(*n)))
        })
        .count();
    let doubled = rows - redemption_of.len();
    let attempted = sent.len();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for s in &sent {
        let kind = s
            .answer
            .as_ref()
            .map_or("no answer".to_owned(), Answer::kind);
        *kinds.entry(kind).or_default() += 1;
    }
    let refused_without_retry_after = sent
        .iter()
        .filter(|s| s.answer.as_ref().is_some_and(|a| a.status == 503) && s.retry_after.is_none())
        .count();
    let refusals_while_down = sent
        .iter()
        .filter(|s| s.at > down && s.at < up)
        .filter(|s| s.answer.as_ref().is_some_and(|a| a.kind() == "unavailable"))
        .count();
    // Per process: the moment after which every request it was sent was
    // acknowledged, measured from PostgreSQL accepting connections again.
    let recovered: Vec<Duration> = (0..2)
        .map(|server| {
            let last_failure = sent
                .iter()
                .filter(|s| s.server == server)
                .filter(|s| s.answer.as_ref().is_none_or(|a| a.status != 201))
                .map(|s| s.at)
                .max()
                .unwrap_or_default();
            sent.iter()
                .filter(|s| s.server == server && s.at > last_failure)
                .map(|s| s.at)
                .min()
                .unwrap_or(AFTER + up)
                .saturating_sub(up)
        })
        .collect();
    let recovery = recovered.iter().max().copied().unwrap_or_default();
    let alive = processes
        .servers
        .iter_mut()
        .all(|s| s.child.try_wait().unwrap().is_none());
    let panics = processes
        .servers
        .iter()
        .map(|s| {
            s.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("panicked"))
                .count()
        })
        .sum::<usize>();

    crate::Figures {
        fault: "PostgreSQL restart under load, 2 processes",
        attempts: attempted + retried.len(),
        acknowledged: acknowledged.len() + retried.len() - retry_failed,
        lost: lost_acknowledged + retry_failed + doubled,
        recovery_secs: recovery.as_secs_f64(),
        detail: format!(
            "stop took {:.2} s, down {:.2} s; answers {kinds:?}; {refusals_while_down} \
             `unavailable` while down; {} retried after; per process recovered in {:?}",
            (down - stopping).as_secs_f64(),
            (up - down).as_secs_f64(),
            retried.len(),
            recovered
                .iter()
                .map(|d| format!("{:.2} s", d.as_secs_f64()))
                .collect::<Vec<_>>()
        ),
    }
    .report();

    assert!(alive, "a process died");
    assert_eq!(panics, 0, "a process panicked");
    assert!(
        refusals_while_down > 0,
        "no request met the outage: {kinds:?}"
    );
    let unexpected: Vec<(&String, &usize)> = kinds
        .iter()
        .filter(|(kind, _)| !matches!(kind.as_str(), "201" | "unavailable"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "answers other than 201 and 503 unavailable: {unexpected:?}"
    );
    assert_eq!(refused_without_retry_after, 0);
    assert_eq!(lost_acknowledged, 0);
    assert_eq!(
        retry_failed,
        0,
        "{:?}",
        retried
            .iter()
            .filter(|(_, a)| a.as_ref().is_none_or(|a| a.status != 201))
            .map(|(n, a)| (n, a.as_ref().map(|a| a.body.clone())))
            .take(5)
            .collect::<Vec<(&usize, Option<Value>)>>()
    );
    assert_eq!(doubled, 0);
    assert!(
        recovery <= RECOVERY_LIMIT,
        "recovered in {recovery:?}, more than {RECOVERY_LIMIT:?}"
    );
}
