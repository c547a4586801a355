use offergate::domain::api_key::Role;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{
    ROSTER, ServerProcess, TestDatabase, assert_problem, days_from_today, spawn_app,
    spawn_app_with, student,
};

async fn answer(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The answer with its per-attempt id removed, for comparing outcomes.
fn without_id(mut answer: Value) -> Value {
    answer.as_object_mut().unwrap().remove("id");
    answer
}

#[tokio::test]
async fn a_listed_student_verifies_until_the_record_ends() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let verified = answer(
        app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
            .await,
    )
    .await;

    assert_eq!(verified["status"], "verified");
    assert_eq!(verified["community"], "student");
    assert_eq!(verified["subsegment"], "college");
    // The record's own end, as the roster was written (a run may cross
    // midnight between writing the roster and this check).
    let ends = ROSTER
        .lines()
        .find(|line| line.starts_with("stu-001"))
        .and_then(|line| line.rsplit(',').next())
        .unwrap();
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day_after = time::Date::parse(ends, &format)
        .unwrap()
        .next_day()
        .unwrap();
    assert_eq!(
        verified["expires_at"],
        format!("{}T00:00:00Z", day_after.format(&format).unwrap())
    );
    assert!(verified["membership_id"].is_string());
}

#[tokio::test]
async fn misspelled_and_unlisted_consumers_get_the_same_answer() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let misspelled = answer(
        app.verify(&checkout, student("Ana", "Lyma", "2004-03-09"))
            .await,
    )
    .await;
    let wrong_birth_date = answer(
        app.verify(&checkout, student("Ana", "Lima", "2004-03-10"))
            .await,
    )
    .await;
    let unlisted = answer(
        app.verify(&checkout, student("Nobody", "Atall", "2001-01-01"))
            .await,
    )
    .await;

    assert_eq!(misspelled["status"], "not_verified");
    assert_eq!(without_id(misspelled.clone()), without_id(wrong_birth_date));
    assert_eq!(without_id(misspelled), without_id(unlisted));
}

#[tokio::test]
async fn a_field_that_contradicts_the_record_fails_even_when_another_rule_matches() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let mut body = student("Ana", "Lima", "2004-03-10");
    body["person"]["email"] = json!("ana.lima@state.edu");

    let verified = answer(app.verify(&checkout, body).await).await;

    assert_eq!(verified["status"], "not_verified");
}

#[tokio::test]
async fn nicknames_accents_case_and_punctuation_still_match() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let bob = answer(
        app.verify(&checkout, student("bob", "ONEILL", "2003-11-21"))
            .await,
    )
    .await;
    let zoe = answer(
        app.verify(
            &checkout,
            student(" ZOE ", "muller ludenscheidt", "2009-01-15"),
        )
        .await,
    )
    .await;

    assert_eq!(bob["status"], "verified");
    assert_eq!(zoe["status"], "verified");
    assert_eq!(zoe["subsegment"], "high_school");
}

#[tokio::test]
async fn an_expired_record_does_not_verify() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let expired = answer(
        app.verify(&checkout, student("Maya", "Okafor", "1999-05-02"))
            .await,
    )
    .await;

    assert_eq!(expired["status"], "not_verified");
}

#[tokio::test]
async fn a_required_sub_status_must_be_the_records() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let person = |given: &str, family: &str, born: &str| {
        json!({"community": "military", "subsegment": "veteran", "consent": true,
               "person": {"given_name": given, "family_name": family, "birth_date": born}})
    };

    let veteran = answer(
        app.verify(&checkout, person("Bill", "Carter", "1962-02-14"))
            .await,
    )
    .await;
    let active = answer(
        app.verify(&checkout, person("Liz", "Nguyen", "1994-08-30"))
            .await,
    )
    .await;
    let mut unknown = person("Bill", "Carter", "1962-02-14");
    unknown["subsegment"] = json!("general");
    let unknown = app.verify(&checkout, unknown).await;

    assert_eq!(veteran["status"], "verified");
    assert_eq!(
        veteran["expires_at"],
        Value::Null,
        "a veteran is verified for life"
    );
    assert_eq!(active["status"], "not_verified");
    let problem = assert_problem(unknown, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "subsegment");
}

