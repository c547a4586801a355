use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::Arc;

use offergate::signing::{KeyError, KeyRing, TokenClaims};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, settings_from, spawn_app};

fn ring(app: &TestApp) -> KeyRing {
    let settings = settings_from(Default::default()).unwrap();
    KeyRing::new(
        app.db.clone(),
        settings.secrets.key_encryption_key.expose_secret(),
        &settings.tokens.issuer,
        &settings.tokens.audience,
    )
    .unwrap()
}

async fn issued(app: &TestApp) -> (crate::helpers::OfferSetup, Value, Value) {
    let s = app.offer_setup().await;
    let offer = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let token: Value = app
        .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    (s, offer, token)
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_token_is_an_eddsa_jwt_that_verifies_through_the_jwks() {
    let app = spawn_app().await;
    let (_, offer, token) = issued(&app).await;
    let token = token["token"].as_str().unwrap();

    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the JWKS holds the token's key");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["offergate-offers"]);
    validation.set_issuer(&["offergate"]);
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();

    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = verified.claims;
    assert_eq!(claims["offer_id"], offer["id"]);
    assert_eq!(claims["community"], "student");
    for claim in ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"] {
        assert!(!claims[claim].is_null(), "{claim}");
    }
    let text = claims.to_string().to_lowercase();
    assert!(
        !text.contains("ana") && !text.contains("lima"),
        "no personal data in {text}"
    );
}

fn forged(header: Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let (s, _, token) = issued(&app).await;
    let genuine = token["token"].as_str().unwrap();
    let claims = claims_of(genuine);
    let kid = jsonwebtoken::decode_header(genuine).unwrap().kid.unwrap();
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let signer = ring(&app).signer().await.unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };

    let mut hs256 = Header::new(Algorithm::HS256);
    hs256.kid = Some(kid.clone());
    let other_key = ed25519_key();
    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.kid = Some("0123456789abcdef".into());
    let attacks: Vec<(&str, String)> = vec![
        (
            "alg none",
            forged(
                json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &claims,
                b"",
            ),
        ),
        (
            "HS256 with the public key",
            jsonwebtoken::encode(&hs256, &claims, &EncodingKey::from_secret(&public)).unwrap(),
        ),
        (
            "unknown kid",
            jsonwebtoken::encode(&unknown_kid, &claims, &other_key).unwrap(),
        ),
        (
            "kid with SQL",
            forged(json!({"alg": "EdDSA", "kid": "' OR 1=1 --"}), &claims, b"x"),
        ),
        (
            "kid with a path",
            forged(
                json!({"alg": "EdDSA", "kid": "../../etc/passwd"}),
                &claims,
                b"x",
            ),
        ),
        ("tampered claims", {
            let parts: Vec<&str> = genuine.split('.').collect();
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(with(json!({"offer_id": "other"})).to_string()),
                parts[2]
            )
        }),
        (
            "not yet valid",
            signer.sign(&with(json!({"nbf": now + 3600}))).unwrap(),
        ),
        (
            "wrong audience",
            signer.sign(&with(json!({"aud": "someone-else"}))).unwrap(),
        ),
        (
            "wrong issuer",
            signer.sign(&with(json!({"iss": "evil"}))).unwrap(),
        ),
        (
            "string exp",
            signer
                .sign(&with(json!({"exp": (now + 3600).to_string()})))
                .unwrap(),
        ),
        (
            "string nbf",
            signer
                .sign(&with(json!({"nbf": (now - 10).to_string()})))
                .unwrap(),
        ),
        (
            "no exp",
            signer
                .sign(&{
                    let mut c = claims.clone();
                    c.as_object_mut().unwrap().remove("exp");
                    c
                })
                .unwrap(),
        ),
        ("garbage", "not.a.token".into()),
    ];

    for (attack, token) in attacks {
        let response = app.redeem(&s.checkout, attack, &token, "order-x").await;
        assert_eq!(response.status(), 401, "{attack}");
        assert_problem(response, 401, "invalid_token").await;
    }
    let expired = signer
        .sign(&with(
            json!({"exp": now - 60, "iat": now - 120, "nbf": now - 120}),
        ))
        .unwrap();
    assert_problem(
        app.redeem(&s.checkout, "expired", &expired, "o").await,
        410,
        "token_expired",
    )
    .await;
    // The genuine token is still good.
    assert_eq!(
        app.redeem(&s.checkout, "genuine", genuine, "order-1")
            .await
            .status(),
        201
    );
}

fn ed25519_key() -> EncodingKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes())
}

