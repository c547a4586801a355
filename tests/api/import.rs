use serde_json::Value;

use crate::helpers::{ROSTER, assert_problem, spawn_app, spawn_app_with};
use offergate::domain::api_key::Role;

#[tokio::test]
async fn one_bad_row_commits_nothing_and_is_named_field_by_field() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let response = app.import(&admin, "source=demo", "text/csv", &ROSTER).await;

    let problem = assert_problem(response, 422, "import_rejected").await;
    assert_eq!(problem["rejected_total"], 1);
    let rows = problem["rows"].as_array().unwrap();
    let faults: Vec<(u64, &str)> = rows
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(faults, [(9, "email"), (9, "birth_date")]);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        0
    );
}

#[tokio::test]
async fn on_error_skip_writes_the_good_rows_and_lists_the_bad() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let report = app.import_roster(&admin).await;

    assert_eq!(report["rows_read"], 8);
    assert_eq!(report["inserted"], 7);
    assert_eq!(report["rejected_total"], 1);
    assert_eq!(report["rejected"][0]["line"], 9);
    assert_eq!(report["committed"], true);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        7
    );
}

#[tokio::test]
async fn ndjson_imports_like_csv() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let body = [
        r#"{"external_id":"n-1","community":"nurse","family_name":"Okoye","license_number":"RN-1234"}"#
            .to_owned(),
        String::new(),
        format!(
            r#"{{"external_id":"n-2","community":"nurse","email":"kim@hospital.org","valid_until":"{}T00:00:00Z"}}"#,
            crate::helpers::days_from_today(200)
        ),
        r#"{"external_id":"n-3","community":"nurse","emial":"typo@hospital.org"}"#.to_owned(),
        r#"not json"#.to_owned(),
    ]
    .join("\n");

    let rejected = app
        .import(&admin, "source=board", "application/x-ndjson", &body)
        .await;
    let problem = assert_problem(rejected, 422, "import_rejected").await;
    let lines: Vec<u64> = problem["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [4, 5]);

    let report: Value = app
        .import(
            &admin,
            "source=board&on_error=skip",
            "application/x-ndjson",
            &body,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["inserted"], 2);
}

#[tokio::test]
async fn importing_the_same_file_twice_leaves_the_same_state() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let snapshot = "SELECT md5(string_agg(concat_ws('|', source, external_id, community, subsegment, \
                    organization, email_ix, name_dob_ix, license_ix, person_key, valid_from, \
                    valid_until, retired_at), ',' ORDER BY external_id)) FROM verification_records";

    app.import_roster(&admin).await;
    let first: String = sqlx::query_scalar(snapshot)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let again = app.import_roster(&admin).await;
    let second: String = sqlx::query_scalar(snapshot)
        .fetch_one(&app.db)
        .await
        .unwrap();

    assert_eq!(first, second);
    assert_eq!(again["inserted"], 0);
    assert_eq!(again["updated"], 7);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        7
    );
}

#[tokio::test]
async fn a_repeated_external_id_is_named_wherever_it_repeats() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let mut csv = String::from("external_id,community,email\n");
    // Far enough apart to fall in different write batches, and once nearby.
    for i in 0..2_500 {
        csv.push_str(&format!("s-{i},student,p{i}@school.edu\n"));
    }
    csv.push_str("s-7,student,again@school.edu\n");
    csv.push_str("s-2499,student,again2@school.edu\n");

    let report: Value = app
        .import(&admin, "source=big&on_error=skip", "text/csv", &csv)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(report["inserted"], 2_500);
    let rejected: Vec<(u64, &str)> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(rejected, [(2502, "external_id"), (2503, "external_id")]);
}

#[tokio::test]
async fn replace_retires_what_the_snapshot_no_longer_holds_and_ends_its_memberships() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let ana = crate::helpers::student("Ana", "Lima", "2004-03-09");
    let before: Value = app
        .verify(&checkout, ana.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(before["status"], "verified");
    let without_ana: String = ROSTER
        .lines()
        .filter(|l| !l.starts_with("stu-001"))
        .collect::<Vec<_>>()
        .join("\n");

    let report: Value = app
        .import(
            &admin,
            "source=demo&mode=replace&on_error=skip",
            "text/csv",
            &without_ana,
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(report["retired"], 1);
    assert_eq!(report["memberships_ended"], 1);
    let live = app
        .count("SELECT count(*) FROM memberships WHERE expires_at IS NULL OR expires_at > now()")
        .await;
    assert_eq!(live, 0);
    let after: Value = app.verify(&checkout, ana).await.json().await.unwrap();
    assert_eq!(after["status"], "not_verified");
    // The bad row's external id was not retired for being bad.
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records WHERE retired_at IS NULL")
            .await,
        6
    );
}

#[tokio::test]
async fn a_replace_import_without_rows_is_refused() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    app.import_roster(&admin).await;

    let response = app
        .import(
            &admin,
            "source=demo&mode=replace",
            "text/csv",
            "external_id,community,email\n",
        )
        .await;

    assert_problem(response, 400, "bad_request").await;
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records WHERE retired_at IS NULL")
            .await,
        7
    );
}

