use serde_json::{Value, json};

use crate::helpers::{OfferSetup, TestApp, assert_problem, spawn_app};

async fn token_for(app: &TestApp, s: &OfferSetup, offer: &Value) -> String {
    let token: Value = app
        .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    token["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_redeems_once_and_returns_the_discount() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(
            &s.admin,
            json!({"discount": {"kind": "fixed", "amount_minor": 2500, "currency": "EUR"}}),
        )
        .await;
    let token = token_for(&app, &s, &offer).await;

    let first = app
        .redeem(&s.checkout, "attempt-1", &token, "order-1")
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = app
        .redeem(&s.checkout, "attempt-2", &token, "order-2")
        .await;

    assert_eq!(
        first["discount"],
        json!({"kind": "fixed", "amount_minor": 2500, "currency": "EUR"})
    );
    assert_eq!(first["offer_id"], offer["id"]);
    assert_problem(second, 409, "already_redeemed").await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({})).await;
    let token = token_for(&app, &s, &offer).await;

    let first: Value = app
        .redeem(&s.checkout, "same", &token, "order-1")
        .await
        .json()
        .await
        .unwrap();
    let retry = app.redeem(&s.checkout, "same", &token, "order-1").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    let other_body = app.redeem(&s.checkout, "same", &token, "order-2").await;
    let missing = app
        .post_json(
            &s.checkout,
            "/v1/redemptions",
            json!({"token": token, "order_ref": "o"}),
        )
        .await;

    assert_eq!(first, retry);
    assert_problem(other_body, 422, "idempotency_key_reused").await;
    let problem = assert_problem(missing, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.count("SELECT count(*) FROM redemptions").await, 1);
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_with_their_own_types() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({})).await;
    let expiring = token_for(&app, &s, &offer).await;
    let revoked = token_for(&app, &s, &offer).await;
    let expiring_id = crate::helpers::jti(&expiring);
    sqlx::query("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&expiring_id)
        .execute(&app.db)
        .await
        .unwrap();
    let revoke = app
        .post_json(
            &s.admin,
            &format!("/v1/tokens/{}/revoke", crate::helpers::jti(&revoked)),
            json!({}),
        )
        .await;
    assert_eq!(revoke.status(), 200);

    assert_problem(
        app.redeem(&s.checkout, "a", &expiring, "o1").await,
        410,
        "token_expired",
    )
    .await;
    assert_problem(
        app.redeem(&s.checkout, "b", &revoked, "o2").await,
        409,
        "token_revoked",
    )
    .await;
    let again = app
        .post_json(
            &s.admin,
            &format!("/v1/tokens/{}/revoke", crate::helpers::jti(&revoked)),
            json!({}),
        )
        .await;
    let again = assert_problem(again, 409, "token_not_revocable").await;
    assert_eq!(
        again["state"], "revoked",
        "the conflict names the token's state"
    );
}

#[tokio::test]
async fn a_reversal_frees_the_place_and_gives_the_token_back_where_the_offer_says() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let keeps = app.offer(&s.admin, json!({"total_cap": 1})).await;
    let gives_back = app
        .offer(&s.admin, json!({"reversal_returns_token": true}))
        .await;

    let token = token_for(&app, &s, &keeps).await;
    let redeemed: Value = app
        .redeem(&s.checkout, "k1", &token, "order-1")
        .await
        .json()
        .await
        .unwrap();
    let full = app
        .token(&s.checkout, &s.membership_id, keeps["id"].as_str().unwrap())
        .await;
    assert_problem(full, 409, "offer_exhausted").await;
    let path = format!(
        "/v1/redemptions/{}/reverse",
        redeemed["id"].as_str().unwrap()
    );
    let reversed: Value = app
        .post_json(&s.checkout, &path, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reversed["token_state"], "reversed");
    assert_problem(
        app.post_json(&s.checkout, &path, json!({})).await,
        409,
        "already_reversed",
    )
    .await;
    assert_problem(
        app.redeem(&s.checkout, "k2", &token, "order-1b").await,
        409,
        "token_revoked",
    )
    .await;
    let place_freed = app
        .token(&s.checkout, &s.membership_id, keeps["id"].as_str().unwrap())
        .await;
    assert_eq!(place_freed.status(), 201);

    let token = token_for(&app, &s, &gives_back).await;
    let redeemed: Value = app
        .redeem(&s.checkout, "k3", &token, "order-2")
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/redemptions/{}/reverse",
        redeemed["id"].as_str().unwrap()
    );
    let reversed: Value = app
        .post_json(&s.checkout, &path, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reversed["token_state"], "issued");
    assert_eq!(
        app.redeem(&s.checkout, "k4", &token, "order-3")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn partners_list_and_confirm_their_own_redemptions_only() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let ours = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let other_partner = offergate::store::partners::insert(&app.db, "Rival")
        .await
        .unwrap()
        .id;
    let theirs = app
        .offer(&s.admin, json!({"partner_id": other_partner}))
        .await;
    let mut ours_ids = Vec::new();
    for n in 0..3 {
        let token = token_for(&app, &s, &ours).await;
        let r: Value = app
            .redeem(&s.checkout, &format!("o{n}"), &token, &format!("order-{n}"))
            .await
            .json()
            .await
            .unwrap();
        ours_ids.push(r["id"].as_str().unwrap().to_owned());
    }
    let token = token_for(&app, &s, &theirs).await;
    let their_redemption: Value = app
        .redeem(&s.checkout, "t", &token, "order-t")
        .await
        .json()
        .await
        .unwrap();

    let page: Value = app
        .get_with_key("/v1/redemptions?limit=2", &s.partner)
        .await
        .json()
        .await
        .unwrap();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest: Value = app
        .get_with_key(
            &format!("/v1/redemptions?limit=2&cursor={cursor}"),
            &s.partner,
        )
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ours_ids);
    assert!(rest["next_cursor"].is_null());

    let confirm = |id: &str| {
        let path = format!("/v1/redemptions/{id}/confirm");
        let (app, key) = (&app, s.partner.clone());
        async move {
            app.post_json(&key, &path, json!({"partner_ref": "PNR-42"}))
                .await
        }
    };
    let confirmed: Value = confirm(&ours_ids[0]).await.json().await.unwrap();
    assert_eq!(confirmed["partner_ref"], "PNR-42");
    assert!(confirmed["confirmed_at"].is_string());
    assert_problem(
        confirm(their_redemption["id"].as_str().unwrap()).await,
        404,
        "not_found",
    )
    .await;

    let unconfirmed: Value = app
        .get_with_key("/v1/redemptions?unconfirmed=true", &s.partner)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(unconfirmed["items"].as_array().unwrap().len(), 2);
    let admin_sees: Value = app
        .get_with_key("/v1/redemptions", &s.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin_sees["items"].as_array().unwrap().len(), 4);
    assert_problem(
        app.get_with_key("/v1/redemptions", &s.checkout).await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn erasure_unlinks_the_persons_tokens_and_keeps_the_redemptions() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({})).await;
    let token = token_for(&app, &s, &offer).await;
    app.redeem(&s.checkout, "k", &token, "order-1").await;

    let erased: Value = app
        .post_json(
            &s.admin,
            "/v1/people/erase",
            json!({"person": {"email": "ana.lima@state.edu"}}),
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(erased["tokens_unlinked"], 1);
    assert_eq!(
        app.count("SELECT count(*) FROM tokens WHERE membership_id IS NOT NULL")
            .await,
        0
    );
    assert_eq!(app.count("SELECT count(*) FROM redemptions").await, 1);
}
