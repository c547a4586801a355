//! pgbench scripts: the statements each request runs, taken from the store
//! so they cannot drift from the service, with the values a request
//! passes. Every transaction takes fresh rows: client c's i-th transaction
//! uses number `first + c * per_client + i` of its run's range.

use std::path::Path;

use offergate::domain::identity::CANON_VERSION;
use offergate::store::{redemptions, tokens, verifications};
use uuid::Uuid;

use crate::common::{PgbenchScript, literal_bytes, with_literals};
use crate::fixtures::{Range, uuid_sql};

/// A place-key secret for the benchmark's own database.
const PLACE_SECRET: &str =
    "'\\x0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'::bytea";

/// What every script shares: the checkout's API key, the signing key, the
/// request fingerprint (a stand-in: its value costs nothing) and the
/// verification settings of the server under test.
pub struct Context {
    pub api_key_id: String,
    pub kid: String,
    pub request_hash: Vec<u8>,
    /// Failures allowed per identity component, client address and API key.
    pub limits: [i32; 3],
    pub window_secs: f64,
    /// The student community's sub-statuses and their re-verification
    /// periods in days, and its default period.
    pub periods: (Vec<String>, Vec<Option<i32>>, Option<i32>),
    pub concurrency: usize,
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn int_or_null(value: Option<i32>) -> String {
    value.map_or_else(|| "NULL::integer".to_owned(), |v| v.to_string())
}

impl Context {
    fn per_client(&self, range: Range) -> i64 {
        range.count / self.concurrency as i64
    }

    /// The script's head: `:n` is this transaction's number.
    fn numbered(&self, range: Range) -> String {
        format!(
            "\\set n {} + :client_id * {} + :i\n\\set i :i + 1\n",
            range.first,
            self.per_client(range)
        )
    }

    fn key(&self) -> String {
        quoted(&self.api_key_id)
    }

    fn hash(&self) -> String {
        literal_bytes(&self.request_hash)
    }

    /// `verify_consumer` for person `:n`, whose hashed arguments come from
    /// `bench_people` (one primary-key lookup in the same statement);
    /// with `offer`, its token is number `:n` too.
    fn verify(&self, key_prefix: &str, offer: Option<Uuid>) -> String {
        let (subsegments, days, default_days) = &self.periods;
        let [per_identity, per_address, per_key] = self.limits;
        let (offer_id, token_id, kid) = match offer {
            Some(offer) => (
                format!("'{offer}'::uuid"),
                uuid_sql(":n"),
                quoted(&self.kid),
            ),
            None => (
                "NULL::uuid".into(),
                "NULL::uuid".into(),
                "NULL::text".into(),
            ),
        };
        let call = with_literals(
            verifications::VERIFY,
            &[
                self.key(),
                format!("('{key_prefix}' || :n)"),
                self.hash(),
                uuid_sql(":n"),
                "'student'".into(),
                "NULL::text".into(),
                "p.email_ix".into(),
                "p.name_dob_ix".into(),
                "NULL::bytea".into(),
                "NULL::bytea[]".into(),
                "p.subjects".into(),
                format!("ARRAY[{per_identity}, {per_identity}, {per_address}, {per_key}]"),
                "ARRAY[true, true, false, false]".into(),
                format!("{}::float8", self.window_secs),
                "ARRAY[2592000, 5, 60, 86400]::float8[]".into(),
                "true".into(),
                "false".into(),
                "p.person_key".into(),
                "NULL::bytea".into(),
                format!(
                    "ARRAY[{}]::text[]",
                    subsegments
                        .iter()
                        .map(|s| quoted(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!(
                    "ARRAY[{}]::integer[]",
                    days.iter()
                        .map(|d| int_or_null(*d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                int_or_null(*default_days),
                offer_id,
                token_id,
                kid,
                PLACE_SECRET.into(),
                format!("{CANON_VERSION}::smallint"),
            ],
        );
        let from = "FROM verify_consumer(";
        assert!(call.contains(from), "VERIFY calls verify_consumer");
        format!(
            "{} WHERE p.n = :n",
            call.replacen(from, "FROM bench_people AS p, verify_consumer(", 1)
        )
    }

    fn redeem(&self, key_prefix: &str) -> String {
        with_literals(
            redemptions::REDEEM,
            &[
                self.key(),
                format!("('{key_prefix}' || :n)"),
                self.hash(),
                uuid_sql(":n"),
                uuid_sql(":n"),
                "('order-' || :n)".into(),
                "12900::bigint".into(),
            ],
        )
    }

    /// POST /v1/verifications without an offer: one statement.
    pub fn verification(&self, dir: &Path, people: Range) -> PgbenchScript {
        let body = format!("{}{};\n", self.numbered(people), self.verify("pgv-", None));
        write(dir, "verification", body)
    }

    /// POST /v1/tokens for membership `:n`: one statement.
    pub fn issuance(&self, dir: &Path, offer: Uuid, memberships: Range) -> PgbenchScript {
        let call = with_literals(
            tokens::ISSUE,
            &[
                self.key(),
                "('pgi-' || :n)".into(),
                self.hash(),
                uuid_sql(":n"),
                format!("'{offer}'::uuid"),
                uuid_sql(":n"),
                quoted(&self.kid),
                PLACE_SECRET.into(),
            ],
        );
        write(
            dir,
            "issuance",
            format!("{}{call};\n", self.numbered(memberships)),
        )
    }

    /// POST /v1/redemptions of token `:n`: one statement.
    pub fn redemption(&self, dir: &Path, range: Range) -> PgbenchScript {
        let body = format!("{}{};\n", self.numbered(range), self.redeem("pgr-"));
        write(dir, "redemption", body)
    }

    /// The journey: POST /v1/verifications with an offer (verification and
    /// the token in one statement), then POST /v1/redemptions of the token
    /// it issued; each commits on its own, as each request does.
    pub fn journey(&self, dir: &Path, offer: Uuid, people: Range) -> PgbenchScript {
        let body = format!(
            "{}{};\n{};\n",
            self.numbered(people),
            self.verify("pgjv-", Some(offer)),
            self.redeem("pgjr-"),
        );
        write(dir, "journey", body)
    }

    /// The bare single-row UPDATE ... RETURNING, on fresh token rows.
    pub fn bare_update(&self, dir: &Path, range: Range, tag: &str) -> PgbenchScript {
        let body = format!(
            "{}UPDATE tokens SET state = 'redeemed' WHERE id = {} AND state = 'issued' RETURNING id;\n",
            self.numbered(range),
            uuid_sql(":n")
        );
        write(dir, &format!("bare-{tag}"), body)
    }

    /// How many transactions each pgbench client may run in a range.
    pub fn budget(&self, range: Range) -> u64 {
        self.per_client(range) as u64
    }
}

fn write(dir: &Path, name: &str, body: String) -> PgbenchScript {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, body).expect("script");
    PgbenchScript { path }
}