#[tokio::test]
async fn bad_import_requests_are_clear_4xx_problems() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;

    let unknown_column = app
        .import(
            &admin,
            "source=x",
            "text/csv",
            "external_id,community,emial\n",
        )
        .await;
    let body = assert_problem(unknown_column, 400, "bad_request").await;
    assert!(body["detail"].as_str().unwrap().contains("emial"));

    let no_source = app.import(&admin, "mode=upsert", "text/csv", &ROSTER).await;
    let body = assert_problem(no_source, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "source");

    let bad_mode = app
        .import(&admin, "source=x&mode=merge", "text/csv", &ROSTER)
        .await;
    let body = assert_problem(bad_mode, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "mode");

    let json = app
        .import(&admin, "source=x", "application/json", "{}")
        .await;
    assert_problem(json, 415, "unsupported_media_type").await;

    let not_admin = app.import(&checkout, "source=x", "text/csv", &ROSTER).await;
    assert_problem(not_admin, 403, "forbidden").await;
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        0
    );
}

#[tokio::test]
async fn a_record_past_the_size_limit_is_a_named_row_and_the_rest_still_imports() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    // 64 KiB in one quoted field spanning lines, then a good row.
    let huge = "x\n".repeat(32 * 1024);
    let csv = format!(
        "external_id,community,email,organization\n\
         t-1,teacher,a@school.org,\"{huge}\"\n\
         t-2,teacher,b@school.org,South High\n"
    );
    let long_line = format!(
        r#"{{"external_id":"n-1","community":"nurse","email":"a@h.org","organization":"{}"}}"#,
        "y".repeat(20_000)
    );
    let ndjson = format!(
        "{long_line}\n{}\n",
        r#"{"external_id":"n-2","community":"nurse","email":"b@h.org"}"#
    );

    let csv_report: Value = app
        .import(&admin, "source=big&on_error=skip", "text/csv", &csv)
        .await
        .json()
        .await
        .unwrap();
    let ndjson_report: Value = app
        .import(
            &admin,
            "source=big2&on_error=skip",
            "application/x-ndjson",
            &ndjson,
        )
        .await
        .json()
        .await
        .unwrap();

    for (report, line) in [(&csv_report, 2), (&ndjson_report, 1)] {
        assert_eq!(report["inserted"], 1, "{report}");
        assert_eq!(report["rejected_total"], 1);
        assert_eq!(report["rejected"][0]["line"], line);
        assert_eq!(report["rejected"][0]["field"], "row");
        assert_eq!(
            report["rejected"][0]["message"],
            "is longer than 16384 bytes"
        );
    }
}

#[tokio::test]
async fn the_rejected_rows_listed_are_capped_and_the_rest_counted() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;
    let mut csv = String::from("external_id,community,email\n");
    for n in 0..250 {
        csv.push_str(&format!("b-{n},wizard,not-an-email\n"));
    }

    let response = app.import(&admin, "source=bad", "text/csv", &csv).await;

    let problem = assert_problem(response, 422, "import_rejected").await;
    assert_eq!(problem["rejected_total"], 250);
    assert_eq!(problem["rejected_unlisted"], 150);
    let lines: std::collections::BTreeSet<u64> = problem["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), 100);
    assert_eq!(lines.first(), Some(&2));
    assert_eq!(lines.last(), Some(&101));
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        0
    );
}

#[tokio::test]
async fn an_import_past_the_total_size_is_refused_whole_declared_or_streamed() {
    let app = spawn_app_with(|settings| settings.import.max_total_bytes = 4096).await;
    let admin = app.key(Role::Admin).await;
    let mut csv = String::from("external_id,community,email\n");
    for n in 0..200 {
        csv.push_str(&format!("s-{n},teacher,t{n}@school.org\n"));
    }
    assert!(csv.len() > 4096);
    let first_rows: String = csv.lines().take(20).map(|l| format!("{l}\n")).collect();
    assert!(first_rows.len() < 4096);

    // With a Content-Length: refused before a byte is read.
    let declared = app.import(&admin, "source=big", "text/csv", &csv).await;
    let problem = assert_problem(declared, 413, "payload_too_large").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("4096"),
        "{problem}"
    );

    // Chunked, without a length: refused once the count passes the bound,
    // though every row read so far was good.
    let chunks: Vec<Result<String, std::io::Error>> = csv
        .as_bytes()
        .chunks(512)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let streamed = app
        .client
        .post(app.url("/v1/records/import?source=big"))
        .bearer_auth(&admin)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_problem(streamed, 413, "payload_too_large").await;
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        0
    );

    // Under the bound, the same rows import.
    let small = app
        .import(&admin, "source=big", "text/csv", &first_rows)
        .await;
    assert_eq!(small.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_records").await,
        19
    );
}
