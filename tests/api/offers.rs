use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, student};

#[tokio::test]
async fn admins_create_offers_checkouts_see_active_ones_partners_their_own() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let active = app
        .offer(
            &s.admin,
            json!({"partner_id": s.partner_id, "total_cap": 50,
        "starts_at": "2026-11-01T00:00:00-05:00"}),
        )
        .await;
    let draft = app
        .offer(&s.admin, json!({"status": "draft", "title": "Later"}))
        .await;
    assert_eq!(active["starts_at"], "2026-11-01T05:00:00Z");
    assert_eq!(active["token_ttl_secs"], 900);

    let seen = |key: &str| {
        let key = key.to_owned();
        let app = &app;
        async move {
            let offers: Vec<Value> = app
                .get_with_key("/v1/offers", &key)
                .await
                .json()
                .await
                .unwrap();
            offers
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let admin_sees = seen(&s.admin).await;
    let checkout_sees = seen(&s.checkout).await;
    let partner_sees = seen(&s.partner).await;

    assert_eq!(admin_sees.len(), 2);
    assert_eq!(checkout_sees, [active["id"].as_str().unwrap()]);
    assert_eq!(partner_sees, [active["id"].as_str().unwrap()]);
    let hidden = app
        .get_with_key(
            &format!("/v1/offers/{}", draft["id"].as_str().unwrap()),
            &s.checkout,
        )
        .await;
    assert_problem(hidden, 404, "not_found").await;
}

#[tokio::test]
async fn bad_offers_are_refused_field_by_field() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .post_json(
            &admin,
            "/v1/offers",
            json!({"title": "", "communities": ["wizard"], "discount": {"kind": "fixed", "amount_minor": 0, "currency": "usd"},
                   "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z", "total_cap": 0}),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "title",
            "communities[0]",
            "discount.amount_minor",
            "discount.currency",
            "ends_at",
            "total_cap"
        ]
    );
}

#[tokio::test]
async fn a_verification_with_an_offer_answers_with_its_token() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({})).await;
    let mut body = student("Bob", "ONeill", "2003-11-21");
    body["offer_id"] = offer["id"].clone();

    let answer: Value = app.verify(&s.checkout, body).await.json().await.unwrap();

    assert_eq!(answer["status"], "verified");
    assert_eq!(answer["token"]["offer_id"], offer["id"]);
    assert_eq!(
        answer["token"]["token"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );
    let mut unlisted = student("No", "Body", "2001-01-01");
    unlisted["offer_id"] = offer["id"].clone();
    let refused: Value = app
        .verify(&s.checkout, unlisted)
        .await
        .json()
        .await
        .unwrap();
    assert!(refused.get("token").is_none());
}

#[tokio::test]
async fn a_token_needs_an_eligible_community_and_a_live_membership() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let for_teachers = app
        .offer(&s.admin, json!({"communities": ["teacher"]}))
        .await;
    let paused = app.offer(&s.admin, json!({"status": "paused"})).await;

    let wrong_community = app
        .token(
            &s.checkout,
            &s.membership_id,
            for_teachers["id"].as_str().unwrap(),
        )
        .await;
    assert_problem(wrong_community, 403, "not_eligible").await;
    let not_open = app
        .token(
            &s.checkout,
            &s.membership_id,
            paused["id"].as_str().unwrap(),
        )
        .await;
    assert_problem(not_open, 403, "not_eligible").await;

    let open = app.offer(&s.admin, json!({})).await;
    sqlx::query("UPDATE memberships SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let lapsed = app
        .token(&s.checkout, &s.membership_id, open["id"].as_str().unwrap())
        .await;
    assert_problem(lapsed, 403, "not_eligible").await;
}

#[tokio::test]
async fn stats_count_the_offer_from_verification_to_confirmation() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let offer_id = offer["id"].as_str().unwrap();
    let mut with_offer = student("Bob", "ONeill", "2003-11-21");
    with_offer["offer_id"] = json!(offer_id);
    let verified: Value = app
        .verify(&s.checkout, with_offer.clone())
        .await
        .json()
        .await
        .unwrap();
    with_offer["person"]["birth_date"] = json!("1999-01-01");
    app.verify(&s.checkout, with_offer).await;
    let token = verified["token"]["token"].as_str().unwrap();
    let redeemed: Value = app
        .redeem(&s.checkout, "k1", token, "order-1")
        .await
        .json()
        .await
        .unwrap();
    app.post_json(
        &s.partner,
        &format!(
            "/v1/redemptions/{}/confirm",
            redeemed["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    app.token(&s.checkout, &s.membership_id, offer_id).await;

    let stats: Value = app
        .get_with_key(&format!("/v1/offers/{offer_id}/stats"), &s.partner)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(stats["verifications_tried"], 2);
    assert_eq!(stats["verifications_passed"], 1);
    assert_eq!(stats["tokens_issued"], 2);
    assert_eq!(stats["tokens_outstanding"], 1);
    assert_eq!(stats["tokens_redeemed"], 1);
    assert_eq!(stats["redemptions_confirmed"], 1);
    assert_eq!(stats["redemption_rate"], 0.5);
    assert!(stats["median_seconds_to_redeem"].as_f64().unwrap() >= 0.0);
}
