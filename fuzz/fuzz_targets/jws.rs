//! Token (compact JWS) parsing and verification, with a fixed key ring of
//! one Ed25519 key: the checks `KeyRing::verify` makes once it has looked
//! a kid up.
//!
//! Input: byte 0 picks the mode; the rest is
//! - mode even: a token, as any text;
//! - mode odd: edits to a valid token signed at start, three bytes each:
//!   a position (two bytes, modulo the token's length + 1) and a byte XORed
//!   in there (0 at the end appends nothing; otherwise it appends the byte).
//!
//! Whatever the input: an answer, never a panic; and a token verifies only
//! when it is byte for byte the one signed.

#![no_main]

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::DecodingKey;
use libfuzzer_sys::fuzz_target;
use offergate::signing::{ActiveKey, TokenClaims, TokenError, TokenRules, UNKNOWN_KEY};

const KID: &str = "0123456789abcdef";
const ISSUER: &str = "https://offergate.example";
const AUDIENCE: &str = "offergate-checkout";

struct Ring {
    rules: TokenRules,
    public: DecodingKey,
    token: String,
}

static RING: LazyLock<Ring> = LazyLock::new(|| {
    let signing = SigningKey::from_bytes(&[7; 32]);
    let pkcs8 = signing.to_pkcs8_der().expect("a PKCS#8 key");
    let signer = ActiveKey::from_pkcs8(KID.to_owned(), pkcs8.as_bytes());
    // Fixed instants make the token fixed (Ed25519 signs deterministically),
    // so the corpus can hold it: issued in 2023, valid until 2100.
    let claims = TokenClaims {
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        sub: "c3ViamVjdC1vZi10b2tlbg".into(),
        jti: "0190f5d2-6d5e-7a3b-9c1d-2e3f4a5b6c7d".into(),
        iat: 1_700_000_000,
        nbf: 1_700_000_000,
        exp: 4_102_444_800,
        offer_id: "0190f5d2-0000-7000-8000-000000000001".into(),
        community: "student".into(),
    };
    let ring = Ring {
        rules: TokenRules::new(ISSUER, AUDIENCE),
        public: DecodingKey::from_ed_der(signing.verifying_key().as_bytes()),
        token: signer.sign(&claims).expect("a signed token"),
    };
    assert_eq!(verify(&ring, &ring.token, false).ok(), Some(claims));
    ring
});

/// `KeyRing::verify` with a ring of one key and nothing revoked.
fn verify(ring: &Ring, token: &str, allow_expired: bool) -> Result<TokenClaims, TokenError> {
    let kid = ring.rules.kid_of(token)?;
    if kid != KID {
        return Err(TokenError::Invalid(UNKNOWN_KEY.into()));
    }
    ring.rules.claims(token, &ring.public, allow_expired)
}

fuzz_target!(|data: &[u8]| {
    let ring = &*RING;
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    let token: Vec<u8> = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut token = ring.token.as_bytes().to_vec();
        for edit in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % (token.len() + 1);
            match token.get_mut(at) {
                Some(byte) => *byte ^= edit[2],
                None if edit[2] != 0 => token.push(edit[2]),
                None => {}
            }
        }
        token
    };
    let Ok(token) = std::str::from_utf8(&token) else {
        return;
    };
    for allow_expired in [false, true] {
        if verify(ring, token, allow_expired).is_ok() {
            assert_eq!(token, ring.token, "a token that was not signed verified");
        }
    }
});
