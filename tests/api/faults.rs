//! No idempotent answer is lost when a server process dies after the effect:
//! the same request, under the same `Idempotency-Key`, on another process
//! sharing the database gets the first answer at once. (The kill -9 storm
//! is in the fault suite, `tests/faults`, on the release binary.)

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ROSTER, jti, student};
use crate::processes::{Processes, replayed};

/// The process that dies in each test; the others survive.
const VICTIM: usize = 0;
/// A retry is answered from what is stored, with no stale-claim wait.
const RETRY_LIMIT: Duration = Duration::from_secs(1);
const SIGABRT: i32 = 6;

/// Sends the request to the victim, which must die at `point` with the
/// client getting no answer, then the same request to a healthy
/// process; returns that answer and how long after the failure it came.
async fn answer_after_fault(
    processes: &mut Processes,
    point: &str,
    path: &str,
    idempotency_key: &str,
    body: &Value,
) -> (reqwest::Response, Duration) {
    let first = processes
        .post(VICTIM, path, Some(idempotency_key), body)
        .send()
        .await;
    let failed_at = Instant::now();
    let retry = processes
        .post(1, path, Some(idempotency_key), body)
        .send()
        .await
        .unwrap();
    let waited = failed_at.elapsed();

    let error = match first {
        Err(error) => error,
        Ok(answer) => {
            let status = answer.status();
            let log = processes.servers[VICTIM].log.lock().unwrap().join("\n");
            panic!(
                "the faulty process answered {status}: {:?}\n{log}",
                answer.text().await
            );
        }
    };
    assert!(!error.is_timeout(), "{error:?}");
    // The process died at the point, after the commit, not before it.
    let status = processes.servers[VICTIM].wait(Duration::from_secs(5));
    assert_eq!(status.signal(), Some(SIGABRT), "{status:?}");
    let log = processes.servers[VICTIM].log.lock().unwrap().join("\n");
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

    let (retry, waited) = answer_after_fault(
        &mut processes,
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

    let (retry, waited) = answer_after_fault(
        &mut processes,
        "issue.after_commit",
        "/v1/tokens",
        "issue-1",
        &body,
    )
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

    let (retry, waited) = answer_after_fault(
        &mut processes,
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
