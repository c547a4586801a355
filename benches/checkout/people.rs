//! The benchmark's consumers: person n as every load makes them (verify.lua
//! makes the same people), their records on the roster, and the hashed
//! arguments pgbench passes when it verifies them.

use offergate::domain::blind::BlindIndexer;
use offergate::domain::identity::{Identity, RawIdentity};
use sqlx::PgPool;
use uuid::Uuid;

use crate::fixtures::Range;

/// Rows written per statement while filling the tables.
const BATCH: i64 = 20_000;

pub fn raw(n: i64) -> RawIdentity {
    RawIdentity {
        email: Some(format!("p{n}@school{}.example", n % 500)),
        given_name: Some(format!("Given{n}")),
        family_name: Some(format!("Family{}", n % 5000)),
        birth_date: Some(format!(
            "{:04}-{:02}-{:02}",
            1985 + n % 20,
            1 + n % 12,
            1 + n % 28
        )),
        ..Default::default()
    }
}

/// Each person's own address, so the per-address limit is the person's.
pub fn client_ip(n: i64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// The body of POST /v1/verifications for person n, with an offer's token
/// asked for when `offer` is given.
pub fn verification_body(n: i64, offer: Option<Uuid>) -> String {
    let person = raw(n);
    let mut body = serde_json::json!({
        "community": "student",
        "person": {
            "email": person.email,
            "given_name": person.given_name,
            "family_name": person.family_name,
            "birth_date": person.birth_date,
        },
        "consent": true,
        "client_ip": client_ip(n),
    });
    if let Some(offer) = offer {
        body["offer_id"] = offer.to_string().into();
    }
    body.to_string()
}

fn identity(n: i64) -> Identity {
    Identity::parse(&raw(n)).expect("a generated person is valid")
}

/// Puts the people of `ranges` on the student roster, each with a record
/// valid for a year.
pub async fn enrol(pool: &PgPool, indexer: &BlindIndexer, ranges: &[Range]) {
    let import = Uuid::now_v7();
    for range in ranges {
        for first in (range.first..range.end()).step_by(BATCH as usize) {
            let people: Vec<i64> = (first..(first + BATCH).min(range.end())).collect();
            let mut emails = Vec::with_capacity(people.len());
            let mut names = Vec::with_capacity(people.len());
            let mut persons = Vec::with_capacity(people.len());
            for n in &people {
                let identity = identity(*n);
                let keys = indexer.match_keys(&identity);
                emails.push(keys.email.expect("an e-mail").to_vec());
                names.push(keys.name_dob.expect("a name and birth date").to_vec());
                persons.push(indexer.person_key(&identity).expect("a person").to_vec());
            }
            sqlx::query(
                "INSERT INTO verification_records (source, external_id, community, subsegment,
                     organization, email_ix, name_dob_ix, person_key, valid_until, last_import,
                     canon_version)
                 SELECT 'bench', 's' || n, 'student', 'college', 'University ' || n % 500,
                        e, d, p, now() + interval '1 year', $5, $6
                 FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[]) AS r(n, e, d, p)",
            )
            .bind(&people)
            .bind(&emails)
            .bind(&names)
            .bind(&persons)
            .bind(import)
            .bind(offergate::domain::identity::CANON_VERSION)
            .execute(pool)
            .await
            .expect("records");
        }
    }
}

/// The table pgbench takes person n's hashed arguments from, as the server
/// computes them from the request: the match keys, the person key and the
/// rate-limit subjects (e-mail, name pair, client address, API key).
pub async fn hashed_arguments(
    pool: &PgPool,
    indexer: &BlindIndexer,
    api_key_id: &str,
    ranges: &[Range],
) {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_people (
             n bigint PRIMARY KEY, email_ix bytea NOT NULL, name_dob_ix bytea NOT NULL,
             person_key bytea NOT NULL, subjects bytea[] NOT NULL)",
    )
    .execute(pool)
    .await
    .expect("bench_people");
    let api_key_subject = indexer.index("limit:api-key", &[api_key_id]).to_vec();
    for range in ranges {
        for first in (range.first..range.end()).step_by(BATCH as usize) {
            let people: Vec<i64> = (first..(first + BATCH).min(range.end())).collect();
            let mut columns: [Vec<Vec<u8>>; 6] = Default::default();
            for n in &people {
                let identity = identity(*n);
                let keys = indexer.match_keys(&identity);
                let subjects = indexer.identity_subjects(&identity);
                assert_eq!(subjects.len(), 2, "an e-mail and a name pair");
                columns[0].push(keys.email.expect("an e-mail").to_vec());
                columns[1].push(keys.name_dob.expect("a name and birth date").to_vec());
                columns[2].push(indexer.person_key(&identity).expect("a person").to_vec());
                columns[3].push(subjects[0].1.to_vec());
                columns[4].push(subjects[1].1.to_vec());
                columns[5].push(indexer.index("limit:address", &[&client_ip(*n)]).to_vec());
            }
            let [
                emails,
                names,
                persons,
                email_subjects,
                name_subjects,
                address_subjects,
            ] = columns;
            sqlx::query(
                "INSERT INTO bench_people (n, email_ix, name_dob_ix, person_key, subjects)
                 SELECT n, e, d, p, ARRAY[se, sn, sa, $8]
                 FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bytea[],
                             $6::bytea[], $7::bytea[]) AS r(n, e, d, p, se, sn, sa)",
            )
            .bind(&people)
            .bind(&emails)
            .bind(&names)
            .bind(&persons)
            .bind(&email_subjects)
            .bind(&name_subjects)
            .bind(&address_subjects)
            .bind(&api_key_subject)
            .execute(pool)
            .await
            .expect("bench_people rows");
        }
    }
}
