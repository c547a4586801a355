//! Malformed JSON bodies through offergate's JSON extractor, the checks of
//! two real handlers (offer creation, verification) and every middleware
//! layer, with no database.
//!
//! Input: byte 0 picks the route (bit 0: `/v1/verifications`, else
//! `/v1/offers`) and the Content-Type (bits 1-2: `application/json`, with
//! `; charset=utf-8`, `application/merge-patch+json`, or none); the rest is
//! the body.
//!
//! Every answer is a 2xx, or a 4xx that is `application/problem+json` with
//! `type`, `title`, `status` and `detail`; never a 5xx.

#![no_main]

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use offergate::config::ServerSettings;
use offergate::fuzzing::json_routes;
use offergate_fuzz::{communities, runtime};
use tower::ServiceExt;

/// Small enough that the fuzzer reaches it; the default is 64 KiB.
const BODY_LIMIT: usize = 2_048;

static ROUTES: LazyLock<Router> = LazyLock::new(|| {
    let server = ServerSettings {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        request_timeout_secs: 30,
        body_limit_bytes: BODY_LIMIT,
        shutdown_grace_secs: 1,
        import_timeout_secs: 30,
    };
    json_routes(communities(), &server)
});

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = runtime();
}

fuzz_target!(|data: &[u8]| {
    let Some((choice, body)) = data.split_first() else {
        return;
    };
    let path = if choice & 1 == 1 {
        "/v1/verifications"
    } else {
        "/v1/offers"
    };
    let content_type = match (choice >> 1) & 3 {
        0 => Some("application/json"),
        1 => Some("application/json; charset=utf-8"),
        2 => Some("application/merge-patch+json"),
        _ => None,
    };
    let mut request = Request::post(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body.to_vec())).expect("a request");
    let routes = ROUTES.clone();
    let (status, problem_json, answer) = RUNTIME.with(|rt| {
        rt.block_on(async {
            let response = routes
                .oneshot(request)
                .await
                .expect("routers are infallible");
            let status = response.status();
            let problem_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes() == b"application/problem+json");
            let answer = to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("an answer body");
            (status, problem_json, answer)
        })
    });
    if status.is_success() {
        return;
    }
    assert!(
        status.is_client_error(),
        "{status} for {path}: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        problem_json,
        "a {status} that is not application/problem+json"
    );
    let problem: serde_json::Value = serde_json::from_slice(&answer).expect("a problem is JSON");
    for member in ["type", "title", "detail"] {
        assert!(
            problem[member].as_str().is_some_and(|s| !s.is_empty()),
            "a problem without `{member}`: {problem}"
        );
    }
    assert_eq!(
        problem["status"].as_u64(),
        Some(u64::from(status.as_u16())),
        "{problem}"
    );
    if let Some(errors) = problem.get("errors") {
        let errors = errors.as_array().expect("errors is a list");
        assert!(!errors.is_empty());
        for error in errors {
            // A member named "" is named by its empty name.
            assert!(error["field"].is_string(), "{problem}");
            assert!(
                error["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{problem}"
            );
        }
    }
});
