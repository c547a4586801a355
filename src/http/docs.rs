//! `/openapi.json` and `/docs`. The page is rendered here from the same
//! document, so it needs nothing from the internet and cannot drift from it.

use std::fmt::Write;
use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use html_escape::encode_text as esc;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub struct Docs {
    json: String,
    html: String,
}

impl Docs {
    pub fn new(value: Value) -> Self {
        Docs {
            json: serde_json::to_string_pretty(&value).unwrap_or_default(),
            html: render(&value),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
}

/// This OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_json(Extension(docs): Extension<Arc<Docs>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        docs.json.clone(),
    )
}

/// A readable API reference, generated from the OpenAPI document.
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML page", content_type = "text/html")))]
async fn docs_page(Extension(docs): Extension<Arc<Docs>>) -> impl IntoResponse {
    (
        [(header::CONTENT_SECURITY_POLICY, docs_policy())],
        Html(docs.html.clone()),
    )
}

/// The docs page's policy: nothing from anywhere but its one inline style,
/// named by its hash; no scripts, no frames, no forms.
fn docs_policy() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A schema as a short type name, linking to its definition when it has one.
fn schema_label(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_label(items));
    }
    match schema.get("type") {
        Some(Value::String(kind)) => esc(kind).into_owned(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "object".to_owned(),
    }
}

fn render_content(out: &mut String, content: Option<&Value>) {
    let Some(Value::Object(content)) = content else {
        return;
    };
    for (media_type, media) in content {
        let schema = media.get("schema").map(schema_label).unwrap_or_default();
        let _ = write!(out, " <code>{}</code> {}", esc(media_type), schema);
    }
}

fn render_operation(out: &mut String, path: &str, method: &str, op: &Value) {
    let _ = write!(
        out,
        "<section class=op id=\"{m}-{p}\"><h3><span class=\"method {m}\">{M}</span> <code>{p}</code></h3>",
        m = method,
        M = method.to_uppercase(),
        p = esc(path)
    );
    let _ = write!(out, "<p><strong>{}</strong></p>", esc(text(op, "summary")));
    let description = text(op, "description");
    if !description.is_empty() {
        let _ = write!(out, "<p>{}</p>", esc(description));
    }
    if let Some(security) = op.get("security") {
        let roles: Vec<&str> = security
            .pointer("/0/api_key")
            .and_then(Value::as_array)
            .map(|roles| roles.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = write!(
            out,
            "<p class=auth>Needs <code>Authorization: Bearer &lt;key&gt;</code> of role {}.</p>",
            esc(&roles.join(" or "))
        );
    }
    if let Some(Value::Array(params)) = op.get("parameters") {
        out.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>",
        );
        for param in params {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(text(param, "name")),
                esc(text(param, "in")),
                param
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                esc(text(param, "description"))
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        out.push_str("<p>Request body:");
        render_content(out, body.get("content"));
        out.push_str("</p>");
    }
    if let Some(Value::Object(responses)) = op.get("responses") {
        out.push_str("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>");
        for (status, response) in responses {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>",
                esc(status),
                esc(text(response, "description"))
            );
            render_content(out, response.get("content"));
            out.push_str("</td></tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn render(doc: &Value) -> String {
    let info = doc.get("info").cloned().unwrap_or(Value::Null);
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} API reference</title>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\"><style>{STYLE}</style></head>\
         <body><header><h1>{title} <small>{version}</small></h1><p>{description}</p>\
         <p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a> (OpenAPI {openapi}).</p></header><main>",
        title = esc(text(&info, "title")),
        version = esc(text(&info, "version")),
        description = esc(text(&info, "description")),
        openapi = esc(text(doc, "openapi")),
    );
    out.push_str("<h2>Routes</h2>");
    if let Some(Value::Object(paths)) = doc.get("paths") {
        for (path, item) in paths {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    render_operation(&mut out, path, method, op);
                }
            }
        }
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(Value::Object(schemas)) = doc.pointer("/components/schemas") {
        for (name, schema) in schemas {
            let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
            let _ = write!(
                out,
                "<section class=schema id=\"schema-{n}\"><h3>{n}</h3><pre>{s}</pre></section>",
                n = esc(name),
                s = esc(&pretty)
            );
        }
    }
    out.push_str("</main></body></html>");
    out
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:0 auto;padding:1rem 2rem;color:#1d232a}\
h1 small{font-size:.5em;color:#667}h2{border-bottom:1px solid #ccd;margin-top:2.5rem}\
.op,.schema{border:1px solid #dde;border-radius:6px;padding:.25rem 1rem;margin:1rem 0}\
.method{display:inline-block;min-width:4.5em;text-align:center;border-radius:4px;color:#fff;font-size:.8em;padding:.1em .4em}\
.get{background:#2b6ca3}.post{background:#237032}.delete{background:#c92a2a}.put,.patch{background:#a85400}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;border-bottom:1px solid #eef;padding:.2rem .5rem;vertical-align:top}td{overflow-wrap:anywhere}\
pre{background:#f6f8fa;padding:.5rem;white-space:pre-wrap;overflow-wrap:anywhere}.auth{color:#a61e4d}code{font-size:.95em}\
@media (max-width:600px){body{padding:.5rem 1rem}}";
