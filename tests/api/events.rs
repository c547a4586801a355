//! The events outbox: each change writes its event in its own transaction,
//! with nothing of the person, readable at `GET /v1/events`.

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{OfferSetup, TestApp, assert_problem, spawn_app, student};

async fn events(app: &TestApp, key: &str, query: &str) -> Value {
    let response = app.get_with_key(&format!("/v1/events?{query}"), key).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Every kind of change once, on an offer of the setup's partner with one
/// place: verified, not verified, issued, exhausted, redeemed, confirmed,
/// and a second offer's redemption reversed.
async fn every_change(app: &TestApp, setup: &OfferSetup) -> (Value, Value) {
    let failed = app
        .verify(&setup.checkout, student("Ana", "Lima", "1990-01-01"))
        .await;
    assert_eq!(failed.status(), 200);
    let capped = app
        .offer(
            &setup.admin,
            json!({"partner_id": setup.partner_id, "total_cap": 1}),
        )
        .await;
    let plain = app
        .offer(&setup.admin, json!({"partner_id": setup.partner_id}))
        .await;
    let mut redemptions = Vec::new();
    for (n, offer) in [&capped, &plain].into_iter().enumerate() {
        let granted: Value = app
            .token(
                &setup.checkout,
                &setup.membership_id,
                offer["id"].as_str().unwrap(),
            )
            .await
            .json()
            .await
            .unwrap();
        let redeemed: Value = app
            .redeem(
                &setup.checkout,
                &format!("key-{n}"),
                granted["token"].as_str().unwrap(),
                "order-77",
            )
            .await
            .json()
            .await
            .unwrap();
        redemptions.push(redeemed["id"].as_str().unwrap().to_owned());
    }
    let confirmed = app
        .post_json(
            &setup.partner,
            &format!("/v1/redemptions/{}/confirm", redemptions[0]),
            json!({"partner_ref": "PNR-1"}),
        )
        .await;
    assert_eq!(confirmed.status(), 200);
    let reversed = app
        .post_json(
            &setup.checkout,
            &format!("/v1/redemptions/{}/reverse", redemptions[1]),
            json!(null),
        )
        .await;
    assert_eq!(reversed.status(), 200);
    (capped, plain)
}

#[tokio::test]
async fn each_change_writes_its_event_and_nothing_of_the_person() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    let (capped, _) = every_change(&app, &setup).await;
    let page = events(&app, &setup.admin, "limit=1000").await;
    let mut seen = types(&page);
    seen.sort();
    let mut expected = vec![
        "offer.exhausted",
        "redemption.confirmed",
        "redemption.reversed",
        "token.issued",
        "token.issued",
        "token.redeemed",
        "token.redeemed",
        "verification.failed",
        "verification.succeeded",
    ];
    expected.sort();
    assert_eq!(seen, expected);
    let text = page.to_string();
    for private in [
        "Ana",
        "Lima",
        "2004",
        "1990",
        "order-77",
        "PNR-1",
        "state.edu",
    ] {
        assert!(!text.contains(private), "{private} in {text}");
    }
    let exhausted = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "offer.exhausted")
        .unwrap();
    assert_eq!(exhausted["data"]["offer_id"], capped["id"]);
    assert_eq!(exhausted["data"]["total_cap"], 1);
    let failed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "verification.failed")
        .unwrap();
    // Nothing that says which field was wrong.
    let keys: Vec<&String> = failed["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["attempted_at", "community", "verification_id"]);
}

#[tokio::test]
async fn partners_see_their_own_offers_events_and_checkouts_none() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    every_change(&app, &setup).await;
    // Another partner's offer, and its token.
    let elsewhere = app.offer(&setup.admin, json!({})).await;
    let issued = app
        .token(
            &setup.checkout,
            &setup.membership_id,
            elsewhere["id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(issued.status(), 201);

    let partner_page = events(&app, &setup.partner, "limit=1000").await;
    let items = partner_page["items"].as_array().unwrap();
    // Not the verifications made without an offer, nor the other offer's token.
    assert_eq!(items.len(), 7, "{partner_page}");
    assert!(items.iter().all(|e| e["type"] != "verification.succeeded"));
    assert!(
        items
            .iter()
            .all(|e| e["data"]["offer_id"] != elsewhere["id"])
    );
    let stranger = app.key(Role::Partner).await;
    assert_eq!(events(&app, &stranger, "").await["items"], json!([]));
    let response = app.get_with_key("/v1/events", &setup.checkout).await;
    assert_problem(response, 403, "forbidden").await;
}

#[tokio::test]
async fn the_cursor_pages_through_every_event_once_and_filters_apply() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    every_change(&app, &setup).await;
    let all = events(&app, &setup.admin, "limit=1000").await;
    let all_ids: Vec<Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let page = events(&app, &setup.admin, &query).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        let cursor = page["next_cursor"].as_str().unwrap().to_owned();
        query = format!("limit=2&cursor={cursor}");
        if page["has_more"] == false {
            // Polling from the end finds nothing new, and keeps its place.
            let after = events(&app, &setup.admin, &query).await;
            assert_eq!(after["items"], json!([]));
            assert_eq!(after["next_cursor"], cursor.as_str());
            break;
        }
    }
    assert_eq!(paged, all_ids);

    let redeemed = events(&app, &setup.admin, "type=token.redeemed").await;
    assert_eq!(types(&redeemed), ["token.redeemed", "token.redeemed"]);
    let future = crate::helpers::days_from_today(1);
    let none = events(&app, &setup.admin, &format!("since={future}T00:00:00Z")).await;
    assert_eq!(none["items"], json!([]));
    let before = events(&app, &setup.admin, &format!("until={future}T00:00:00Z")).await;
    assert_eq!(before["items"].as_array().unwrap().len(), all_ids.len());

    for (query, field) in [
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("type=token.stolen", "type"),
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
    ] {
        let response = app
            .get_with_key(&format!("/v1/events?{query}"), &setup.admin)
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
}

