//! A full pool: more requests at once than the process has connections.
//! Each request that cannot get a connection within the acquire timeout is
//! answered 503 `unavailable` with `Retry-After`, never left hanging; its
//! retry, under the same Idempotency-Key, takes effect once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::Answer;
use crate::helpers::jti;
use crate::issue_tokens;
use crate::processes::Processes;

const CONNECTIONS: usize = 2;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
const REQUESTS: usize = 24;
/// How long the rows every redemption needs stay locked, so that the
/// requests holding the pool's connections wait.
const HELD_FOR: Duration = Duration::from_secs(3);
/// A refusal comes at the acquire timeout, plus this much at most.
const MARGIN: Duration = Duration::from_millis(1500);

#[tokio::test]
#[ignore = "the fault suite: run by .ci/faults on the release binary"]
async fn a_full_pool_answers_503_with_retry_after_and_never_hangs() {
    let connections = CONNECTIONS.to_string();
    let acquire = ACQUIRE_TIMEOUT.as_secs().to_string();
    let processes = Processes::start(&[&[
        ("OFFERGATE_DATABASE__MAX_CONNECTIONS", connections.as_str()),
        ("OFFERGATE_DATABASE__ACQUIRE_TIMEOUT_SECS", acquire.as_str()),
    ]])
    .await;
    let offer = processes.offer(json!({})).await;
    let membership = processes.membership().await;
    let tokens = issue_tokens(&processes, &offer, membership, REQUESTS).await;
    let ids: Vec<uuid::Uuid> = tokens.iter().map(|t| jti(t).parse().unwrap()).collect();
    let send = |n: usize| {
        processes.post(
            0,
            "/v1/redemptions",
            Some(&format!("pool-{n}")),
            &json!({"token": tokens[n], "order_ref": format!("o-{n}"), "amount": 1000}),
        )
    };

    let mut lock = processes.db.begin().await.unwrap();
    sqlx::query("SELECT id FROM tokens WHERE id = ANY($1) FOR UPDATE")
        .bind(&ids)
        .execute(&mut *lock)
        .await
        .unwrap();
    let began = Instant::now();
    let release = async {
        tokio::time::sleep(HELD_FOR).await;
        lock.commit().await.unwrap();
        began.elapsed()
    };
    let storm = futures::stream::iter(0..REQUESTS)
        .map(|n| async move {
            let response = send(n).send().await;
            let took = began.elapsed();
            let retry_after = response
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("retry-after").cloned());
            (n, Answer::read(response).await, retry_after, took)
        })
        .buffer_unordered(REQUESTS)
        .collect::<Vec<_>>();
    let (released_at, answers) = tokio::join!(release, storm);

    let refused: Vec<&(
        usize,
        Option<Answer>,
        Option<reqwest::header::HeaderValue>,
        Duration,
    )> = answers
        .iter()
        .filter(|(_, a, _, _)| a.as_ref().is_some_and(|a| a.status == 503))
        .collect();
    let waited: Vec<_> = answers
        .iter()
        .filter(|(_, a, _, _)| a.as_ref().is_some_and(|a| a.status == 201))
        .collect();
    let slowest_refusal = refused.iter().map(|r| r.3).max().unwrap_or_default();
    let retried_at = Instant::now();
    let retries: Vec<(usize, Option<Answer>)> = futures::stream::iter(refused.iter().map(|r| r.0))
        .map(|n| async move { (n, Answer::read(send(n).send().await).await) })
        .buffered(CONNECTIONS)
        .collect()
        .await;
    let retries_took = retried_at.elapsed();

    let redemption_of = crate::redemption_of_token(&processes).await;
    let acknowledged: Vec<(usize, &Answer)> = waited
        .iter()
        .filter_map(|(n, a, _, _)| a.as_ref().map(|a| (*n, a)))
        .chain(
            retries
                .iter()
                .filter_map(|(n, a)| a.as_ref().filter(|a| a.status == 201).map(|a| (*n, a))),
        )
        .collect();
    let lost = acknowledged
        .iter()
        .filter(|(n, a)| {
            redemption_of
                .get(&ids[*n])
                .is_none_or(|id| a.body["id"] != json!(id))
        })
        .count()
        + (REQUESTS - acknowledged.len());
    let kinds: Vec<String> = answers
        .iter()
        .map(|(_, a, _, _)| a.as_ref().map_or("no answer".to_owned(), Answer::kind))
        .collect();

    crate::Figures {
        fault: "full pool: 24 requests at once on 2 connections",
        attempts: answers.len() + retries.len(),
        acknowledged: acknowledged.len(),
        lost,
        recovery_secs: retries_took.as_secs_f64(),
        detail: format!(
            "{} refused 503 (slowest {:.2} s, acquire timeout {} s), {} waited for the held rows \
             and took effect when they were released at {:.2} s; recovery is the time the \
             refused requests' retries took",
            refused.len(),
            slowest_refusal.as_secs_f64(),
            ACQUIRE_TIMEOUT.as_secs(),
            waited.len(),
            released_at.as_secs_f64(),
        ),
    }
    .report();

    assert_eq!(
        refused.len() + waited.len(),
        REQUESTS,
        "every request is answered 201 or 503: {kinds:?}"
    );
    assert!(
        refused.len() >= REQUESTS - CONNECTIONS,
        "{} refused: {kinds:?}",
        refused.len()
    );
    for (_, answer, retry_after, took) in &refused {
        assert_eq!(answer.as_ref().unwrap().kind(), "unavailable");
        assert!(retry_after.is_some(), "a 503 without Retry-After");
        assert!(
            *took < ACQUIRE_TIMEOUT + MARGIN,
            "refused only after {took:?}"
        );
    }
    assert_eq!(lost, 0);
    assert_eq!(redemption_of.len(), REQUESTS);
}