#[tokio::test]
async fn a_teacher_re_verifies_after_a_year() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let body = json!({"community": "teacher", "consent": true,
        "person": {"given_name": "Jean", "family_name": "Baptiste", "email": "J.Baptiste@Lincoln.k12.us"}});

    let verified = answer(app.verify(&checkout, body).await).await;

    let expires =
        OffsetDateTime::parse(verified["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let days = (expires - OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days} days");
}

#[tokio::test]
async fn the_senior_age_gate_uses_the_birth_date_given() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let (seventy, forty) = (days_from_today(-70 * 366), days_from_today(-40 * 365));
    let seniors = format!(
        "external_id,community,given_name,family_name,birth_date\n\
         sen-1,senior,Margaret,Hale,{seventy}\n\
         sen-2,senior,Peter,Young,{forty}\n"
    );
    let imported = app
        .import(&admin, "source=club", "text/csv", &seniors)
        .await;
    assert_eq!(imported.status(), 200);
    let senior = |given: &str, family: &str, born: &str| {
        json!({"community": "senior", "consent": true,
               "person": {"given_name": given, "family_name": family, "birth_date": born}})
    };

    let old_enough = answer(
        app.verify(&checkout, senior("Peggy", "Hale", &seventy))
            .await,
    )
    .await;
    let too_young = answer(
        app.verify(&checkout, senior("Peter", "Young", &forty))
            .await,
    )
    .await;

    assert_eq!(old_enough["status"], "verified");
    assert_eq!(too_young["status"], "not_verified");
}

#[tokio::test]
async fn missing_fields_invalid_fields_and_no_consent_are_422s_that_name_them() {
    let app = spawn_app().await;
    let checkout = app.key(Role::Checkout).await;

    let missing = app
        .verify(
            &checkout,
            json!({"community": "student", "person": {"email": "a@b.edu"}, "consent": false}),
        )
        .await;
    let problem = assert_problem(missing, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "consent",
            "person.given_name",
            "person.family_name",
            "person.birth_date"
        ]
    );

    let bad_date = app
        .verify(&checkout, student("Ana", "Lima", "09/03/2004"))
        .await;
    let problem = assert_problem(bad_date, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "person.birth_date");

    let unknown = app
        .verify(
            &checkout,
            json!({"community": "wizard", "person": {}, "consent": true}),
        )
        .await;
    let problem = assert_problem(unknown, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "community");

    let admin = app.key(Role::Admin).await;
    assert_problem(
        app.verify(&admin, student("Ana", "Lima", "2004-03-09"))
            .await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn verifying_again_extends_the_same_membership() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    let first = answer(
        app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
            .await,
    )
    .await;
    let mut by_email = student("Ana", "Lima", "2004-03-09");
    by_email["person"] = json!({"given_name": "Ana", "family_name": "Lima", "birth_date": "2004-03-09",
                                "email": "ANA.LIMA@state.edu"});
    let second = answer(app.verify(&checkout, by_email).await).await;

    assert_eq!(first["membership_id"], second["membership_id"]);
    assert_eq!(app.count("SELECT count(*) FROM memberships").await, 1);
}

#[tokio::test]
async fn every_attempt_is_recorded_with_nothing_readable() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    let mut with_ref = student("Ana", "Lyma", "2004-03-09");
    with_ref["customer_ref"] = json!("customer-8812");
    app.verify(&checkout, with_ref).await;

    type AttemptRow = (String, String, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<AttemptRow> = sqlx::query_as(
        "SELECT community, outcome, person_key, customer_ref_ix FROM verification_attempts ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("student", "verified")
    );
    assert_eq!(rows[1].1, "not_verified");
    assert_eq!(rows[0].2.as_ref().map(Vec::len), Some(16));
    assert_eq!(rows[1].3.as_ref().map(Vec::len), Some(16));
    assert!(!String::from_utf8_lossy(rows[1].3.as_ref().unwrap()).contains("8812"));
}

