use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn the_built_in_communities_are_listed_for_every_role() {
    let app = spawn_app().await;
    let checkout = app.key(Role::Checkout).await;

    let listed: Vec<Value> = app
        .get_with_key("/v1/communities", &checkout)
        .await
        .json()
        .await
        .unwrap();

    let keys: Vec<&str> = listed.iter().map(|c| c["key"].as_str().unwrap()).collect();
    for builtin in [
        "student",
        "teacher",
        "nurse",
        "military",
        "first_responder",
        "senior",
    ] {
        assert!(keys.contains(&builtin), "{builtin}");
    }
    let military = listed.iter().find(|c| c["key"] == "military").unwrap();
    assert_eq!(
        military["subsegments"],
        json!(["active_duty", "veteran", "reservist", "military_family"])
    );
    assert_eq!(military["subsegment_reverify"]["veteran"], Value::Null);
    let senior = listed.iter().find(|c| c["key"] == "senior").unwrap();
    assert_eq!(senior["min_age"], 65);
    let responders = listed
        .iter()
        .find(|c| c["key"] == "first_responder")
        .unwrap();
    assert_eq!(
        responders["subsegments"],
        json!(["police", "emt", "firefighter"])
    );
}

#[tokio::test]
async fn an_admin_creates_a_custom_community_and_its_members_verify() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let created = app
        .client
        .post(app.url("/v1/communities"))
        .bearer_auth(&admin)
        .json(&json!({
            "key": "ski_instructor",
            "display_name": "Ski instructors",
            "subsegments": ["level_1", "level_2"],
            "required_fields": ["email"],
            "reverify_after_days": 180
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let roster = "external_id,community,subsegment,email\nski-1,ski_instructor,level_2,anna@alpine.example\n";
    assert_eq!(
        app.import(&admin, "source=association", "text/csv", roster)
            .await
            .status(),
        200
    );

    let verified: Value = app
        .verify(
            &checkout,
            json!({"community": "ski_instructor", "consent": true,
                                   "person": {"email": "Anna@Alpine.example"}}),
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["subsegment"], "level_2");
}

#[tokio::test]
async fn bad_or_duplicate_communities_are_refused() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let create = |body: Value| {
        app.client
            .post(app.url("/v1/communities"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };

    let duplicate =
        create(json!({"key": "student", "display_name": "Again", "required_fields": ["email"]}))
            .await
            .unwrap();
    assert_problem(duplicate, 409, "community_exists").await;

    let no_rule = create(
        json!({"key": "club", "display_name": "Club", "required_fields": ["given_name"],
                                "min_age": 18}),
    )
    .await
    .unwrap();
    let problem = assert_problem(no_rule, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["required_fields", "min_age"]);

    let bad_key =
        create(json!({"key": "Ski Club", "display_name": "x", "required_fields": ["email"]}))
            .await
            .unwrap();
    assert_problem(bad_key, 422, "validation_failed").await;
}

#[tokio::test]
async fn a_community_changes_and_is_deleted_only_while_unused() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let changed: Value = app
        .client
        .patch(app.url("/v1/communities/teacher"))
        .bearer_auth(&admin)
        .json(&json!({"reverify_after_days": null, "display_name": "Educators"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(changed["display_name"], "Educators");
    assert_eq!(changed["reverify_after_days"], Value::Null);
    assert_eq!(
        changed["required_fields"],
        json!(["given_name", "family_name", "email"])
    );

    let in_use = app
        .client
        .delete(app.url("/v1/communities/student"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_problem(in_use, 409, "community_in_use").await;
    let unused = app
        .client
        .delete(app.url("/v1/communities/nurse"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(unused.status(), 204);
    let gone = app.get_with_key("/v1/communities/nurse", &admin).await;
    assert_problem(gone, 404, "not_found").await;

    let by_checkout = app
        .client
        .patch(app.url("/v1/communities/teacher"))
        .bearer_auth(&checkout)
        .json(&json!({"display_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(by_checkout, 403, "forbidden").await;
}
