//! The import benchmark, beside PostgreSQL doing the same work in the same
//! run, reported as a ratio. (Verification is measured with the rest of the
//! checkout path by `cargo bench --bench checkout`.)
//!
//!     cargo bench --bench records
//!
//! Knobs (environment): BENCH_RECORDS (1000000), DATABASE_URL (the server;
//! the benchmark uses its own database `offergate_bench`, dropped and
//! created anew).
//!
//! N generated student records through `offergate::import` (the code path
//! of `offergate import` and POST /v1/records/import), against PostgreSQL's
//! own COPY of the same rows, already hashed, into the same empty table.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::*;
use offergate::domain::blind::BlindIndexer;
use offergate::domain::identity::{Identity, RawIdentity};
use offergate::usecases::import::{Format, ImportOptions, Mode, OnError, import_records};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use uuid::Uuid;

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
        limits: Default::default(),
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

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n: usize = env_or("BENCH_RECORDS", 1_000_000);
    let database = "offergate_bench";
    let dir = std::env::temp_dir().join(format!("offergate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");

    let settings = settings();
    let indexer =
        BlindIndexer::from_hex(settings.secrets.blind_index_key.expose_secret()).expect("key");
    let pool = fresh_database(database).await;

    println!("offergate import benchmark: {n} records");
    println!("(offergate and PostgreSQL share this machine's cores)\n");

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
        "  ratio: offergate / COPY = {:.0}%",
        100.0 * import.copy.as_secs_f64() / import.ours.as_secs_f64()
    );

    let _ = std::fs::remove_dir_all(&dir);
    pool.close().await;
}
