//! Every identity field agrees with the record, age gates need a record's
//! birth date, canonical forms carry a version, and erasure leaves nothing
//! that ties back to the person without opening a way past per-person limits.

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{
    ServerProcess, TestDatabase, days_from_today, spawn_app, spawn_app_with, student,
};

async fn status_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["status"].as_str().unwrap().to_owned()
}

fn teacher(email: &str, given: &str, family: &str) -> Value {
    json!({"community": "teacher", "consent": true,
           "person": {"email": email, "given_name": given, "family_name": family}})
}

#[tokio::test]
async fn a_teacher_found_by_email_must_also_give_the_names_on_the_record() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let email = "j.baptiste@lincoln.k12.us";

    let wrong_name = app.verify(&checkout, teacher(email, "Zzz", "Wrong")).await;
    let wrong_given = app
        .verify(&checkout, teacher(email, "Zzz", "Baptiste"))
        .await;
    let right = app
        .verify(&checkout, teacher(email, "jean", "BAPTISTE"))
        .await;

    assert_eq!(status_of(wrong_name).await, "not_verified");
    assert_eq!(status_of(wrong_given).await, "not_verified");
    assert_eq!(status_of(right).await, "verified");
}

#[tokio::test]
async fn every_field_given_must_agree_whichever_rule_found_the_record() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let board = "external_id,community,given_name,family_name,email,license_number\n\
                 rn-1,nurse,Grace,Okoye,grace.okoye@hospital.org,RN 448-221\n";
    assert_eq!(
        app.import(&admin, "source=board", "text/csv", board)
            .await
            .status(),
        200
    );
    let with_email = |email: &str| {
        let mut body = student("Ana", "Lima", "2004-03-09");
        body["person"]["email"] = json!(email);
        body
    };
    let nurse = |given: &str, email: Option<&str>| {
        let mut person = json!({"family_name": "Okoye", "license_number": "RN448221",
                                "given_name": given});
        if let Some(email) = email {
            person["email"] = json!(email);
        }
        json!({"community": "nurse", "consent": true, "person": person})
    };

    // Found by name and birth date, with another's e-mail.
    let wrong_email = app
        .verify(&checkout, with_email("someone.else@state.edu"))
        .await;
    let right_email = app
        .verify(&checkout, with_email("ana.lima@state.edu"))
        .await;
    // Found by licence, with a wrong given name or e-mail.
    let wrong_given = app.verify(&checkout, nurse("Zzz", None)).await;
    let other_email = app
        .verify(&checkout, nurse("Grace", Some("x@hospital.org")))
        .await;
    let right_nurse = app
        .verify(&checkout, nurse("Grace", Some("grace.okoye@hospital.org")))
        .await;

    let with_organization = |organization: &str| {
        let mut body = student("Ana", "Lima", "2004-03-09");
        body["person"]["organization"] = json!(organization);
        body
    };
    let other_school = app
        .verify(&checkout, with_organization("Other University"))
        .await;
    let her_school = app
        .verify(&checkout, with_organization("state  UNIVERSITY"))
        .await;

    assert_eq!(status_of(other_school).await, "not_verified");
    assert_eq!(status_of(her_school).await, "verified");
    assert_eq!(status_of(wrong_email).await, "not_verified");
    assert_eq!(status_of(right_email).await, "verified");
    assert_eq!(status_of(wrong_given).await, "not_verified");
    assert_eq!(status_of(other_email).await, "not_verified");
    assert_eq!(status_of(right_nurse).await, "verified");
}

#[tokio::test]
async fn a_field_the_record_does_not_hold_is_not_held_against_the_consumer() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let school = "external_id,community,email\nt-1,teacher,kim@school.org\n";
    assert_eq!(
        app.import(&admin, "source=school", "text/csv", school)
            .await
            .status(),
        200
    );

    let verified = app
        .verify(&checkout, teacher("kim@school.org", "Kim", "Park"))
        .await;

    assert_eq!(status_of(verified).await, "verified");
}

#[tokio::test]
async fn an_age_gate_checks_the_birth_date_on_the_record() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let (seventy, forty) = (days_from_today(-70 * 366), days_from_today(-40 * 365));
    let club = format!(
        "external_id,community,email,given_name,family_name,birth_date\n\
         s-1,senior,no.birth.date@club.org,Nora,Dale,\n\
         s-2,senior,young@club.org,Yuri,Lane,{forty}\n\
         s-3,senior,old@club.org,Olga,Hart,{seventy}\n"
    );
    let imported: Value = app
        .import(&admin, "source=club&on_error=skip", "text/csv", &club)
        .await
        .json()
        .await
        .unwrap();
    let senior = |email: &str, given: &str, family: &str| {
        json!({"community": "senior", "consent": true,
               "person": {"email": email, "given_name": given, "family_name": family,
                          "birth_date": seventy}})
    };

    // Each claims to be seventy.
    let no_birth_date = app
        .verify(&checkout, senior("no.birth.date@club.org", "Nora", "Dale"))
        .await;
    let younger_on_record = app
        .verify(&checkout, senior("young@club.org", "Yuri", "Lane"))
        .await;
    let old_enough = app
        .verify(&checkout, senior("old@club.org", "Olga", "Hart"))
        .await;

    assert!(imported["rows_read"].as_u64().unwrap() >= 2, "{imported}");
    assert_eq!(status_of(no_birth_date).await, "not_verified");
    assert_eq!(status_of(younger_on_record).await, "not_verified");
    assert_eq!(status_of(old_enough).await, "verified");
}

