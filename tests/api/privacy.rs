use offergate::domain::api_key::Role;

use crate::helpers::{ROSTER, spawn_app, student};

/// Every personal value of the example roster: e-mails, names, birth dates.
fn personal_values() -> Vec<String> {
    let mut values = Vec::new();
    for line in ROSTER.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        for at in [4, 5, 6, 7, 8] {
            let cell = cells[at].trim();
            if cell.len() >= 3 {
                values.push(cell.to_owned());
            }
        }
    }
    values
}

#[tokio::test]
async fn a_database_dump_after_import_and_verification_reveals_nobody() {
    let app = spawn_app().await;
    let (admin, checkout) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
    app.import_roster(&admin).await;
    app.verify(&checkout, student("Ana", "Lima", "2004-03-09"))
        .await;
    app.verify(&checkout, student("Robert", "O'Neill", "2003-11-22"))
        .await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut url = crate::helpers::server_url();
    url.set_path(&format!("/{database}"));

    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", url.as_str()])
        .output()
        .expect("pg_dump runs");

    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout).to_lowercase();
    assert!(
        text.contains("state university"),
        "the dump holds the imported rows"
    );
    let values = personal_values();
    assert!(values.len() >= 20);
    for value in values {
        let canonical = offergate::domain::identity::canonical_text(&value);
        // Short runs of hex digits ("bad") occur by chance in hashes and ids.
        let could_be_hex = canonical.len() < 8 && canonical.chars().all(|c| c.is_ascii_hexdigit());
        if !could_be_hex {
            assert!(
                !text.contains(&value.to_lowercase()),
                "the dump reveals {value}"
            );
            assert!(
                !text.contains(&canonical),
                "the dump reveals {value} as {canonical}"
            );
        }
    }
}