#[tokio::test]
async fn a_refused_replayed_or_rolled_back_change_writes_no_event() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    let offer = app.offer(&setup.admin, json!({})).await;
    let granted: Value = app
        .token(
            &setup.checkout,
            &setup.membership_id,
            offer["id"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = granted["token"].as_str().unwrap();
    let redeemed: Value = app
        .redeem(&setup.checkout, "once", token, "o-1")
        .await
        .json()
        .await
        .unwrap();
    // Replayed, then refused: no second event.
    assert_eq!(
        app.redeem(&setup.checkout, "once", token, "o-1")
            .await
            .status(),
        201
    );
    assert_eq!(
        app.redeem(&setup.checkout, "again", token, "o-1")
            .await
            .status(),
        409
    );
    let count = || app.count("SELECT count(*) FROM events WHERE type = 'token.redeemed'");
    assert_eq!(count().await, 1);

    // A change rolled back takes its event with it.
    let before = app.count("SELECT count(*) FROM events").await;
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("UPDATE redemptions SET confirmed_at = now() WHERE id = $1::uuid")
        .bind(redeemed["id"].as_str().unwrap())
        .execute(&mut *tx)
        .await
        .unwrap();
    let inside: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(inside, before + 1, "written in the change's transaction");
    tx.rollback().await.unwrap();
    assert_eq!(app.count("SELECT count(*) FROM events").await, before);
}

#[tokio::test]
async fn membership_expiring_is_written_once_whatever_the_number_of_processes() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    let settings = offergate::config::EventSettings {
        membership_expiring_before_days: 14,
        ..Default::default()
    };
    // Far from its end: nothing.
    let written = offergate::usecases::events::announce_expiring(&app.db, &settings)
        .await
        .unwrap();
    assert_eq!(written, 0);
    sqlx::query(
        "UPDATE memberships SET expires_at = now() + interval '3 days' WHERE id = $1::uuid",
    )
    .bind(&setup.membership_id)
    .execute(&app.db)
    .await
    .unwrap();
    let runs = (0..6).map(|_| {
        let (db, settings) = (app.db.clone(), settings.clone());
        tokio::spawn(async move {
            offergate::usecases::events::announce_expiring(&db, &settings)
                .await
                .unwrap()
        })
    });
    let total: u64 = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    assert_eq!(total, 1);
    let page = events(&app, &setup.admin, "type=membership.expiring").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["data"]["membership_id"],
        setup.membership_id.as_str()
    );
    assert_eq!(items[0]["data"]["community"], "student");
    // Verified again: a new end, announced again when it comes near.
    sqlx::query(
        "UPDATE memberships SET expires_at = now() + interval '5 days' WHERE id = $1::uuid",
    )
    .bind(&setup.membership_id)
    .execute(&app.db)
    .await
    .unwrap();
    let again = offergate::usecases::events::announce_expiring(&app.db, &settings)
        .await
        .unwrap();
    assert_eq!(again, 1);
}

#[tokio::test]
async fn an_event_committed_late_is_not_skipped_by_a_cursor() {
    let app = spawn_app().await;
    let setup = app.offer_setup().await;
    let offer = app.offer(&setup.admin, json!({})).await;
    let granted: Value = app
        .token(
            &setup.checkout,
            &setup.membership_id,
            offer["id"].as_str().unwrap(),
        )
        .await
        .json()
        .await
        .unwrap();
    let redeemed: Value = app
        .redeem(
            &setup.checkout,
            "k",
            granted["token"].as_str().unwrap(),
            "o",
        )
        .await
        .json()
        .await
        .unwrap();
    // A change whose transaction is still open when a later one commits.
    let mut slow = app.db.begin().await.unwrap();
    sqlx::query("UPDATE redemptions SET confirmed_at = now() WHERE id = $1::uuid")
        .bind(redeemed["id"].as_str().unwrap())
        .execute(&mut *slow)
        .await
        .unwrap();
    let failed = app
        .verify(&setup.checkout, student("Ana", "Lima", "1990-01-01"))
        .await;
    assert_eq!(failed.status(), 200);
    let page = events(&app, &setup.admin, "limit=1000").await;
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    // Neither shows yet: the later one waits for the earlier to end.
    assert!(!types(&page).contains(&"verification.failed".to_owned()));
    slow.commit().await.unwrap();
    let next = events(&app, &setup.admin, &format!("cursor={cursor}")).await;
    assert_eq!(
        types(&next),
        ["redemption.confirmed", "verification.failed"]
    );
}

#[tokio::test]
async fn old_events_go_once_their_deliveries_are_over() {
    let app = crate::helpers::spawn_app_with(|s| s.webhooks.deliver = false).await;
    let setup = app.offer_setup().await;
    let registered = app
        .post_json(
            &setup.admin,
            "/v1/webhook-endpoints",
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(registered.status(), 201);
    // Still to be delivered: kept however old.
    app.verify(&setup.checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    sqlx::query("UPDATE events SET occurred_at = now() - interval '40 days'")
        .execute(&app.db)
        .await
        .unwrap();
    let (events_gone, _) =
        offergate::usecases::events::prune(&app.db, std::time::Duration::from_secs(30 * 86_400))
            .await
            .unwrap();
    assert_eq!(events_gone, 1, "the first verification's event");
    assert_eq!(app.count("SELECT count(*) FROM events").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM webhook_messages").await, 1);
}
