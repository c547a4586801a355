//! kill -9 of one of three processes during a storm of redemptions: every
//! request left without an answer is retried, under its Idempotency-Key, on
//! a survivor, and gets the first answer or a first effect, never a second.

use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::jti;
use crate::issue_tokens;

use crate::Answer;
use crate::processes::{IN_FLIGHT, Processes};

/// The process killed; the others survive.
const VICTIM: usize = 0;
const SIGKILL: i32 = 9;
const STORM_TOKENS: usize = 300;
/// The victim is killed when this many redemptions have started.
const KILL_AFTER: usize = STORM_TOKENS / 3;

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
#[ignore = "the fault suite: run by .ci/faults on the release binary"]
async fn a_kill_9_during_three_hundred_redemptions_loses_no_answer_and_doubles_no_effect() {
    let mut processes = Processes::start(&[&[], &[], &[]]).await;
    let offer = processes.offer(json!({})).await;
    let membership = processes.membership().await;
    let tokens = issue_tokens(&processes, &offer, membership, STORM_TOKENS).await;

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
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let storm_took = storm_began.elapsed();
    let status = processes.servers[VICTIM].wait(Duration::from_secs(5));
    assert_eq!(status.signal(), Some(SIGKILL), "{status:?}");

    let redemption_of = crate::redemption_of_token(&processes).await;
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
        .buffered(IN_FLIGHT)
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
    crate::Figures {
        fault: "kill -9 of 1 of 3 processes during 300 redemptions",
        attempts: attempts.len() + retries.len(),
        acknowledged: attempts
            .iter()
            .filter(|a| a.last().is_some_and(|answer| answer.status == 201))
            .count(),
        lost: lost + mismatched + (STORM_TOKENS - redemption_of.len()),
        recovery_secs: slowest_retry.as_secs_f64(),
        detail: format!(
            "{} retried on a survivor ({replays} replayed, {first_effects} first effects); \
             recovery is the slowest retry's answer after its failure",
            retries.len()
        ),
    }
    .report();
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
