//! Attacks on the promises of identity, erasure and undoing: each test
//! tries one way around a promise, as a hostile caller or operator would.

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{days_from_today, spawn_app, spawn_app_with, student};

async fn status_of(response: reqwest::Response) -> String {
    let code = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(code, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

/// Records already in the database when field agreements arrived have no
/// agreements (`agreement = NULL`, `canon_version = 1`), and a NULL array
/// would agree with anything: such a teacher would verify with the right
/// e-mail and any name. Records of an older canonicalisation therefore
/// verify nobody until their source is imported again.
#[tokio::test]
async fn records_indexed_before_field_agreements_verify_nobody() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    // The state `ALTER TABLE ... ADD COLUMN agreement bytea[], ADD COLUMN
    // canon_version smallint NOT NULL DEFAULT 1` leaves every existing row in.
    sqlx::query("UPDATE verification_records SET agreement = NULL, canon_version = 1")
        .execute(&app.db)
        .await
        .unwrap();

    let wrong_name = app
        .verify(
            &checkout,
            json!({"community": "teacher", "consent": true,
                   "person": {"email": "j.baptiste@lincoln.k12.us",
                              "given_name": "Zzz", "family_name": "Wrong"}}),
        )
        .await;

    assert_eq!(status_of(wrong_name).await, "not_verified");
}

/// The licence rule matches on licence number + family name. Someone who
/// knows a nurse's family name (and leaves out the given name, which nurses
/// need not give) guesses licence numbers, each a subject of its own; the
/// family name of licence attempts is a subject too, so it backs off.
#[tokio::test]
async fn guessing_the_licence_number_of_a_known_nurse_backs_off() {
    let app = spawn_app_with(|s| {
        s.verification.backoff_free_failures = 3;
        s.verification.backoff_base_secs = 600;
    })
    .await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let board = format!(
        "external_id,community,given_name,family_name,license_number,valid_until\n\
         rn-1,nurse,Grace,Okoye,RN448230,{}\n",
        days_from_today(300)
    );
    assert_eq!(
        app.import(&admin, "source=board", "text/csv", &board)
            .await
            .status(),
        200
    );
    let guess = |n: u32| {
        json!({"community": "nurse", "consent": true,
               "client_ip": format!("203.0.113.{n}"),
               "person": {"family_name": "Okoye", "license_number": format!("RN4482{n:02}")}})
    };

    let mut statuses = Vec::new();
    for n in 20..=30 {
        let response = app.verify(&checkout, guess(n)).await;
        statuses.push(response.status().as_u16());
        if n == 30 && response.status() == 200 {
            // The eleventh guess, seconds after ten failures, finds her.
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["status"], "verified", "{body}");
        }
    }

    assert!(
        statuses.contains(&429),
        "ten failed guesses at one family name's licence, none held back: {statuses:?}"
    );
}

/// A token's place key must not join back to the roster record of the
/// person who took it (the record's person key is in the same database):
/// it is keyed by a secret that is never stored.
#[tokio::test]
async fn after_erasure_no_join_ties_tokens_back_to_the_persons_record() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let mut order = 0;
    for title in ["Spring sale", "Summer sale"] {
        let offer = app.offer(&s.admin, json!({"title": title})).await;
        let issued: Value = app
            .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        order += 1;
        let redeemed = app
            .redeem(
                &s.checkout,
                &format!("k-{order}"),
                issued["token"].as_str().unwrap(),
                &format!("order-{order}"),
            )
            .await;
        assert_eq!(redeemed.status(), 201);
    }

    let erased = app
        .post_json(
            &s.admin,
            "/v1/people/erase",
            json!({"person": {"given_name": "Ana", "family_name": "Lima",
                              "birth_date": "2004-03-09", "email": "ana.lima@state.edu"}}),
        )
        .await;
    assert_eq!(erased.status(), 200);

    // Plain SQL over the dumped tables: no key needed.
    let linked: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.external_id, d.order_ref
         FROM redemptions AS d
         JOIN tokens AS t ON t.id = d.token_id
         JOIN verification_records AS r
           ON t.place_key = sha256(uuid_send(t.offer_id) || r.person_key)
         ORDER BY d.order_ref",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();

    assert_eq!(
        linked,
        Vec::<(String, String)>::new(),
        "the erased student's orders, on two offers, joined to her roster record"
    );
}

