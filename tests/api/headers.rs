//! The headers a scanner expects, and the Authorization scheme read as
//! HTTP says: case-insensitively.

use base64::Engine;
use offergate::domain::api_key::Role;
use sha2::Digest;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_answer_forbids_sniffing_and_loading_anything() {
    let app = spawn_app().await;

    let health = app.get("/healthz").await;

    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        health.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert!(
        !health.headers().contains_key("cache-control"),
        "an anonymous answer may be cached"
    );
}

#[tokio::test]
async fn an_answer_to_an_authenticated_request_is_not_stored() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    let listed = app.get_with_key("/v1/communities", &admin).await;
    let refused = app.get_with_key("/v1/communities", "og_bad").await;

    assert_eq!(listed.status(), 200);
    assert_eq!(listed.headers()["cache-control"], "no-store");
    assert_eq!(listed.headers()["x-content-type-options"], "nosniff");
    assert_eq!(refused.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn the_docs_page_allows_only_its_own_inline_style() {
    let app = spawn_app().await;

    let docs = app.get("/docs").await;

    assert_eq!(docs.status(), 200);
    let policy = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let page = docs.text().await.unwrap();
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .unwrap();
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style));
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(
        policy.contains(&format!("style-src 'sha256-{hash}'")),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    assert!(!page.contains("<script"), "the page runs no script");
}

#[tokio::test]
async fn the_authorization_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let admin = app.key(Role::Admin).await;

    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let answer = app
            .client
            .get(app.url("/v1/communities"))
            .header("authorization", format!("{scheme} {admin}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{scheme}");
    }
    let basic = app
        .client
        .get(app.url("/v1/communities"))
        .header("authorization", format!("Basic {admin}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
}