/// The kids the JWKS publishes, newest first.
async fn published_kids(app: &TestApp) -> Vec<String> {
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn rotation_keeps_old_keys_published_while_their_tokens_live() {
    let app = spawn_app().await;
    let (s, offer, old) = issued(&app).await;
    let old_token = old["token"].as_str().unwrap();
    let old_kid = jsonwebtoken::decode_header(old_token).unwrap().kid.unwrap();

    let new_kid = ring(&app).rotate().await.unwrap();
    // Processes pick up the new key within five seconds.
    tokio::time::sleep(std::time::Duration::from_millis(5_200)).await;
    let fresh: Value = app
        .token(&s.checkout, &s.membership_id, offer["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let kids = published_kids(&app).await;
    assert_eq!(
        jsonwebtoken::decode_header(fresh["token"].as_str().unwrap())
            .unwrap()
            .kid
            .unwrap(),
        new_kid
    );
    assert!(kids.contains(&old_kid) && kids.contains(&new_kid));
    assert_eq!(
        app.redeem(&s.checkout, "old", old_token, "order-old")
            .await
            .status(),
        201
    );

    sqlx::query("UPDATE tokens SET expires_at = now() - interval '1 second' WHERE kid = $1")
        .bind(&old_kid)
        .execute(&app.db)
        .await
        .unwrap();
    // A process serves the JWKS it read for five seconds.
    tokio::time::sleep(std::time::Duration::from_millis(5_200)).await;
    let kids = published_kids(&app).await;
    assert_eq!(kids, [new_kid]);
}

#[tokio::test]
async fn a_rotation_is_published_and_signs_at_once_on_its_own_process() {
    let app = spawn_app().await;
    let (_, _, token) = issued(&app).await;
    let old_kid = jsonwebtoken::decode_header(token["token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    let before = published_kids(&app).await;

    let new_kid = app.state.ring.rotate().await.unwrap();
    let after = published_kids(&app).await;
    let signer = app.state.ring.signer().await.unwrap();

    assert_eq!(before.len(), 1);
    assert_eq!(before[0], old_kid);
    assert_eq!(after, [new_kid.clone(), old_kid]);
    assert_eq!(signer.kid(), new_kid);
}

#[tokio::test]
async fn a_token_is_signed_again_byte_for_byte_by_its_key_even_once_retired() {
    let app = spawn_app().await;
    let (_, _, token) = issued(&app).await;
    let token = token["token"].as_str().unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    app.state.ring.rotate().await.unwrap();
    let claims: TokenClaims = serde_json::from_value(claims_of(token)).unwrap();

    // Another process's ring, which has unsealed nothing yet.
    let elsewhere = ring(&app);
    let signer = elsewhere.signer_for(&kid).await.unwrap();
    let again = elsewhere.signer_for(&kid).await.unwrap();

    assert_eq!(signer.kid(), kid);
    assert_eq!(signer.sign(&claims).unwrap(), token);
    assert!(Arc::ptr_eq(&signer, &again), "unsealed once");
}

#[tokio::test]
async fn an_unknown_kid_has_no_signer() {
    let app = spawn_app().await;
    issued(&app).await;
    let ring = ring(&app);

    for kid in ["0123456789abcdef", "' OR 1=1 --"] {
        let error = ring.signer_for(kid).await.err();
        assert!(
            matches!(&error, Some(KeyError::UnknownKid(named)) if named == kid),
            "{kid}: {error:?}"
        );
    }
}

#[tokio::test]
async fn validate_reports_the_state_without_consuming() {
    let app = spawn_app().await;
    let (s, offer, token) = issued(&app).await;
    let token = token["token"].as_str().unwrap();
    let validate = |key: String| {
        let app = &app;
        let token = token.to_owned();
        async move {
            let response = app
                .post_json(&key, "/v1/tokens/validate", json!({"token": token}))
                .await;
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (_, before) = validate(s.checkout.clone()).await;
    let (_, again) = validate(s.partner.clone()).await;
    app.redeem(&s.checkout, "k", token, "order-1").await;
    let (_, after) = validate(s.checkout.clone()).await;
    let other_partner = app.key(offergate::domain::api_key::Role::Partner).await;
    let (status, _) = validate(other_partner).await;

    assert_eq!(before["state"], "issued");
    assert_eq!(before["offer_id"], offer["id"]);
    assert_eq!(again["state"], "issued");
    assert_eq!(after["state"], "redeemed");
    assert_eq!(status, 401, "another partner's token is as good as unknown");
}

#[tokio::test]
async fn a_tokens_subject_is_its_own_and_a_replay_signs_the_same_token() {
    let app = spawn_app().await;
    let s = app.offer_setup().await;
    let flights = app
        .offer(&s.admin, json!({"partner_id": s.partner_id}))
        .await;
    let hotels = app.offer(&s.admin, json!({"title": "Hotels"})).await;
    let issue = |offer: &Value, key: &'static str| {
        let request = app
            .client
            .post(app.url("/v1/tokens"))
            .bearer_auth(&s.checkout)
            .header("idempotency-key", key)
            .json(&json!({"membership_id": s.membership_id, "offer_id": offer["id"]}));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    let for_flights = issue(&flights, "flights-1").await;
    let for_hotels = issue(&hotels, "hotels-1").await;
    let replayed = issue(&flights, "flights-1").await;
    let with_verification: Value = app
        .verify(
            &s.checkout,
            json!({"community": "student", "consent": true, "offer_id": hotels["id"],
                   "person": {"given_name": "Ana", "family_name": "Lima",
                              "birth_date": "2004-03-09"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let from_verification = with_verification["token"]["token"].as_str().unwrap();

    let subjects: Vec<String> = [&for_flights, &for_hotels, from_verification]
        .iter()
        .map(|t| claims_of(t)["sub"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(replayed, for_flights, "a replay is the very same token");
    for (n, sub) in subjects.iter().enumerate() {
        assert_ne!(sub, &s.membership_id);
        assert!(!sub.contains(&s.membership_id.replace('-', "")));
        assert_eq!(
            subjects.iter().filter(|other| *other == sub).count(),
            1,
            "subject {n} is shared"
        );
    }
    assert_eq!(
        with_verification["membership_id"], s.membership_id,
        "the checkout that verified still gets the membership"
    );
}