/// Erased by e-mail alone, a person's failed attempt that gave that e-mail
/// loses its strikes (her name pair's among them) and the person key it
/// claimed.
#[tokio::test]
async fn erasure_by_email_removes_the_strikes_of_the_persons_attempts() {
    let app = spawn_app_with(|s| s.verification.backoff_free_failures = 100).await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let mut mistyped = student("Ana", "Lima", "2004-03-10");
    mistyped["person"]["email"] = json!("ana.lima@state.edu");
    assert_eq!(
        status_of(app.verify(&checkout, mistyped).await).await,
        "not_verified"
    );
    let mut right = student("Ana", "Lima", "2004-03-09");
    right["person"]["email"] = json!("ana.lima@state.edu");
    assert_eq!(
        status_of(app.verify(&checkout, right).await).await,
        "verified"
    );

    let erased = app
        .post_json(
            &admin,
            "/v1/people/erase",
            json!({"person": {"email": "ana.lima@state.edu"}}),
        )
        .await;
    assert_eq!(erased.status(), 200);

    let her_name = app
        .state
        .indexer
        .index("limit:name", &["ana", "lima"])
        .to_vec();
    let name_strikes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM verification_strikes WHERE subject = $1")
            .bind(&her_name)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let claimed =
        app.count("SELECT count(*) FROM verification_attempts WHERE person_key IS NOT NULL");

    assert_eq!(
        name_strikes, 0,
        "a strike of her name pair survives her erasure"
    );
    assert_eq!(claimed.await, 0, "her failed attempt keeps its person key");
}

/// An erasure request for "Ana Lima, born 2001-01-01" (a namesake, or
/// nobody) must not wipe the back-off that guessing the real Ana Lima's
/// birth date has built up.
#[tokio::test]
async fn erasing_a_namesake_does_not_reset_the_back_off_of_a_name() {
    let app = spawn_app_with(|s| {
        s.verification.backoff_free_failures = 3;
        s.verification.backoff_base_secs = 600;
    })
    .await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    let guess = |n: u32| {
        let mut body = student("Ana", "Lima", &format!("2004-01-{n:02}"));
        body["client_ip"] = json!(format!("198.51.100.{n}"));
        body
    };
    for n in 1..=3 {
        assert_eq!(
            status_of(app.verify(&checkout, guess(n)).await).await,
            "not_verified"
        );
    }
    assert_eq!(app.verify(&checkout, guess(4)).await.status(), 429);

    let erased = app
        .post_json(
            &admin,
            "/v1/people/erase",
            json!({"person": {"given_name": "Ana", "family_name": "Lima",
                              "birth_date": "2001-01-01"}}),
        )
        .await;
    assert_eq!(erased.status(), 200);
    let after = app.verify(&checkout, guess(4)).await;

    assert_eq!(
        after.status(),
        429,
        "the namesake's erasure reset the back-off of the name pair"
    );
}

/// Confirming again keeps the first confirmation, its partner reference
/// included.
#[tokio::test]
async fn confirming_again_keeps_the_first_partner_reference() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let offer = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let token: Value = app
        .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let redeemed: Value = app
        .redeem(&s.checkout, "o-1", token["token"].as_str().unwrap(), "o-1")
        .await
        .json()
        .await
        .unwrap();
    let path = format!(
        "/v1/redemptions/{}/confirm",
        redeemed["id"].as_str().unwrap()
    );

    let first: Value = app
        .post_json(&s.partner, &path, json!({"partner_ref": "PNR-1"}))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = app
        .post_json(&s.partner, &path, json!({"partner_ref": "PNR-EVIL"}))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(first["confirmed_at"], again["confirmed_at"]);
    assert_eq!(again["partner_ref"], "PNR-1", "{again}");
}

/// One teacher listed by her district (e-mail only) and by the state (the
/// same e-mail, names and birth date) is one person to the per-person
/// limit, whichever record a request lands on.
#[tokio::test]
async fn one_teacher_on_two_rosters_holds_one_place_under_a_limit_of_one() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    let district = format!(
        "external_id,community,email,valid_until\n\
         d-1,teacher,kim.park@district.org,{}\n",
        days_from_today(100)
    );
    let state = format!(
        "external_id,community,email,given_name,family_name,birth_date,valid_until\n\
         s-1,teacher,kim.park@district.org,Kim,Park,1985-05-05,{}\n",
        days_from_today(300)
    );
    for (source, roster) in [("district", district), ("state", state)] {
        let imported = app
            .import(&admin, &format!("source={source}"), "text/csv", &roster)
            .await;
        assert_eq!(imported.status(), 200);
    }
    let offer = app
        .offer(
            &admin,
            json!({"communities": ["teacher"], "per_person_limit": 1}),
        )
        .await;
    let teacher = |given: &str| {
        json!({"community": "teacher", "consent": true, "offer_id": offer["id"],
               "person": {"email": "kim.park@district.org", "given_name": given,
                          "family_name": "Park"}})
    };

    let first: Value = app
        .verify(&checkout, teacher("Kimberly"))
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .verify(&checkout, teacher("Kim"))
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(first["status"], "verified", "{first}");
    assert_eq!(second["status"], "verified", "{second}");
    let tokens = [&first, &second]
        .iter()
        .filter(|answer| answer["token"]["token"].is_string())
        .count();
    assert_eq!(tokens, 1, "one person, two places: {first} {second}");
}
