//! Import and verification benchmarks, each beside PostgreSQL doing the same
//! work in the same run, reported as ratios.
//!
//!     cargo bench --bench records
//!
//! Knobs (environment): BENCH_RECORDS (1000000), BENCH_SECONDS (15),
//! BENCH_CONCURRENCY (16), DATABASE_URL (the server; the benchmark uses its
//! own database `offergate_bench`, dropped and created anew).
//!
//! 1. Import: N generated student records through `offergate::import` (the
//!    code path of `offergate import` and POST /v1/records/import), against
//!    PostgreSQL's own COPY of the same rows, already hashed, into the same
//!    empty table.
//! 2. Verification: POST /v1/verifications on a release `offergate serve`
//!    process, against pgbench running the transaction one request runs
//!    (check the limits, match, record the success) with the same values, and against
//!    pgbench running a bare single-row UPDATE ... RETURNING.
//!
//! The load generator, the server, pgbench and PostgreSQL share the
//! machine's cores.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;
use offergate::domain::blind::BlindIndexer;
use offergate::domain::identity::{Identity, RawIdentity};
use offergate::import::{Format, ImportOptions, Mode, OnError, import_records};
use offergate::store::verifications;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

const PEOPLE: usize = 128;

struct Person {
    email: String,
    given: String,
    family: String,
    born: String,
}

fn person(i: usize) -> Person {
    let day = time::Date::from_calendar_date(1990, time::Month::January, 1).expect("date")
        + time::Duration::days((i % 3650) as i64);
    Person {
        email: format!("student{i}@uni{}.edu", i % 500),
        given: format!("Given{i}"),
        family: format!("Family{}", i % 5000),
        born: day.to_string(),
    }
}

fn identity(p: &Person) -> Identity {
    Identity::parse(&RawIdentity {
        email: Some(p.email.clone()),
        given_name: Some(p.given.clone()),
        family_name: Some(p.family.clone()),
        birth_date: Some(p.born.clone()),
        ..Default::default()
    })
    .expect("generated identity is valid")
}

fn write_csv(path: &Path, n: usize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("csv file"));
    writeln!(out, "external_id,community,subsegment,organization,email,given_name,family_name,birth_date,valid_until").unwrap();
    for i in 0..n {
        let p = person(i);
        writeln!(
            out,
            "s{i},student,college,University {},{},{},{},{},2030-06-30",
            i % 500,
            p.email,
            p.given,
            p.family,
            p.born
        )
        .unwrap();
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\\\x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The same rows, hashed, as COPY text.
fn copy_text(indexer: &BlindIndexer, n: usize, import_id: Uuid) -> Vec<u8> {
    let mut out = String::with_capacity(n * 260);
    for i in 0..n {
        let p = person(i);
        let id = identity(&p);
        let keys = indexer.match_keys(&id);
        let person_key = indexer.person_key(&id).expect("person key");
        let _ = writeln!(
            out,
            "bench\ts{i}\tstudent\tcollege\tUniversity {}\t{}\t{}\t\\N\t{}\t\\N\t2030-07-01 00:00:00+00\t{import_id}",
            i % 500,
            hex(&keys.email.expect("email")),
            hex(&keys.name_dob.expect("name")),
            hex(&person_key),
        );
    }
    out.into_bytes()
}

struct ImportFigures {
    ours: Duration,
    copy: Duration,
}

async fn bench_import(
    pool: &PgPool,
    indexer: &BlindIndexer,
    n: usize,
    dir: &Path,
) -> ImportFigures {
    let csv = dir.join("records.csv");
    write_csv(&csv, n);
    let copy_rows = copy_text(indexer, n, Uuid::now_v7());

    let mut conn = pool.acquire().await.expect("conn");
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY verification_records (source, external_id, community, subsegment, organization, \
             email_ix, name_dob_ix, license_ix, person_key, valid_from, valid_until, last_import) FROM STDIN",
        )
        .await
        .expect("copy in");
    for chunk in copy_rows.chunks(1 << 20) {
        copy.send(chunk).await.expect("copy chunk");
    }
    copy.finish().await.expect("copy finish");
    let copy_elapsed = started.elapsed();
    sqlx::query("TRUNCATE verification_records CASCADE")
        .execute(&mut *conn)
        .await
        .expect("truncate");
    drop(conn);
    sqlx::query("VACUUM ANALYZE verification_records")
        .execute(pool)
        .await
        .expect("vacuum");

    let options = ImportOptions {
        source: "bench".into(),
        mode: Mode::Upsert,
        on_error: OnError::Fail,
        format: Format::Csv,
    };
    let file = tokio::fs::File::open(&csv).await.expect("open csv");
    let started = Instant::now();
    let report = import_records(pool, indexer, &options, file)
        .await
        .expect("import");
    let ours = started.elapsed();
    assert_eq!(report.inserted as usize, n);
    sqlx::query("VACUUM ANALYZE verification_records")
        .execute(pool)
        .await
        .expect("vacuum");
    ImportFigures {
        ours,
        copy: copy_elapsed,
    }
}

