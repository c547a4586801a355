//! Places under the caps: counted as tokens take them, given back when a
//! token expires unused, is revoked or its redemption reversed, and
//! recounted when an offer's terms change. Idempotent issuance holds one
//! place however often it is retried.

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, jti, spawn_app, student};

async fn issue_with_key(
    app: &TestApp,
    checkout: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/tokens"))
        .bearer_auth(checkout)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

async fn places_taken(app: &TestApp, offer: &Value) -> i64 {
    sqlx::query_scalar::<_, i32>("SELECT places_taken FROM offers WHERE id = $1::uuid")
        .bind(offer["id"].as_str().unwrap())
        .fetch_one(&app.db)
        .await
        .unwrap()
        .into()
}

#[tokio::test]
async fn a_retried_issuance_gets_the_same_token_and_holds_one_place() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"total_cap": 1})).await;
    let body = json!({"membership_id": s.membership_id, "offer_id": offer["id"]});

    let first = issue_with_key(&app, &s.checkout, "issue-1", body.clone()).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let retry = issue_with_key(&app, &s.checkout, "issue-1", body.clone()).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    let other_body = issue_with_key(
        &app,
        &s.checkout,
        "issue-1",
        json!({"membership_id": s.membership_id, "offer_id": uuid::Uuid::nil()}),
    )
    .await;
    let fresh_key = issue_with_key(&app, &s.checkout, "issue-2", body).await;

    assert_eq!(first, retry, "the very same token, signed again");
    assert_problem(other_body, 422, "idempotency_key_reused").await;
    assert_problem(fresh_key, 409, "offer_exhausted").await;
    assert_eq!(app.count("SELECT count(*) FROM tokens").await, 1);
    assert_eq!(places_taken(&app, &offer).await, 1);
}

#[tokio::test]
async fn a_retried_verification_with_an_offer_answers_alike_and_issues_once() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"total_cap": 5})).await;
    let mut body = student("Ana", "Lima", "2004-03-09");
    body["offer_id"] = offer["id"].clone();
    let send = |body: Value| {
        app.client
            .post(app.url("/v1/verifications"))
            .bearer_auth(&s.checkout)
            .header("idempotency-key", "verify-1")
            .json(&body)
            .send()
    };

    let first: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    let retry = send(body.clone()).await.unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();

    assert_eq!(first["status"], "verified");
    assert!(first["token"]["token"].is_string(), "{first}");
    assert_eq!(first, retry);
    assert_eq!(
        app.count("SELECT count(*) FROM tokens WHERE offer_id IS NOT NULL")
            .await,
        1
    );
    assert_eq!(places_taken(&app, &offer).await, 1);
}

#[tokio::test]
async fn a_retried_failed_verification_strikes_once() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let body = student("Nobody", "Here", "2001-01-01");
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = app
            .client
            .post(app.url("/v1/verifications"))
            .bearer_auth(&s.checkout)
            .header("idempotency-key", "same-attempt")
            .json(&body)
            .send()
            .await
            .unwrap();
        answers.push(answer.json::<Value>().await.unwrap());
    }

    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0]["status"], "not_verified");
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts WHERE outcome = 'not_verified'")
            .await,
        1
    );
}

#[tokio::test]
async fn an_expired_token_gives_its_place_back_to_the_next_member() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"total_cap": 1})).await;
    let offer_id = offer["id"].as_str().unwrap();
    let first: Value = app
        .token(&s.checkout, &s.membership_id, offer_id)
        .await
        .json()
        .await
        .unwrap();
    assert_problem(
        app.token(&s.checkout, &s.membership_id, offer_id).await,
        409,
        "offer_exhausted",
    )
    .await;
    sqlx::query("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(jti(first["token"].as_str().unwrap()))
        .execute(&app.db)
        .await
        .unwrap();

    let second = app.token(&s.checkout, &s.membership_id, offer_id).await;

    assert_eq!(second.status(), 201);
    let state: String = sqlx::query_scalar("SELECT state FROM tokens WHERE id = $1::uuid")
        .bind(jti(first["token"].as_str().unwrap()))
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(state, "expired");
    assert_eq!(places_taken(&app, &offer).await, 1);
    let stats: Value = app
        .get_with_key(&format!("/v1/offers/{offer_id}/stats"), &s.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tokens_expired"], 1, "{stats}");
}

#[tokio::test]
async fn a_revoked_token_and_a_reversed_redemption_give_their_places_back() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"total_cap": 1})).await;
    let offer_id = offer["id"].as_str().unwrap();
    let revoked: Value = app
        .token(&s.checkout, &s.membership_id, offer_id)
        .await
        .json()
        .await
        .unwrap();
    let revoke = app
        .post_json(
            &s.admin,
            &format!(
                "/v1/tokens/{}/revoke",
                jti(revoked["token"].as_str().unwrap())
            ),
            json!({}),
        )
        .await;
    assert_eq!(revoke.status(), 200);
    assert_eq!(places_taken(&app, &offer).await, 0);

    let redeemed: Value = app
        .token(&s.checkout, &s.membership_id, offer_id)
        .await
        .json()
        .await
        .unwrap();
    let redemption: Value = app
        .redeem(
            &s.checkout,
            "r-1",
            redeemed["token"].as_str().unwrap(),
            "order-1",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_problem(
        app.token(&s.checkout, &s.membership_id, offer_id).await,
        409,
        "offer_exhausted",
    )
    .await;
    let reverse = app
        .post_json(
            &s.checkout,
            &format!(
                "/v1/redemptions/{}/reverse",
                redemption["id"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(reverse.status(), 200);

    assert_eq!(places_taken(&app, &offer).await, 0);
    assert_eq!(
        app.token(&s.checkout, &s.membership_id, offer_id)
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn a_per_person_limit_added_later_counts_the_tokens_already_held() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({})).await;
    let offer_id = offer["id"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(
            app.token(&s.checkout, &s.membership_id, offer_id)
                .await
                .status(),
            201
        );
    }
    let mut terms = offer.clone();
    terms.as_object_mut().unwrap().remove("id");
    terms["per_person_limit"] = json!(2);
    let replaced = app
        .client
        .put(app.url(&format!("/v1/offers/{offer_id}")))
        .bearer_auth(&s.admin)
        .json(&terms)
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200, "{:?}", replaced.text().await);

    assert_problem(
        app.token(&s.checkout, &s.membership_id, offer_id).await,
        409,
        "person_limit_reached",
    )
    .await;
    assert_eq!(places_taken(&app, &offer).await, 2);
}
