//! No input crashes a request: far dates, offsets past the year 9999, NUL
//! characters and amounts the database would round away are clear 4xx
//! problems that name the field, or are accepted for what they mean.

use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app, student};
use offergate::domain::api_key::Role;

fn field_of(problem: &Value) -> String {
    problem["errors"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_record_valid_until_9999_12_31_is_imported_as_open_ended() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    let csv = "external_id,community,given_name,family_name,birth_date,valid_from,valid_until\n\
               s-1,student,Ana,Lima,2004-03-09,2001-01-01,9999-12-31\n\
               s-2,student,Bo,Ek,2004-03-10,,9999-12-31T23:00:00-05:00\n";
    let ndjson = r#"{"external_id":"s-3","community":"student","given_name":"Cy","family_name":"Oh","birth_date":"2004-03-11","valid_until":"9999-12-31"}"#;

    let csv_import = app.import(&admin, "source=open", "text/csv", csv).await;
    let ndjson_import = app
        .import(&admin, "source=open2", "application/x-ndjson", ndjson)
        .await;

    assert_eq!(csv_import.status(), 200, "{:?}", csv_import.text().await);
    assert_eq!(ndjson_import.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records WHERE valid_until IS NULL")
            .await,
        3
    );
    let verified: Value = app
        .verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["status"], "verified");
}

#[tokio::test]
async fn bounds_that_cannot_be_kept_are_named_rows_not_server_errors() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let csv = "external_id,community,email,valid_from,valid_until\n\
               t-1,teacher,a@school.org,9999-12-31T23:00:00-05:00,\n\
               t-2,teacher,b@school.org,0000-01-01T00:00:00+01:00,\n\
               t-3,teacher,c@school.org,,2030-01-01\n";

    let response = app.import(&admin, "source=far", "text/csv", csv).await;

    let problem = assert_problem(response, 422, "import_rejected").await;
    assert_eq!(problem["rejected_total"], 2);
    let rows: Vec<(u64, &str)> = problem["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [(2, "valid_from"), (3, "valid_from")]);
}

#[tokio::test]
async fn an_offer_window_past_the_year_9999_in_utc_is_a_named_422() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    for (field, value) in [
        ("starts_at", "9999-12-31T23:00:00-05:00"),
        ("ends_at", "9999-12-31T23:00:00-05:00"),
        ("ends_at", "0000-01-01T00:00:00+01:00"),
    ] {
        let response = app
            .post_json(
                &admin,
                "/v1/offers",
                json!({"title": "Far", "communities": ["student"],
                       "discount": {"kind": "percent", "percent_off": 10}, field: value}),
            )
            .await;
        let problem = assert_problem(response, 422, "validation_failed").await;
        assert_eq!(field_of(&problem), field, "{problem}");
    }
    let far_but_fine = app
        .offer(&admin, json!({"ends_at": "9999-12-31T23:59:59Z"}))
        .await;
    assert_eq!(far_but_fine["ends_at"], "9999-12-31T23:59:59Z");
}

#[tokio::test]
async fn a_since_past_the_year_9999_in_utc_is_a_named_422() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .get_with_key("/v1/redemptions?since=9999-12-31T23:00:00-05:00", &admin)
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(field_of(&problem), "since");
}

#[tokio::test]
async fn a_percentage_the_database_would_round_to_zero_is_a_named_422() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app
        .post_json(
            &admin,
            "/v1/offers",
            json!({"title": "Tiny", "communities": ["student"],
                   "discount": {"kind": "percent", "percent_off": 0.001}}),
        )
        .await;

    let problem = assert_problem(response, 422, "validation_failed").await;
    assert_eq!(field_of(&problem), "discount.percent_off");
}

#[tokio::test]
async fn a_nul_character_in_json_is_a_named_422() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let offer = app
        .post_json(
            &admin,
            "/v1/offers",
            json!({"title": "Nul\u{0}", "communities": ["student"],
                   "discount": {"kind": "reward", "reward": "x"}}),
        )
        .await;
    let partner = app
        .post_json(&admin, "/v1/partners", json!({"name": "a\u{0}b"}))
        .await;

    let problem = assert_problem(offer, 422, "validation_failed").await;
    assert_eq!(field_of(&problem), "title");
    let problem = assert_problem(partner, 422, "validation_failed").await;
    assert_eq!(field_of(&problem), "name");
    assert_eq!(app.count("SELECT count(*) FROM offers").await, 0);
}

#[tokio::test]
async fn a_nul_character_in_a_query_or_path_is_a_4xx() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let query = app.get_with_key("/v1/offers?community=%00", &admin).await;
    let path = app.get_with_key("/v1/communities/a%00b", &admin).await;

    let problem = assert_problem(query, 422, "validation_failed").await;
    assert_eq!(field_of(&problem), "community");
    assert!(path.status().is_client_error(), "{}", path.status());
}

#[tokio::test]
async fn a_nul_character_in_an_import_names_its_row_and_field() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let csv = "external_id,community,email,organization\n\
               t-1,teacher,a@school.org,North\u{0}High\n\
               t-2,teacher,b@school.org,South High\n";

    let strict = app.import(&admin, "source=nul", "text/csv", csv).await;
    let skipping = app
        .import(&admin, "source=nul&on_error=skip", "text/csv", csv)
        .await;

    let problem = assert_problem(strict, 422, "import_rejected").await;
    assert_eq!(problem["rows"][0]["line"], 2);
    assert_eq!(problem["rows"][0]["field"], "organization");
    assert_eq!(skipping.status(), 200);
    let report: Value = skipping.json().await.unwrap();
    assert_eq!(report["inserted"], 1);
}
