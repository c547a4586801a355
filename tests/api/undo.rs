//! Who may undo what: reversal belongs to the key that redeemed (or an
//! admin), a confirmed redemption only to an admin with a reason, and a
//! confirmation racing a reversal is ordered one way.

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{OfferSetup, TestApp, assert_problem, spawn_app};

/// A redemption of a fresh token of `offer` by `s.checkout`; its id.
async fn redeemed(app: &TestApp, s: &OfferSetup, offer: &Value, order: &str) -> (String, String) {
    let token: Value = app
        .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let response = app.redeem(&s.checkout, order, &token, order).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), token)
}

async fn reverse(app: &TestApp, key: &str, id: &str, body: Value) -> reqwest::Response {
    app.post_json(key, &format!("/v1/redemptions/{id}/reverse"), body)
        .await
}

async fn confirm(app: &TestApp, partner: &str, id: &str) -> reqwest::Response {
    app.post_json(
        partner,
        &format!("/v1/redemptions/{id}/confirm"),
        json!({"partner_ref": "PNR-1"}),
    )
    .await
}

#[tokio::test]
async fn only_the_key_that_redeemed_or_an_admin_may_reverse_and_others_see_nothing() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let (id, _) = redeemed(&app, &s, &offer, "order-1").await;
    let (admins, _) = redeemed(&app, &s, &offer, "order-2").await;
    let other_checkout = app.key(Role::Checkout).await;
    let other_partner = app.key(Role::Partner).await;

    let by_other = reverse(&app, &other_checkout, &id, json!({})).await;
    let missing = reverse(
        &app,
        &other_checkout,
        &uuid::Uuid::now_v7().to_string(),
        json!({}),
    )
    .await;
    let shown_to_other = app
        .get_with_key(&format!("/v1/redemptions/{id}"), &other_checkout)
        .await;
    let shown_to_other_partner = app
        .get_with_key(&format!("/v1/redemptions/{id}"), &other_partner)
        .await;
    let by_partner = reverse(&app, &s.partner, &id, json!({})).await;

    let not_found = assert_problem(by_other, 404, "not_found").await;
    let really_missing = assert_problem(missing, 404, "not_found").await;
    assert_eq!(
        not_found["title"], really_missing["title"],
        "another key's redemption looks like none"
    );
    assert_problem(shown_to_other, 404, "not_found").await;
    assert_problem(shown_to_other_partner, 404, "not_found").await;
    assert_problem(by_partner, 403, "forbidden").await;
    assert_eq!(
        app.count("SELECT count(*) FROM redemptions WHERE reversed_at IS NOT NULL")
            .await,
        0
    );

    let own = reverse(&app, &s.checkout, &id, json!({})).await;
    assert_eq!(own.status(), 200);
    let by_admin = reverse(&app, &s.admin, &admins, json!({"reason": "fraud review"})).await;
    assert_eq!(by_admin.status(), 200);
    let again = reverse(&app, &s.checkout, &id, json!({})).await;
    let again = assert_problem(again, 409, "already_reversed").await;
    assert!(again["reversed_at"].is_string(), "{again}");
    let seen: Value = app
        .get_with_key(&format!("/v1/redemptions/{id}"), &s.checkout)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["reversed_by"], "checkout");
}

