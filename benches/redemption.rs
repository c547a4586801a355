//! Redemption through the whole HTTP stack, beside pgbench running the same
//! statements on the same database in the same run.
//!
//!     cargo bench --bench redemption
//!
//! Knobs (environment): BENCH_SECONDS (15), BENCH_CONCURRENCY (16),
//! DATABASE_URL (the server; the benchmark uses its own database
//! `offergate_bench_redeem`, dropped and created anew).
//!
//! Every request redeems a token of its own, under an Idempotency-Key of its
//! own: a real first redemption each time. The request verifies the token's
//! Ed25519 signature and runs two statements: claim the idempotency key and
//! redeem (the conditional UPDATE of the token and the redemption row), in
//! one statement; then store the answer under the key. pgbench runs, each on
//! fresh tokens: (1) those two statements, (2) the first alone, (3) a bare
//! single-row `UPDATE tokens ... WHERE id = ... AND state = 'issued'
//! RETURNING id`. The load generator, the server, pgbench and PostgreSQL
//! share the machine's cores.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use offergate::domain::offer::{Discount, Offer, OfferStatus};
use offergate::signing::{KeyRing, TokenClaims};
use offergate::store::{offers, redemptions};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

/// pgbench's tokens per client and run.
const PER_CLIENT: i64 = 40_000;

fn uuid_of(n: i64) -> Uuid {
    Uuid::from_u128(n as u128)
}

/// Token rows with ids `first..first+count`, for `offer` and `membership`.
async fn insert_tokens(
    pool: &PgPool,
    first: i64,
    count: i64,
    offer: Uuid,
    membership: Uuid,
    kid: &str,
) {
    sqlx::query(
        "INSERT INTO tokens (id, offer_id, membership_id, person_key, community, kid, expires_at)
         SELECT lpad(to_hex(n), 32, '0')::uuid, $3, $4, '\\x01', 'student', $5, now() + interval '1 day'
         FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS n",
    )
    .bind(first)
    .bind(count)
    .bind(offer)
    .bind(membership)
    .bind(kid)
    .execute(pool)
    .await
    .expect("tokens");
}

/// The pgbench token id of a client's i-th transaction in the run at `base`.
fn pgbench_id(base: i64) -> String {
    format!("lpad(to_hex({base}::bigint + :client_id * {PER_CLIENT} + :i), 32, '0')::uuid")
}

