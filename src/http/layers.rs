//! Middleware every route runs behind.

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::metrics::track_request;
use super::problem::{PROBLEM_JSON, problem_for_status, problem_response};
use crate::config::ServerSettings;

const IMPORT_PATH: &str = "/v1/records/import";

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a router in request ids, tracing, metrics, the problem+json
/// mapping, a deadline, panic recovery and a body limit.
pub fn with_layers(router: Router, server: &ServerSettings) -> Router {
    // Each `layer` wraps the ones before it: the last is the outermost.
    router
        .layer(DefaultBodyLimit::max(server.body_limit_bytes))
        .layer(middleware::from_fn(refuse_nul_in_path))
        .layer(CatchPanicLayer::custom(panic_as_problem))
        .layer(middleware::from_fn_with_state(
            Deadlines {
                request: Duration::from_secs(server.request_timeout_secs),
                import: Duration::from_secs(server.import_timeout_secs),
            },
            deadline,
        ))
        .layer(middleware::map_response(bare_errors_as_problems))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(track_request))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(
                    DefaultOnResponse::new()
                        .level(Level::INFO)
                        .latency_unit(LatencyUnit::Millis),
                )
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// No text column can store a NUL character, and no key or id holds one:
/// a path naming one is refused before any handler reads it.
async fn refuse_nul_in_path(request: Request, next: Next) -> Response {
    let path = request.uri().path().as_bytes();
    if path.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")) {
        return super::problem::ApiError::BadRequest(
            "The path must not contain the NUL character (%00).".into(),
        )
        .into_response();
    }
    next.run(request).await
}

#[derive(Clone, Copy)]
struct Deadlines {
    request: Duration,
    import: Duration,
}

/// Every request has a deadline; record imports, which stream large files,
/// have a longer one.
async fn deadline(State(deadlines): State<Deadlines>, request: Request, next: Next) -> Response {
    let limit = if request.uri().path() == IMPORT_PATH {
        deadlines.import
    } else {
        deadlines.request
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem_response(problem_for_status(StatusCode::SERVICE_UNAVAILABLE)),
    }
}

/// One span per request, named by the matched route (low cardinality), with
/// the request id. Headers are never recorded: they carry API keys.
fn request_span(request: &Request<Body>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {}", request.method(), route),
        method = %request.method(),
        route,
        request_id,
        api_key = tracing::field::Empty,
    )
}

/// What a scanner expects on every response: no MIME sniffing; a policy
/// that lets a JSON answer load nothing and be framed nowhere (the docs
/// page sets its own); and no caching of an answer to an authenticated
/// request, which may hold what only that key may see.
async fn security_headers(request: Request, next: Next) -> Response {
    let authenticated = request.headers().contains_key(header::AUTHORIZATION);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if authenticated {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// Routing misses, wrong methods, timeouts and layer rejections come out
/// of axum and tower with a bare status; give them a problem body too.
async fn bare_errors_as_problems(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    // The hosted page answers its own failures with a page.
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if is_problem || is_page {
        return response;
    }
    let (parts, _) = response.into_parts();
    let mut problem = problem_response(problem_for_status(status));
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            problem.headers_mut().insert(name, value.clone());
        }
    }
    problem
}

fn panic_as_problem(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned());
    tracing::error!(panic = %message, "request handler panicked");
    problem_response(problem_for_status(StatusCode::INTERNAL_SERVER_ERROR)).into_response()
}
