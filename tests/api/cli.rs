use offergate::domain::api_key::ApiKey;

use crate::helpers::{ServerProcess, TestDatabase, offergate_command};

fn run(database: &TestDatabase, args: &[&str]) -> std::process::Output {
    offergate_command(&database.url)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn keys_create_prints_the_key_alone_and_list_and_revoke_manage_it() {
    let database = TestDatabase::new();

    let created = run(
        &database,
        &["keys", "create", "--role", "admin", "--name", "ops"],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let printed = stdout(&created);
    let key = ApiKey::parse(printed.trim_end_matches('\n')).expect("stdout is exactly one key");
    assert_eq!(printed.lines().count(), 1);

    let listed = stdout(&run(&database, &["keys", "list"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with(key.id().as_str()))
        .unwrap();
    assert!(row.contains("admin") && row.ends_with("ops"));
    assert!(!listed.contains(key.secret()));

    let revoked = run(&database, &["keys", "revoke", key.id().as_str()]);
    assert!(revoked.status.success());
    let listed = stdout(&run(&database, &["keys", "list"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with(key.id().as_str()))
        .unwrap();
    assert!(row.contains(&format!("{}-", time::OffsetDateTime::now_utc().year())));
}

#[test]
fn keys_create_refuses_a_partner_key_without_its_partner() {
    let database = TestDatabase::new();

    let output = run(&database, &["keys", "create", "--role", "partner"]);

    assert!(!output.status.success());
    assert!(stdout(&output).is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("partner"));
}

#[test]
fn keys_create_refuses_an_unknown_role() {
    let database = TestDatabase::new();

    let output = run(&database, &["keys", "create", "--role", "root"]);

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("role"));
}

#[test]
fn secrets_generate_prints_a_usable_secret() {
    let output = offergate_command("postgres://unused")
        .args(["secrets", "generate"])
        .output()
        .unwrap();

    let secret = stdout(&output);
    assert_eq!(secret.trim().len(), 64);
    assert!(hex::decode(secret.trim()).is_ok());
}

#[tokio::test]
async fn a_key_from_the_cli_opens_the_admin_api_of_a_served_process() {
    let database = TestDatabase::new();
    let server = ServerProcess::start(&database.url);
    let key = stdout(&run(&database, &["keys", "create", "--role", "admin"]));
    let checkout = stdout(&run(&database, &["keys", "create", "--role", "checkout"]));
    let client = reqwest::Client::new();
    let url = format!("{}/v1/api-keys", server.address);

    let admin = client
        .get(&url)
        .bearer_auth(key.trim())
        .send()
        .await
        .unwrap();
    let anonymous = client.get(&url).send().await.unwrap();
    let wrong_role = client
        .get(&url)
        .bearer_auth(checkout.trim())
        .send()
        .await
        .unwrap();

    assert_eq!(admin.status(), 200);
    assert_eq!(anonymous.status(), 401);
    assert_eq!(wrong_role.status(), 403);
    let metrics = client
        .get(format!("{}/metrics", server.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for status in ["200", "401", "403"] {
        let counted = format!(r#"route="/v1/api-keys",status="{status}"}} 1"#);
        assert!(metrics.contains(&counted), "{counted} in {metrics}");
    }
}

#[test]
fn import_takes_the_same_path_as_the_api_and_names_bad_lines() {
    let database = TestDatabase::new();
    let roster = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/roster.csv");

    let strict = run(&database, &["import", "--source", "demo", roster]);
    let strict_err = String::from_utf8_lossy(&strict.stderr).into_owned();
    let skipping = run(
        &database,
        &["import", "--source", "demo", "--on-error", "skip", roster],
    );
    let skipping_err = String::from_utf8_lossy(&skipping.stderr).into_owned();

    assert!(!strict.status.success());
    assert!(strict_err.contains("line 9: email"), "{strict_err}");
    assert!(strict_err.contains("nothing was written"), "{strict_err}");
    assert!(skipping.status.success(), "{skipping_err}");
    assert!(
        skipping_err.contains("8 rows read: 7 inserted"),
        "{skipping_err}"
    );
    assert!(stdout(&skipping).is_empty());
}

#[test]
fn import_takes_open_ended_rows_and_caps_the_rejections_it_prints() {
    let database = TestDatabase::new();
    let dir = std::env::temp_dir().join(format!("offergate-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("roster.csv");
    let mut csv = String::from("external_id,community,email,valid_until\n");
    csv.push_str("t-0,teacher,open@school.org,9999-12-31\n");
    for n in 1..=120 {
        csv.push_str(&format!("t-{n},teacher,bad-address-{n},\n"));
    }
    std::fs::write(&file, csv).unwrap();

    let output = run(
        &database,
        &[
            "import",
            "--source",
            "open",
            "--on-error",
            "skip",
            file.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    std::fs::remove_dir_all(&dir).ok();

    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("121 rows read: 1 inserted"), "{stderr}");
    assert!(stderr.contains("... and 20 more rejected rows"), "{stderr}");
    assert_eq!(stderr.matches(": email: ").count(), 100, "{stderr}");
}
