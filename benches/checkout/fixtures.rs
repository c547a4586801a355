//! The rows the runs use up: offers, memberships and tokens, numbered so
//! that every run, over HTTP or in pgbench, takes fresh ones.

use offergate::domain::offer::{Discount, Offer, OfferStatus};
use offergate::signing::{ActiveKey, KeyRing, TokenClaims};
use offergate::store::offers;
use sqlx::PgPool;
use uuid::Uuid;

/// Numbers `first..first + count`: people, memberships or tokens of one run.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub first: i64,
    pub count: i64,
}

impl Range {
    pub fn end(&self) -> i64 {
        self.first + self.count
    }

    /// Number `at` of the range; a run that outgrows its range fails.
    pub fn at(&self, at: i64) -> i64 {
        assert!(
            at < self.count,
            "a run used more than its {} fresh rows: raise BENCH_RATE_CEILING",
            self.count
        );
        self.first + at
    }
}

/// Hands out ranges that never overlap, so a number names one person,
/// membership or token (and its attempt, redemption and keys) in the whole
/// benchmark.
pub struct Numbers {
    next: i64,
}

impl Numbers {
    pub fn new() -> Self {
        Numbers { next: 1 }
    }

    pub fn take(&mut self, count: i64) -> Range {
        let range = Range {
            first: self.next,
            count,
        };
        self.next += count;
        range
    }
}

/// The id of number n: 00000000-0000-0000-0000-<n in hex>.
pub fn uuid_of(n: i64) -> Uuid {
    Uuid::from_u128(n as u128)
}

/// The same id computed in SQL from an expression.
pub fn uuid_sql(n: &str) -> String {
    format!("lpad(to_hex(({n})::bigint), 32, '0')::uuid")
}

/// An active student offer, 10% off, tokens valid a day.
pub async fn offer(
    pool: &PgPool,
    title: &str,
    total_cap: Option<i32>,
    per_person_limit: Option<i32>,
) -> Uuid {
    offers::save(
        pool,
        &Offer {
            id: Uuid::now_v7(),
            title: title.into(),
            description: String::new(),
            communities: vec!["student".into()],
            subsegments: vec![],
            discount: Discount::Percent { percent_off: 10.0 },
            starts_at: None,
            ends_at: None,
            status: OfferStatus::Active,
            partner_id: None,
            total_cap,
            per_person_limit,
            token_ttl_secs: 86_400,
            reversal_returns_token: false,
        },
    )
    .await
    .expect("offer")
    .id
}

/// Live student memberships, membership n with the id `uuid_of(n)` and a
/// person of its own.
pub async fn memberships(pool: &PgPool, range: Range) {
    sqlx::query(
        "INSERT INTO memberships (id, person_key, community, subsegment, verified_at, expires_at)
         SELECT lpad(to_hex(n), 32, '0')::uuid, decode(lpad(to_hex(n), 32, '0'), 'hex'),
                'student', 'college', now(), now() + interval '1 year'
         FROM generate_series($1::bigint, $2::bigint - 1) AS n",
    )
    .bind(range.first)
    .bind(range.end())
    .execute(pool)
    .await
    .expect("memberships");
}

/// Issued tokens of `offer`, token n with the id `uuid_of(n)`, each held by
/// a person of its own, expiring in a day.
pub async fn tokens(pool: &PgPool, range: Range, offer: Uuid, kid: &str) {
    sqlx::query(
        "INSERT INTO tokens (id, offer_id, place_key, community, kid, expires_at)
         SELECT lpad(to_hex(n), 32, '0')::uuid, $3, decode(lpad(to_hex(n), 32, '0'), 'hex'),
                'student', $4, now() + interval '1 day'
         FROM generate_series($1::bigint, $2::bigint - 1) AS n",
    )
    .bind(range.first)
    .bind(range.end())
    .bind(offer)
    .bind(kid)
    .execute(pool)
    .await
    .expect("tokens");
}

/// The signed forms of the tokens of `range`, in order.
pub fn signed(ring: &KeyRing, signer: &ActiveKey, range: Range, offer: Uuid) -> Vec<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    (range.first..range.end())
        .map(|n| {
            signer
                .sign(&TokenClaims {
                    iss: ring.issuer.clone(),
                    aud: ring.audience.clone(),
                    sub: Uuid::nil().to_string(),
                    jti: uuid_of(n).to_string(),
                    iat: now,
                    nbf: now,
                    exp: now + 86_400,
                    offer_id: offer.to_string(),
                    community: "student".into(),
                })
                .expect("signed")
        })
        .collect()
}