fn script(dir: &Path, name: &str, body: String) -> PgbenchScript {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, format!("\\set i :i + 1\n{body}")).expect("script");
    PgbenchScript { path }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", 15);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 16);
    let database = "offergate_bench_redeem";
    let dir = std::env::temp_dir().join(format!("offergate-bench-redeem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let settings = settings();
    let pool = fresh_database(database).await;
    let ring = KeyRing::new(
        pool.clone(),
        settings.secrets.key_encryption_key.expose_secret(),
        &settings.tokens.issuer,
        &settings.tokens.audience,
    )
    .expect("key ring");

    let offer = offers::save(
        &pool,
        &Offer {
            id: Uuid::now_v7(),
            title: "Bench".into(),
            description: String::new(),
            communities: vec!["student".into()],
            subsegments: vec![],
            discount: Discount::Percent { percent_off: 10.0 },
            starts_at: None,
            ends_at: None,
            status: OfferStatus::Active,
            partner_id: None,
            total_cap: None,
            per_person_limit: None,
            token_ttl_secs: 86_400,
            reversal_returns_token: false,
        },
    )
    .await
    .expect("offer");
    let membership: Uuid = sqlx::query_scalar(
        "INSERT INTO memberships (person_key, community, verified_at) VALUES ('\\x01', 'student', now()) RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("membership");
    let signer = ring.signer().await.expect("signing key");

    // Tokens for the HTTP run: signed, one per request.
    let per_worker: i64 = env_or("BENCH_TOKENS_PER_CLIENT", 20_000);
    let http_tokens = per_worker * concurrency as i64;
    insert_tokens(&pool, 1, http_tokens, offer.id, membership, signer.kid()).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let signed: Arc<Vec<String>> = Arc::new(
        (1..=http_tokens)
            .map(|n| {
                signer
                    .sign(&TokenClaims {
                        iss: ring.issuer.clone(),
                        aud: ring.audience.clone(),
                        sub: membership.to_string(),
                        jti: uuid_of(n).to_string(),
                        iat: now,
                        nbf: now,
                        exp: now + 86_400,
                        offer_id: offer.id.to_string(),
                        community: "student".into(),
                    })
                    .expect("signed")
            })
            .collect(),
    );
    let runs = [1_000_000_000_i64, 2_000_000_000, 3_000_000_000];
    for base in runs {
        insert_tokens(
            &pool,
            base + 1,
            PER_CLIENT * concurrency as i64 + 1,
            offer.id,
            membership,
            signer.kid(),
        )
        .await;
    }
    sqlx::query("VACUUM ANALYZE tokens")
        .execute(&pool)
        .await
        .expect("vacuum");

    let port = free_port();
    let _server = start_server(database, port);
    let address = format!("http://127.0.0.1:{port}");
    wait_ready(&address).await;
    let (key, record) = offergate::auth::create_key(
        &pool,
        offergate::domain::api_key::Role::Checkout,
        None,
        "bench",
    )
    .await
    .expect("key");
    let key = key.expose().to_owned();
    let (ours, generator) = if wrk_installed() {
        // Each wrk thread takes every other token, in order.
        let tokens_file = dir.join("tokens.txt");
        std::fs::write(&tokens_file, signed.join("\n")).expect("tokens file");
        let script = dir.join("redeem.lua");
        std::fs::write(
            &script,
            format!(
                r#"local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
function init(args)
  tokens = {{}}
  local n = 0
  for line in io.lines("{tokens}") do
    if n % 2 == id then table.insert(tokens, line) end
    n = n + 1
  end
  next_token = 1
end
function request()
  local token = tokens[next_token]
  next_token = next_token + 1
  return wrk.format("POST", "/v1/redemptions", {{
    ["Authorization"] = "Bearer {key}",
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "wrk-" .. id .. "-" .. next_token,
  }}, '{{"token":"' .. token .. '","order_ref":"order-' .. id .. "-" .. next_token .. '","amount":12900}}')
end
"#,
                tokens = tokens_file.display(),
            ),
        )
        .expect("lua script");
        (
            wrk(
                &format!("{address}/v1/redemptions"),
                &script,
                seconds,
                concurrency,
            ),
            "wrk",
        )
    } else {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .expect("client");
        let url = format!("{address}/v1/redemptions");
        let key = key.clone();
        let load = drive(seconds, concurrency, move |worker, k| {
            let at = worker as i64 * per_worker + k as i64;
            assert!(k < per_worker as u64, "raise BENCH_TOKENS_PER_CLIENT");
            client
                .post(&url)
                .bearer_auth(&key)
                .header("idempotency-key", format!("http-{worker}-{k}"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"token":"{}","order_ref":"order-{at}","amount":12900}}"#,
                    signed[at as usize]
                ))
        })
        .await;
        (
            load,
            "a load generator of ours (install wrk for a lighter one)",
        )
    };

    let api_key_id = record.id.to_string();
    let redeem_at = |base: i64| {
        with_literals(
            redemptions::CLAIM_AND_REDEEM,
            &[
                format!("'{api_key_id}'"),
                format!("('pg-{base}-' || :client_id || '-' || :i)"),
                "'\\x0102'::bytea".into(),
                "60.0::float8".into(),
                pgbench_id(base),
                format!(
                    "lpad(to_hex(5000000000::bigint + {base}::bigint + :client_id * {PER_CLIENT} + :i), 32, '0')::uuid"
                ),
                "('order-' || :i)".into(),
                "12900::bigint".into(),
            ],
        )
    };
    let finish = with_literals(
        redemptions::FINISH,
        &[
            format!("'{api_key_id}'"),
            format!("('pg-{}-' || :client_id || '-' || :i)", runs[0]),
            "201::smallint".into(),
            r#"'{"id":"00000000-0000-0000-0000-000000000000","discount":{"kind":"percent","percent_off":10.0}}'::jsonb"#.into(),
        ],
    );
    let same = script(
        &dir,
        "same",
        format!("{};\n{finish};\n", redeem_at(runs[0])),
    );
    let redeem_only = script(&dir, "redeem", format!("{};\n", redeem_at(runs[1])));
    let bare = script(
        &dir,
        "bare",
        format!(
            "UPDATE tokens SET state = 'redeemed' WHERE id = {} AND state = 'issued' RETURNING id;\n",
            pgbench_id(runs[2])
        ),
    );
    let fresh = ["-D", "i=0"];
    let same_sql = pgbench(
        database,
        &[same],
        &fresh,
        seconds,
        concurrency,
        &dir,
        "same",
    );
    let redeem_sql = pgbench(
        database,
        &[redeem_only],
        &fresh,
        seconds,
        concurrency,
        &dir,
        "redeem",
    );
    let bare_sql = pgbench(
        database,
        &[bare],
        &fresh,
        seconds,
        concurrency,
        &dir,
        "bare",
    );
    let redeemed: i64 = sqlx::query_scalar("SELECT count(*) FROM redemptions")
        .fetch_one(&pool)
        .await
        .expect("count");

    println!(
        "redemption, {concurrency} concurrent clients, {seconds} s per run; HTTP load from {generator}"
    );
    println!("(load generator, server, pgbench and PostgreSQL share this machine's cores)");
    print_load("POST /v1/redemptions over HTTP", &ours);
    print_load("pgbench: the request's 2 statements", &same_sql);
    print_load("pgbench: claim-and-redeem statement alone", &redeem_sql);
    print_load("pgbench: bare single-row UPDATE ... RETURNING", &bare_sql);
    println!(
        "  ratio: endpoint / its SQL in pgbench = {:.0}%",
        100.0 * ours.rate() / same_sql.rate()
    );
    println!(
        "  ratio: endpoint / the redeem statement alone = {:.0}%",
        100.0 * ours.rate() / redeem_sql.rate()
    );
    println!(
        "  ratio: redeem statement / bare single-row UPDATE = {:.0}%",
        100.0 * redeem_sql.rate() / bare_sql.rate()
    );
    println!("  ({redeemed} redemptions written in all)");
    let _ = std::fs::remove_dir_all(&dir);
    pool.close().await;
}