/// Each person's own client address.
fn address_of(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn body_for(i: usize) -> String {
    let p = person(i);
    serde_json::json!({
        "community": "student",
        "person": {"email": p.email, "given_name": p.given, "family_name": p.family, "birth_date": p.born},
        "consent": true,
        "client_ip": address_of(i),
    })
    .to_string()
}

async fn http_load(
    address: &str,
    key: &str,
    people: &[usize],
    seconds: u64,
    concurrency: usize,
) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let bodies: Vec<String> = people.iter().map(|i| body_for(*i)).collect();
    let url = format!("{address}/v1/verifications");
    let key = key.to_owned();
    drive(seconds, concurrency, move |worker, k| {
        // The people in random order, as pgbench picks its scripts.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ ((worker as u64) << 32 | k);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        client
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(bodies[(state % bodies.len() as u64) as usize].clone())
    })
    .await
}

/// The statements one verification runs, with this person's values.
async fn verification_script(
    pool: &PgPool,
    indexer: &BlindIndexer,
    i: usize,
    key_id: &str,
    limits: (i32, i32, i32),
    dir: &Path,
) -> PgbenchScript {
    let p = person(i);
    let identity = identity(&p);
    let mut subjects: Vec<(Vec<u8>, i32, bool)> = indexer
        .identity_subjects(&identity)
        .into_iter()
        .map(|(_, s)| (s.to_vec(), limits.0, true))
        .collect();
    let address = address_of(i);
    subjects.push((
        indexer.index("limit:address", &[&address]).to_vec(),
        limits.1,
        false,
    ));
    subjects.push((
        indexer.index("limit:api-key", &[key_id]).to_vec(),
        limits.2,
        false,
    ));
    let keys = indexer.match_keys(&identity);
    let record: (i64, Vec<u8>) =
        sqlx::query_as("SELECT id, person_key FROM verification_records WHERE source = 'bench' AND external_id = $1")
            .bind(format!("s{i}"))
            .fetch_one(pool)
            .await
            .expect("record");
    let attempt = "lpad(to_hex(:attempt::bigint), 32, '0')::uuid".to_owned();
    let subject_array = format!(
        "ARRAY[{}]",
        subjects
            .iter()
            .map(|(s, _, _)| literal_bytes(s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let limit_array = format!(
        "ARRAY[{}]::integer[]",
        subjects
            .iter()
            .map(|(_, l, _)| l.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let exact_array = format!(
        "ARRAY[{}]::boolean[]",
        subjects
            .iter()
            .map(|(_, _, e)| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let check_and_match = with_literals(
        verifications::CHECK_AND_MATCH,
        &[
            "'student'".into(),
            "NULL::text".into(),
            literal_bytes(&keys.email.expect("email")),
            literal_bytes(&keys.name_dob.expect("name")),
            "NULL::bytea".into(),
            subject_array,
            limit_array,
            exact_array,
            "60.0::float8".into(),
        ],
    );
    let success = with_literals(
        verifications::RECORD_SUCCESS,
        &[
            attempt,
            "'student'".into(),
            "'college'".into(),
            literal_bytes(&record.1),
            "NULL::uuid".into(),
            "NULL::bytea".into(),
            format!("'{key_id}'"),
            record.0.to_string(),
            "(now() + interval '365 days')".into(),
        ],
    );
    let script = format!(
        "\\set attempt random(1, 9223372036854775807)\nBEGIN;\n{check_and_match};\n{success};\nCOMMIT;\n"
    );
    let path = dir.join(format!("verify-{i}.sql"));
    std::fs::write(&path, script).expect("script");
    PgbenchScript { path }
}

async fn update_script(pool: &PgPool, i: usize, dir: &Path) -> PgbenchScript {
    let membership: Uuid = sqlx::query_scalar(
        "SELECT m.id FROM memberships m JOIN verification_records r ON r.person_key = m.person_key
         WHERE r.source = 'bench' AND r.external_id = $1",
    )
    .bind(format!("s{i}"))
    .fetch_one(pool)
    .await
    .expect("membership");
    let path = dir.join(format!("update-{i}.sql"));
    std::fs::write(
        &path,
        format!(
            "UPDATE memberships SET verified_at = now() WHERE id = '{membership}' RETURNING id;\n"
        ),
    )
    .expect("script");
    PgbenchScript { path }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n: usize = env_or("BENCH_RECORDS", 1_000_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 15);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 16);
    let database = "offergate_bench";
    let dir = std::env::temp_dir().join(format!("offergate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");

    let settings = settings();
    let indexer =
        BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret()).expect("key");
    let pool = fresh_database(database).await;

    println!(
        "offergate benchmarks: {n} records, {concurrency} concurrent clients, {seconds} s per load run"
    );
    println!("(load generator, server, pgbench and PostgreSQL share this machine's cores)\n");

    let import = bench_import(&pool, &indexer, n, &dir).await;
    println!("import of {n} records");
    println!(
        "  PostgreSQL COPY of the hashed rows        {:>10.0} records/s  ({:.1} s)",
        per_second(n, import.copy),
        import.copy.as_secs_f64()
    );
    println!(
        "  offergate import (parse, hash, upsert)    {:>10.0} records/s  ({:.1} s)",
        per_second(n, import.ours),
        import.ours.as_secs_f64()
    );
    println!(
        "  ratio: offergate / COPY = {:.0}%\n",
        100.0 * import.copy.as_secs_f64() / import.ours.as_secs_f64()
    );

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        listener.local_addr().expect("addr").port()
    };
    let _server = start_server(database, port);
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (key, record) = offergate::auth::create_key(
        &pool,
        offergate::domain::api_key::Role::Checkout,
        None,
        "bench",
    )
    .await
    .expect("key");
    let people: Vec<usize> = (0..PEOPLE).map(|k| (k * 7919 + 13) % n).collect();
    // Warm up: memberships exist, caches and plans are hot.
    http_load(&address, key.expose(), &people, 2, concurrency).await;

    let ours = http_load(&address, key.expose(), &people, seconds, concurrency).await;
    let limits = (
        settings.verification.max_failures_per_identity,
        settings.verification.max_failures_per_address,
        100_000_000,
    );
    let mut verify_scripts = Vec::new();
    let mut update_scripts = Vec::new();
    for i in &people {
        verify_scripts
            .push(verification_script(&pool, &indexer, *i, record.id.as_str(), limits, &dir).await);
        update_scripts.push(update_script(&pool, *i, &dir).await);
    }
    let same_sql = pgbench(
        database,
        &verify_scripts,
        &[],
        seconds,
        concurrency,
        &dir,
        "verify",
    );
    let bare = pgbench(
        database,
        &update_scripts,
        &[],
        seconds,
        concurrency,
        &dir,
        "update",
    );

    println!("verification against {n} records ({PEOPLE} people, every attempt verified)");
    print_load("POST /v1/verifications over HTTP", &ours);
    print_load("pgbench: the same transaction", &same_sql);
    print_load("pgbench: bare single-row UPDATE ... RETURNING", &bare);
    println!(
        "  ratio: endpoint / its SQL in pgbench = {:.0}%",
        100.0 * ours.rate() / same_sql.rate()
    );
    println!(
        "  ratio: its SQL / bare single-row UPDATE = {:.0}%",
        100.0 * same_sql.rate() / bare.rate()
    );

    if std::env::var_os("BENCH_KEEP_SCRIPTS").is_some() {
        println!("\npgbench scripts kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    pool.close().await;
}