#[tokio::test]
async fn latin_letters_that_decomposition_leaves_whole_match_their_plain_spelling() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let roster = format!(
        "external_id,community,given_name,family_name,birth_date,valid_until\n\
         s-1,student,Łukasz,Wałęsa,2003-05-05,{until}\n\
         s-2,student,Øystein,Sørensen,2002-06-06,{until}\n\
         s-3,student,Đorđe,Đukić,2001-07-07,{until}\n",
        until = days_from_today(200)
    );
    assert_eq!(
        app.import(&admin, "source=uni", "text/csv", &roster)
            .await
            .status(),
        200
    );

    for (given, family, born) in [
        ("Lukasz", "Walesa", "2003-05-05"),
        ("OYSTEIN", "sorensen", "2002-06-06"),
        ("Dorde", "Dukic", "2001-07-07"),
    ] {
        let verified = app.verify(&checkout, student(given, family, born)).await;
        assert_eq!(status_of(verified).await, "verified", "{given} {family}");
    }
}

#[tokio::test]
async fn records_indexed_under_an_older_canonicalisation_are_reported() {
    let database = TestDatabase::new();
    let first = ServerProcess::start(&database.url);
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let (admin, _) = offergate::auth::create_key(&db, Role::Admin, None, "admin")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let imported = client
        .post(format!(
            "{}/v1/records/import?source=demo&on_error=skip",
            first.address
        ))
        .bearer_auth(admin.expose())
        .header("content-type", "text/csv")
        .body(crate::helpers::ROSTER.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let current: i64 =
        sqlx::query_scalar("SELECT count(*) FROM verification_records WHERE canon_version = $1")
            .bind(offergate::domain::identity::CANON_VERSION)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(current, 7, "imports write the current version");
    drop(first);
    sqlx::query("UPDATE verification_records SET canon_version = 1 WHERE external_id LIKE 'stu-%'")
        .execute(&db)
        .await
        .unwrap();

    let second = ServerProcess::start(&database.url);
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = client
            .get(format!("{}/metrics", second.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("records_outdated_canonicalisation") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    assert!(
        metrics.contains("records_outdated_canonicalisation 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_erased_person_who_verifies_again_cannot_pass_the_per_person_limit() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"per_person_limit": 1})).await;
    let offer_id = offer["id"].as_str().unwrap();
    let first = app.token(&s.checkout, &s.membership_id, offer_id).await;
    assert_eq!(first.status(), 201);

    let erased = app
        .post_json(
            &s.admin,
            "/v1/people/erase",
            json!({"person": {"given_name": "Ana", "family_name": "Lima",
                              "birth_date": "2004-03-09"}}),
        )
        .await;
    assert_eq!(erased.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM memberships").await, 0);
    let again: Value = app
        .verify(&s.checkout, student("Ana", "Lima", "2004-03-09"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "verified");
    let second = app
        .token(
            &s.checkout,
            again["membership_id"].as_str().unwrap(),
            offer_id,
        )
        .await;

    crate::helpers::assert_problem(second, 409, "person_limit_reached").await;
}

#[tokio::test]
async fn after_erasure_nothing_ties_back_to_the_person() {
    let app = spawn_app_with(|s| s.verification.backoff_free_failures = 100).await;
    let s = app.offer_setup().await;
    let offer = app.offer(&s.admin, json!({"per_person_limit": 2})).await;
    let mut keyed = student("Ana", "Lima", "2004-03-09");
    keyed["offer_id"] = offer["id"].clone();
    keyed["customer_ref"] = json!("shop-customer-77");
    let keyed_response = app
        .client
        .post(app.url("/v1/verifications"))
        .bearer_auth(&s.checkout)
        .header("idempotency-key", "ana-1")
        .json(&keyed)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed_response.status(), 200);
    let mut failed = student("Ana", "Lima", "2004-03-10");
    failed["customer_ref"] = json!("shop-customer-77");
    assert_eq!(
        status_of(app.verify(&s.checkout, failed).await).await,
        "not_verified"
    );
    // One failure, three strikes: her name pair, the address, the API key.
    assert_eq!(
        app.count("SELECT count(*) FROM verification_strikes").await,
        3
    );

    let erased: Value = app
        .post_json(
            &s.admin,
            "/v1/people/erase",
            json!({"person": {"given_name": "Ana", "family_name": "Lima",
                              "birth_date": "2004-03-09"}}),
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(erased["memberships_removed"], 1, "{erased}");
    assert_eq!(
        app.count("SELECT count(*) FROM verification_strikes").await,
        0,
        "the strikes of her failed attempt (under her customer reference) are gone"
    );
    for (what, sql) in [
        ("memberships", "SELECT count(*) FROM memberships"),
        (
            "linked attempts",
            "SELECT count(*) FROM verification_attempts
             WHERE person_key IS NOT NULL OR membership_id IS NOT NULL
                OR customer_ref_ix IS NOT NULL",
        ),
        (
            "linked tokens",
            "SELECT count(*) FROM tokens WHERE membership_id IS NOT NULL",
        ),
        (
            "request fingerprints",
            "SELECT count(*) FROM idempotency_keys WHERE length(request_hash) > 0
             AND (attempt_id IS NOT NULL OR token_id IS NOT NULL)",
        ),
    ] {
        assert_eq!(app.count(sql).await, 0, "{what} remain");
    }
}