#[tokio::test]
async fn a_confirmed_redemption_is_reversed_only_by_an_admin_with_a_reason_the_partner_sees() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(
            &s.admin,
            json!({"partner_id": s.partner_id, "reversal_returns_token": true}),
        )
        .await;
    let (id, token) = redeemed(&app, &s, &offer, "order-1").await;
    assert_eq!(confirm(&app, &s.partner, &id).await.status(), 200);

    let by_checkout = reverse(&app, &s.checkout, &id, json!({"reason": "cancelled"})).await;
    let conflict = assert_problem(by_checkout, 409, "already_confirmed").await;
    assert!(conflict["confirmed_at"].is_string(), "{conflict}");
    // The token was not given back: it cannot be spent a second time.
    assert_problem(
        app.redeem(&s.checkout, "again", &token, "order-1b").await,
        409,
        "already_redeemed",
    )
    .await;

    let no_body = app
        .client
        .post(app.url(&format!("/v1/redemptions/{id}/reverse")))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    let no_reason = assert_problem(no_body, 422, "validation_failed").await;
    assert_eq!(no_reason["errors"][0]["field"], "reason");
    for bad in [json!({"reason": "   "}), json!({"reason": "x".repeat(501)})] {
        let response = reverse(&app, &s.admin, &id, bad).await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "reason");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM redemptions WHERE reversed_at IS NOT NULL")
            .await,
        0
    );

    let by_admin = reverse(
        &app,
        &s.admin,
        &id,
        json!({"reason": "  Flight cancelled by the airline  "}),
    )
    .await;
    assert_eq!(by_admin.status(), 200);
    let one: Value = app
        .get_with_key(&format!("/v1/redemptions/{id}"), &s.partner)
        .await
        .json()
        .await
        .unwrap();
    let listed: Value = app
        .get_with_key("/v1/redemptions", &s.partner)
        .await
        .json()
        .await
        .unwrap();
    for view in [&one, &listed["items"][0]] {
        assert_eq!(view["id"], id.as_str());
        assert_eq!(view["reversed_by"], "admin");
        assert_eq!(view["reversal_reason"], "Flight cancelled by the airline");
        assert!(view["reversed_at"].is_string() && view["confirmed_at"].is_string());
    }
    let recorded: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT reversed_by, reversed_by_role FROM redemptions WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(recorded.0.is_some_and(|key| s.admin.contains(&key)));
    assert_eq!(recorded.1.as_deref(), Some("admin"));
}

#[tokio::test]
async fn a_reversed_redemption_cannot_be_confirmed_and_the_answer_names_when() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let (id, _) = redeemed(&app, &s, &offer, "order-1").await;
    assert_eq!(
        reverse(&app, &s.checkout, &id, json!({})).await.status(),
        200
    );

    let late = confirm(&app, &s.partner, &id).await;

    let problem = assert_problem(late, 409, "redemption_reversed").await;
    assert!(problem["reversed_at"].is_string(), "{problem}");
}

#[tokio::test]
async fn a_confirmation_racing_a_reversal_is_ordered_one_way() {
    const PAIRS: usize = 24;
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(
            &s.admin,
            json!({"partner_id": s.partner_id, "reversal_returns_token": true}),
        )
        .await;
    let mut ids = Vec::new();
    for n in 0..PAIRS {
        ids.push(redeemed(&app, &s, &offer, &format!("order-{n}")).await.0);
    }

    let races = ids.iter().map(|id| {
        let (app, s) = (&app, &s);
        async move {
            let (confirmed, reversed) = tokio::join!(
                confirm(app, &s.partner, id),
                reverse(app, &s.checkout, id, json!({}))
            );
            let confirmed = (
                confirmed.status().as_u16(),
                confirmed.json::<Value>().await.unwrap(),
            );
            let reversed = (
                reversed.status().as_u16(),
                reversed.json::<Value>().await.unwrap(),
            );
            (confirmed, reversed)
        }
    });
    let outcomes = futures::future::join_all(races).await;

    let mut orders = [0, 0];
    for ((confirm_status, confirm_body), (reverse_status, reverse_body)) in outcomes {
        match (confirm_status, reverse_status) {
            (200, 409) => {
                assert_eq!(reverse_body["type"], "already_confirmed");
                orders[0] += 1;
            }
            (409, 200) => {
                assert_eq!(confirm_body["type"], "redemption_reversed");
                orders[1] += 1;
            }
            other => panic!("both or neither won: {other:?} {confirm_body} {reverse_body}"),
        }
    }
    assert_eq!(orders[0] + orders[1], PAIRS);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM redemptions
             WHERE confirmed_at IS NOT NULL AND reversed_at IS NOT NULL"
        )
        .await,
        0
    );
    let given_back = app
        .count("SELECT count(*) FROM tokens WHERE state = 'issued'")
        .await;
    assert_eq!(
        given_back as usize, orders[1],
        "a token comes back only when the reversal won"
    );
}