#[tokio::test]
async fn the_eleventh_failed_attempt_in_the_window_is_refused_with_retry_after() {
    // The window alone: no back-off within these ten.
    let app = spawn_app_with(|s| s.verification.backoff_free_failures = 100).await;
    let checkout = app.key(Role::Checkout).await;
    let guess = |n: u32| {
        let mut body = student("Eve", "Guess", &format!("2000-01-{:02}", n));
        body["client_ip"] = json!(format!("198.51.100.{n}"));
        body
    };

    for n in 1..=10 {
        let failed = answer(app.verify(&checkout, guess(n)).await).await;
        assert_eq!(failed["status"], "not_verified");
    }
    let refused = app.verify(&checkout, guess(11)).await;

    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_problem(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn repeated_failures_on_one_name_back_off_doubling_each_time() {
    let app = spawn_app_with(|s| {
        s.verification.backoff_free_failures = 3;
        s.verification.backoff_base_secs = 2;
    })
    .await;
    let checkout = app.key(Role::Checkout).await;
    // One known name, a new birth date and a new address each time: only
    // the name pair's back-off can stop it.
    let guess = |n: u32| {
        let mut body = student("Eve", "Target", &format!("2001-03-{n:02}"));
        body["client_ip"] = json!(format!("198.51.100.{n}"));
        body
    };
    let retry_after = |response: &reqwest::Response| -> u64 {
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };

    for n in 1..=3 {
        let failed = answer(app.verify(&checkout, guess(n)).await).await;
        assert_eq!(failed["status"], "not_verified");
    }
    let held = app.verify(&checkout, guess(4)).await;
    assert!(
        (1..=2).contains(&retry_after(&held)),
        "base after the free failures"
    );
    assert_problem(held, 429, "rate_limited").await;

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let fourth = answer(app.verify(&checkout, guess(4)).await).await;
    assert_eq!(fourth["status"], "not_verified");
    let held = app.verify(&checkout, guess(5)).await;
    assert!(
        (3..=4).contains(&retry_after(&held)),
        "doubled after one more failure"
    );
    assert_problem(held, 429, "rate_limited").await;

    // Another name is not held back.
    let mut other = student("Ann", "Other", "2001-03-01");
    other["client_ip"] = json!("198.51.100.200");
    let other = answer(app.verify(&checkout, other).await).await;
    assert_eq!(other["status"], "not_verified");
}

#[tokio::test]
async fn successes_do_not_count_against_the_limit() {
    let app = spawn_app_with(|s| s.verification.max_failures_per_identity = 2).await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;

    for _ in 0..5 {
        let verified = answer(
            app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
                .await,
        )
        .await;
        assert_eq!(verified["status"], "verified");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM verification_strikes").await,
        0
    );
}

#[tokio::test]
async fn failures_from_one_client_address_are_limited_whoever_they_name() {
    let app = spawn_app_with(|s| s.verification.max_failures_per_address = 3).await;
    let checkout = app.key(Role::Checkout).await;
    let from_one_address = |n: u32| {
        let mut body = student(&format!("Person{n}"), "Guess", "2000-01-01");
        body["client_ip"] = json!("192.0.2.7");
        body
    };

    for n in 0..3 {
        assert_eq!(
            app.verify(&checkout, from_one_address(n)).await.status(),
            200
        );
    }

    assert_problem(
        app.verify(&checkout, from_one_address(3)).await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn the_limit_holds_across_two_server_processes() {
    let database = TestDatabase::new();
    let window_only = [("OFFERGATE_VERIFICATION__BACKOFF_FREE_FAILURES", "100")];
    let first = ServerProcess::start_with_env(&database.url, &window_only);
    let second = ServerProcess::start_with_env(&database.url, &window_only);
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    let (key, _) = offergate::auth::create_key(&db, Role::Checkout, None, "two")
        .await
        .unwrap();
    let client = reqwest::Client::new();

    let attempts = (0..16u32).map(|n| {
        let server = if n % 2 == 0 { &first } else { &second };
        let mut body = student("Mallory", "Guess", &format!("1990-02-{:02}", n + 1));
        body["client_ip"] = json!(format!("203.0.113.{n}"));
        client
            .post(format!("{}/v1/verifications", server.address))
            .bearer_auth(key.expose())
            .json(&body)
            .send()
    });
    let responses = futures::future::join_all(attempts).await;

    let statuses: Vec<u16> = responses
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        6,
        "{statuses:?}"
    );
    db.close().await;
}

#[tokio::test]
async fn erasure_forgets_the_person_and_keeps_the_counts() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    let mut wrong_level = student("Ana", "Lima", "2004-03-09");
    wrong_level["subsegment"] = json!("high_school");
    let failed: Value = app
        .verify(&checkout, wrong_level)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(failed["status"], "not_verified");
    app.verify(&checkout, student("Bob", "ONeill", "2003-11-21"))
        .await;

    let erased: Value = app
        .client
        .post(app.url("/v1/people/erase"))
        .bearer_auth(&admin)
        .json(&json!({"person": {"email": "ana.lima@state.edu"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(erased["memberships_removed"], 1);
    assert_eq!(erased["attempts_unlinked"], 2);
    assert_eq!(
        app.count("SELECT count(*) FROM memberships").await,
        1,
        "Bob's stays"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        3
    );
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts WHERE outcome = 'verified'")
            .await,
        2
    );
    let again: Value = app
        .verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "verified");
}

#[tokio::test]
async fn a_nurse_verifies_by_licence_number_and_family_name() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let licence_ends = days_from_today(1000);
    let board = format!(
        "external_id,community,family_name,license_number,valid_until\n\
         rn-1,nurse,Okoye,RN 448-221,{licence_ends}\n"
    );
    assert_eq!(
        app.import(&admin, "source=board", "text/csv", &board)
            .await
            .status(),
        200
    );
    let nurse = |license: &str| {
        json!({"community": "nurse", "consent": true,
               "person": {"family_name": "okoye", "license_number": license}})
    };

    let verified = answer(app.verify(&checkout, nurse("rn448221")).await).await;
    let wrong = answer(app.verify(&checkout, nurse("RN 448-222")).await).await;

    assert_eq!(verified["status"], "verified");
    assert_eq!(
        verified["expires_at"],
        format!("{}T00:00:00Z", days_from_today(1001)),
        "until the licence ends"
    );
    assert_eq!(wrong["status"], "not_verified");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let app = spawn_app_with(|s| {
        s.verification.max_failures_per_address = 2;
        s.verification.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let checkout = app.key(Role::Checkout).await;
    let attempt = |n: u32, forwarded: &'static str| {
        app.client
            .post(app.url("/v1/verifications"))
            .bearer_auth(&checkout)
            .header("x-forwarded-for", forwarded)
            .json(&student(&format!("Someone{n}"), "Guess", "2000-01-01"))
            .send()
    };

    assert_eq!(attempt(1, "192.0.2.9").await.unwrap().status(), 200);
    assert_eq!(
        attempt(2, "10.9.9.9, 192.0.2.9").await.unwrap().status(),
        200
    );
    let refused = attempt(3, "192.0.2.9").await.unwrap();
    let other_consumer = attempt(4, "192.0.2.10").await.unwrap();

    assert_problem(refused, 429, "rate_limited").await;
    assert_eq!(other_consumer.status(), 200);
}
