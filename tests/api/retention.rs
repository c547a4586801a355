//! Bounded tables: the sweep inside `serve` prunes old strikes, attempts,
//! idempotency keys and spent tokens, keeps what the limits, caps and
//! books need, and any number of processes may sweep at once.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ServerProcess, TestDatabase, offergate_command, spawn_app_with, student};

const TABLES: [&str; 4] = [
    "verification_attempts",
    "verification_strikes",
    "idempotency_keys",
    "tokens",
];

async fn counts(db: &sqlx::PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        counts.push(
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(db)
                .await
                .unwrap(),
        );
    }
    counts
}

#[tokio::test]
async fn under_steady_traffic_the_pruned_tables_level_off_and_caps_stay_right() {
    let app = spawn_app_with(|s| {
        s.verification.window_secs = 1;
        s.retention.sweep_interval_secs = 1;
        s.retention.batch_rows = 7;
        s.retention.strikes_secs = 2;
        s.retention.attempts_secs = 2;
        s.retention.idempotency_keys_secs = 2;
        s.retention.expired_tokens_secs = 1;
    })
    .await;
    let setup = app.offer_setup().await;
    let offer = app
        .offer(
            &setup.admin,
            json!({"token_ttl_secs": 10, "total_cap": 1000}),
        )
        .await;
    let offer_id = offer["id"].as_str().unwrap().to_owned();
    let rounds = 10;
    let mut per_round = Vec::new();
    let mut redeemed = 0;

    for round in 0..rounds {
        let started = Instant::now();
        for n in 0..5 {
            let mut failing = student(&format!("Guess{round}x{n}"), "Nobody", "2001-01-01");
            failing["client_ip"] = json!(format!("198.51.{round}.{n}"));
            assert_eq!(app.verify(&setup.checkout, failing).await.status(), 200);
        }
        for n in 0..3 {
            let issued = app
                .client
                .post(app.url("/v1/tokens"))
                .bearer_auth(&setup.checkout)
                .header("idempotency-key", format!("issue-{round}-{n}"))
                .json(&json!({"membership_id": setup.membership_id, "offer_id": offer_id}))
                .send()
                .await
                .unwrap();
            assert_eq!(issued.status(), 201);
            if n == 0 {
                let token: Value = issued.json().await.unwrap();
                let token = token["token"].as_str().unwrap();
                let redemption = app
                    .redeem(&setup.checkout, &format!("redeem-{round}"), token, "order")
                    .await;
                assert_eq!(redemption.status(), 201);
                redeemed += 1;
            }
        }
        per_round.push(counts(&app.db).await);
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }

    // 10 rounds made 50 failed attempts (plus one success), about 150
    // strikes and 40 idempotency keys; the last rounds hold only the last
    // few seconds' worth.
    let last = &per_round[rounds - 1];
    let tail_max = |column: usize| {
        per_round[rounds - 3..]
            .iter()
            .map(|c| c[column])
            .max()
            .unwrap()
    };
    assert!(tail_max(0) <= 30, "attempts per round: {per_round:?}");
    assert!(tail_max(1) <= 90, "strikes per round: {per_round:?}");
    assert!(
        tail_max(2) <= 30,
        "idempotency keys per round: {per_round:?}"
    );
    assert!(last[3] >= 30, "tokens are kept until expiry: {per_round:?}");

    // Traffic stops: everything but the redeemed tokens goes, and the
    // offer's count of places is exactly the redeemed tokens.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = counts(&app.db).await;
        if now == [0, 0, 0, redeemed] {
            break;
        }
        assert!(Instant::now() < deadline, "still {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let places: i32 = sqlx::query_scalar("SELECT places_taken FROM offers WHERE id = $1::uuid")
        .bind(&offer_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(i64::from(places), redeemed);
    let redemptions = app.count("SELECT count(*) FROM redemptions").await;
    assert_eq!(redemptions, redeemed);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"rows_pruned_total{table="tokens"}"#),
        "{metrics}"
    );
}

const SEED: &str = "
INSERT INTO signing_keys (kid, public_key, sealed_private_key, retired_at)
VALUES ('00000000000000aa', '\\x00', '\\x00', now());
INSERT INTO offers (id, title, communities, discount_kind, percent_off, status, total_cap, places_taken)
SELECT gen_random_uuid(), 'offer ' || i, '{student}', 'percent', 10, 'active', 1000, 410
FROM generate_series(1, 5) AS i;
INSERT INTO tokens (id, offer_id, place_key, community, kid, state, issued_at, expires_at)
SELECT gen_random_uuid(), o.id, decode(md5(o.id::text || g::text), 'hex'), 'student',
       '00000000000000aa', CASE WHEN g <= 400 THEN 'issued' WHEN g <= 410 THEN 'redeemed' ELSE 'revoked' END,
       now() - interval '2 days', now() - interval '1 day'
FROM offers AS o, generate_series(1, 510) AS g;
INSERT INTO redemptions (id, token_id, offer_id, order_ref, discount_kind, percent_off)
SELECT gen_random_uuid(), t.id, t.offer_id, 'order', 'percent', 10 FROM tokens AS t WHERE t.state = 'redeemed';
INSERT INTO verification_strikes (subject, attempt_id, struck_at)
SELECT decode(md5(g::text), 'hex'), gen_random_uuid(), now() - interval '1 day'
FROM generate_series(1, 3000) AS g;
INSERT INTO verification_attempts (id, community, outcome, attempted_at)
SELECT gen_random_uuid(), 'student', 'not_verified', now() - interval '1 day'
FROM generate_series(1, 2000) AS g;
INSERT INTO idempotency_keys (api_key_id, key, request_hash, outcome, created_at)
SELECT 'AAAAAAAAAAAA', 'k-' || g, '\\x00', 'redeemed', now() - interval '1 day'
FROM generate_series(1, 1000) AS g;
";

fn sum_of(servers: &[String], table: &str) -> u64 {
    let label = format!(r#"rows_pruned_total{{table="{table}"}}"#);
    servers
        .iter()
        .map(|metrics| {
            metrics
                .lines()
                .find(|line| line.starts_with(&label))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn two_processes_sweeping_at_once_prune_each_row_once_and_keep_counts_right() {
    let database = TestDatabase::new();
    let migrated = offergate_command(&database.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let db = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::raw_sql(SEED).execute(&db).await.unwrap();
    let env = [
        ("OFFERGATE_VERIFICATION__WINDOW_SECS", "1"),
        ("OFFERGATE_VERIFICATION__BACKOFF_LOOKBACK_SECS", "60"),
        ("OFFERGATE_VERIFICATION__BACKOFF_MAX_SECS", "60"),
        ("OFFERGATE_RETENTION__SWEEP_INTERVAL_SECS", "1"),
        ("OFFERGATE_RETENTION__BATCH_ROWS", "50"),
        ("OFFERGATE_RETENTION__STRIKES_SECS", "60"),
        ("OFFERGATE_RETENTION__ATTEMPTS_SECS", "60"),
        ("OFFERGATE_RETENTION__IDEMPOTENCY_KEYS_SECS", "60"),
        ("OFFERGATE_RETENTION__EXPIRED_TOKENS_SECS", "60"),
    ];
    let servers = [
        ServerProcess::start_with_env(&database.url, &env),
        ServerProcess::start_with_env(&database.url, &env),
    ];

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if counts(&db).await == [0, 0, 0, 50] {
            break;
        }
        assert!(Instant::now() < deadline, "still {:?}", counts(&db).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let places: Vec<i32> = sqlx::query_scalar("SELECT places_taken FROM offers")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(places, [10; 5]);
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM redemptions")
            .fetch_one(&db)
            .await
            .unwrap(),
        50
    );
    let client = reqwest::Client::new();
    let mut metrics = Vec::new();
    for server in &servers {
        let page = client
            .get(format!("{}/metrics", server.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics.push(page);
    }
    assert_eq!(sum_of(&metrics, "verification_strikes"), 3000);
    assert_eq!(sum_of(&metrics, "verification_attempts"), 2000);
    assert_eq!(sum_of(&metrics, "idempotency_keys"), 1000);
    assert_eq!(sum_of(&metrics, "tokens"), 2500);
    for server in &servers {
        let log = server.log.lock().unwrap();
        assert!(
            !log.iter()
                .any(|line| line.contains("\"ERROR\"") || line.contains("sweep failed")),
            "{log:?}"
        );
    }
}

#[tokio::test]
async fn an_offer_long_ended_forgets_who_held_its_places() {
    let app = spawn_app_with(|s| {
        s.retention.sweep_interval_secs = 1;
        s.retention.expired_tokens_secs = 1;
    })
    .await;
    let setup = app.offer_setup().await;
    let ended = app
        .offer(&setup.admin, json!({"per_person_limit": 1}))
        .await;
    let live = app
        .offer(&setup.admin, json!({"per_person_limit": 1}))
        .await;
    for offer in [&ended, &live] {
        let issued = app
            .token(
                &setup.checkout,
                &setup.membership_id,
                offer["id"].as_str().unwrap(),
            )
            .await;
        assert_eq!(issued.status(), 201);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM offer_person_places").await,
        2
    );

    sqlx::query("UPDATE offers SET ends_at = now() - interval '1 hour' WHERE id = $1")
        .bind(uuid::Uuid::parse_str(ended["id"].as_str().unwrap()).unwrap())
        .execute(&app.db)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while app
        .count("SELECT count(*) FROM tokens WHERE place_key IS NOT NULL")
        .await
        > 1
    {
        assert!(
            Instant::now() < deadline,
            "the ended offer's place keys stay"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(
        app.count("SELECT count(*) FROM offer_person_places").await,
        1,
        "the live offer keeps its per-person count"
    );
    assert_eq!(app.count("SELECT count(*) FROM tokens").await, 2);
}
