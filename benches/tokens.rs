//! The cost of signing and verifying one offer token (Ed25519), through the
//! key ring the service uses.
//!
//!     cargo bench --bench tokens
//!
//! Needs PostgreSQL (DATABASE_URL, as for the tests): the key ring keeps its
//! keys there; both figures are taken after the keys are cached.

mod common;

use common::fresh_database;
use criterion::{Criterion, criterion_group, criterion_main};
use offergate::signing::{KeyRing, TokenClaims};
use secrecy::ExposeSecret;

fn claims(ring: &KeyRing) -> TokenClaims {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    TokenClaims {
        iss: ring.issuer.clone(),
        aud: ring.audience.clone(),
        sub: uuid::Uuid::now_v7().to_string(),
        jti: uuid::Uuid::now_v7().to_string(),
        iat: now,
        nbf: now,
        exp: now + 900,
        offer_id: uuid::Uuid::now_v7().to_string(),
        community: "student".into(),
    }
}

fn tokens(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let settings = common::settings();
    let pool = runtime.block_on(fresh_database("offergate_bench_tokens"));
    let ring = KeyRing::new(
        pool,
        settings.secrets.key_encryption_key.expose_secret(),
        &settings.tokens.issuer,
        &settings.tokens.audience,
    )
    .expect("key ring");
    let signer = runtime.block_on(ring.signer()).expect("signing key");
    let claims = claims(&ring);
    let token = signer.sign(&claims).expect("signed");
    runtime
        .block_on(ring.verify(&token, false))
        .expect("verifies");

    c.bench_function("sign a token", |b| {
        b.iter(|| signer.sign(std::hint::black_box(&claims)))
    });
    c.bench_function("verify a token", |b| {
        b.to_async(&runtime)
            .iter(|| ring.verify(std::hint::black_box(&token), false))
    });
}

criterion_group!(benches, tokens);
criterion_main!(benches);
