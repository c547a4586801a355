//! The hosted verification page, `/verify/{secret}`: rendered on the
//! server in English, French or Russian, usable without JavaScript, loading
//! nothing from another origin. Every form carries a token bound to a
//! cookie of this browser and to the session (CSRF); every response
//! carries a strict Content-Security-Policy.

pub mod i18n;
pub mod settings;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde::Deserialize;
use time::Date;

use super::AppState;
use super::client_address::ClientAddress;
use crate::domain::community::Community;
use crate::domain::identity::{IdentityField, RawIdentity};
use crate::domain::session::{BrandColour, Locale, ReturnUrl};
use crate::store::sessions::SessionRow;
use crate::usecases::sessions::{self, Attempt, Rules, Status, Submitted};
use crate::usecases::verify::VerifyError;
use i18n::{Arg, Tr};
use settings::HostedSettings;
use view::{Closed, FormState};

const CSRF_COOKIE: &str = "offergate_csrf";

/// The page's settings, ready to serve.
pub struct Hosted {
    pub rules: Rules,
    public_url: Option<String>,
    /// Without `public_url`, whether the origin a request reached may stand
    /// in for it (development only: a Host header is the caller's to write).
    host_fallback: bool,
    brand: String,
    css: String,
    logo: Option<(Vec<u8>, &'static str)>,
}

impl Hosted {
    pub fn new(settings: &HostedSettings, production: bool) -> anyhow::Result<Self> {
        let colour = BrandColour::parse(&settings.brand_colour).map_err(anyhow::Error::msg)?;
        let logo = match settings.logo() {
            Some(path) => {
                let kind = match path.extension().and_then(|e| e.to_str()) {
                    Some("svg") => "image/svg+xml",
                    Some("webp") => "image/webp",
                    _ => "image/png",
                };
                Some((std::fs::read(&path)?, kind))
            }
            None => None,
        };
        Ok(Hosted {
            rules: Rules {
                return_origins: settings.origins(),
                ttl: std::time::Duration::from_secs(settings.session_ttl_secs),
                max_attempts: settings.max_attempts,
            },
            public_url: (!settings.public_url.is_empty())
                .then(|| settings.public_url.trim_end_matches('/').to_owned()),
            host_fallback: !production,
            brand: settings.brand_name.trim().to_owned(),
            css: include_str!("../../../assets/verify.css")
                .replace("BRAND_COLOUR", colour.as_str()),
            logo,
        })
    }

    /// The page's origin: the configured one, or in development the one
    /// this request reached; `None` in production without `public_url`.
    pub fn public_origin(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.clone());
        }
        if !self.host_fallback {
            return None;
        }
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .map(|host| format!("http://{host}"))
    }

    fn secure_cookies(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/verify/{secret}", get(show).post(submit))
        .route("/assets/verify.css", get(stylesheet))
        .route("/assets/logo", get(logo))
}

async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        state.hosted.css.clone(),
    )
        .into_response()
}

async fn logo(State(state): State<AppState>) -> Response {
    match &state.hosted.logo {
        Some((bytes, kind)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "public, max-age=3600"),
                // An SVG opened on its own runs no script and loads nothing.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `lang` and `community` from the query string, whatever else it holds.
struct PageQuery {
    lang: Option<String>,
    community: Option<String>,
}

/// The form as the browser posts it; unknown fields are ignored.
#[derive(Deserialize, Default)]
struct PageForm {
    csrf: Option<String>,
    lang: Option<String>,
    community: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    email: Option<String>,
    license_number: Option<String>,
    organization: Option<String>,
    birth_day: Option<String>,
    birth_month: Option<String>,
    birth_year: Option<String>,
    consent: Option<String>,
}

/// What every page of one request knows.
struct Context {
    tr: Tr,
    session: SessionRow,
    path: String,
    return_url: Option<ReturnUrl>,
    csrf_cookie: String,
    new_cookie: bool,
}

async fn show(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    Query(mut query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let query = PageQuery {
        lang: query.remove("lang"),
        community: query.remove("community"),
    };
    let Some(session) = load(&state, &secret).await else {
        return unknown(&state, &headers, query.lang.as_deref());
    };
    let mut ctx = context(session, &secret, query.lang.as_deref(), &headers, &jar);
    let response = match Status::of(&ctx.session) {
        Status::Open => {
            match chosen_community(&state, &ctx.session, query.community.as_deref()).await {
                Some(community) => {
                    let form = FormState::empty();
                    view::form(&state, &ctx, &community, form, StatusCode::OK)
                }
                None => render_choice(&state, &ctx, query.community.is_some()).await,
            }
        }
        _ => closed(&state, &ctx),
    };
    with_cookie(&state, &mut ctx, jar, response)
}

async fn submit(
    State(state): State<AppState>,
    Path(secret): Path<String>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    let form: PageForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(session) = load(&state, &secret).await else {
        return unknown(&state, &headers, form.lang.as_deref());
    };
    let mut ctx = context(session, &secret, form.lang.as_deref(), &headers, &jar);
    if ctx.new_cookie
        || !view::csrf_matches(&state, &ctx, form.csrf.as_deref())
        || !same_origin(&state, &headers)
    {
        let response = view::message(&state, &ctx, Closed::Csrf, StatusCode::FORBIDDEN);
        return with_cookie(&state, &mut ctx, jar, response);
    }
    if Status::of(&ctx.session) != Status::Open {
        let response = closed(&state, &ctx);
        return with_cookie(&state, &mut ctx, jar, response);
    }
    let community = match chosen_community(&state, &ctx.session, form.community.as_deref()).await {
        Some(community) => community,
        None => {
            let response = render_choice(&state, &ctx, true).await;
            return with_cookie(&state, &mut ctx, jar, response);
        }
    };
    let (person, mut form_state) = read_form(&community, &form);
    if !form_state.errors.is_empty() {
        let response = view::form(
            &state,
            &ctx,
            &community,
            form_state,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
        return with_cookie(&state, &mut ctx, jar, response);
    }
    let attempt = Attempt {
        secret: &secret,
        community: &community,
        person,
        consent: true,
        client_address: address,
    };
    let outcome = sessions::submit(
        &state.db,
        &state.ring,
        &state.indexer,
        &state.limits,
        attempt,
    )
    .await;
    let response = match outcome {
        Ok(Submitted::Verified(session)) => {
            let target =
                ReturnUrl::stored(&session.return_url).map(|url| url.with_session(session.id));
            match target {
                Some(target) => Redirect::to(&target).into_response(),
                None => view::internal_error(&ctx),
            }
        }
        Ok(Submitted::NotVerified(session)) => {
            ctx.session = session;
            if Status::of(&ctx.session) == Status::Open {
                form_state.notice = Some(view::not_verified_notice(&ctx));
                view::form(&state, &ctx, &community, form_state, StatusCode::OK)
            } else {
                closed(&state, &ctx)
            }
        }
        Ok(Submitted::Invalid(errors)) => {
            form_state.add_domain_errors(errors);
            view::form(
                &state,
                &ctx,
                &community,
                form_state,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Ok(Submitted::RateLimited { retry_after_secs }) => {
            let minutes = retry_after_secs.div_ceil(60).max(1) as i64;
            form_state.notice = Some(view::Notice {
                id: "rate-limited",
                title: ctx.tr.t("rate-limited-title"),
                lines: vec![
                    ctx.tr
                        .t_with("rate-limited-body", &[("minutes", Arg::Number(minutes))]),
                ],
            });
            let mut response = view::form(
                &state,
                &ctx,
                &community,
                form_state,
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Ok(Submitted::Closed(session)) => {
            ctx.session = session;
            closed(&state, &ctx)
        }
        Ok(Submitted::Unknown) => unknown(&state, &headers, Some(ctx.tr.lang())),
        Err(error) => {
            let unavailable =
                matches!(&error, VerifyError::Database(e) if crate::db::unavailable(e).is_some());
            tracing::error!(error = %error, "a hosted verification attempt failed");
            if unavailable {
                view::unavailable(&ctx)
            } else {
                view::internal_error(&ctx)
            }
        }
    };
    with_cookie(&state, &mut ctx, jar, response)
}

async fn load(state: &AppState, secret: &str) -> Option<SessionRow> {
    if !sessions::looks_like_secret(secret) {
        return None;
    }
    match crate::store::sessions::by_secret(&state.db, &sessions::secret_hash(secret)).await {
        Ok(row) => row,
        Err(error) => {
            tracing::error!(error = %error, "loading a verification session");
            None
        }
    }
}

fn context(
    session: SessionRow,
    secret: &str,
    asked: Option<&str>,
    headers: &HeaderMap,
    jar: &CookieJar,
) -> Context {
    let locale = pick_locale(asked, session.locale.as_deref(), headers);
    let (csrf_cookie, new_cookie) = match jar.get(CSRF_COOKIE).map(|c| c.value().to_owned()) {
        Some(value) if value.len() == 43 => (value, false),
        _ => {
            let bytes: [u8; 32] = rand::rng().random();
            (URL_SAFE_NO_PAD.encode(bytes), true)
        }
    };
    Context {
        tr: Tr { locale },
        return_url: ReturnUrl::stored(&session.return_url),
        session,
        path: format!("/verify/{secret}"),
        csrf_cookie,
        new_cookie,
    }
}

fn pick_locale(asked: Option<&str>, session: Option<&str>, headers: &HeaderMap) -> Locale {
    asked
        .and_then(|l| l.parse().ok())
        .or_else(|| session.and_then(|l| l.parse().ok()))
        .unwrap_or_else(|| {
            Locale::negotiate(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(""),
            )
        })
}

/// A form post from another origin is refused. An absent or opaque
/// (`null`) `Origin` (an old browser, a privacy setting) is let through to
/// the token check, which alone suffices: the token is bound to an
/// HttpOnly, SameSite=Strict cookie no other site can send or read.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => state
            .hosted
            .public_origin(headers)
            .is_some_and(|ours| origin == ours),
    }
}

/// The community to verify: the session's, the only one its offer has,
/// or the shopper's choice among the offer's. `Ok(None)`: a choice is
/// still to be made.
async fn chosen_community(
    state: &AppState,
    session: &SessionRow,
    chosen: Option<&str>,
) -> Option<Arc<Community>> {
    let key = match (&session.community, session.offer_id) {
        (Some(key), _) => Some(key.clone()),
        (None, Some(offer_id)) => {
            let offer = crate::store::offers::get(&state.db, offer_id)
                .await
                .ok()
                .flatten();
            let communities = offer.map(|o| o.communities).unwrap_or_default();
            match (communities.as_slice(), chosen) {
                ([only], _) => Some(only.clone()),
                (_, Some(chosen)) if communities.iter().any(|c| c == chosen) => {
                    Some(chosen.to_owned())
                }
                _ => None,
            }
        }
        (None, None) => None,
    };
    state.community(&key?).await.ok().flatten()
}

/// The identity the form holds, and what is missing or malformed in it.
fn read_form(community: &Community, form: &PageForm) -> (RawIdentity, FormState) {
    let mut state = FormState::from_form(form);
    let text = |value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let birth_date = if community
        .required_fields
        .contains(&IdentityField::BirthDate)
    {
        let part = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .and_then(|p| p.parse::<u16>().ok())
        };
        let date = match (
            part(&form.birth_year),
            part(&form.birth_month),
            part(&form.birth_day),
        ) {
            (Some(year), Some(month), Some(day)) if (1900..=9999).contains(&year) => {
                let month = u8::try_from(month)
                    .ok()
                    .and_then(|m| time::Month::try_from(m).ok());
                let day = u8::try_from(day).ok();
                month
                    .zip(day)
                    .and_then(|(m, d)| Date::from_calendar_date(i32::from(year), m, d).ok())
                    .filter(|d| *d <= time::OffsetDateTime::now_utc().date())
            }
            _ => None,
        };
        match date {
            Some(date) => Some(format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )),
            None => {
                state.error("birth_date");
                None
            }
        }
    } else {
        None
    };
    for field in &community.required_fields {
        let value = match field {
            IdentityField::GivenName => &form.given_name,
            IdentityField::FamilyName => &form.family_name,
            IdentityField::Email => &form.email,
            IdentityField::LicenseNumber => &form.license_number,
            IdentityField::Organization => &form.organization,
            IdentityField::BirthDate => continue,
        };
        if text(value).is_none() {
            state.error(field.as_str());
        }
    }
    if form.consent.as_deref() != Some("yes") {
        state.error("consent");
    }
    let wants = |field| community.required_fields.contains(&field);
    let person = RawIdentity {
        email: text(&form.email).filter(|_| wants(IdentityField::Email)),
        given_name: text(&form.given_name).filter(|_| wants(IdentityField::GivenName)),
        family_name: text(&form.family_name).filter(|_| wants(IdentityField::FamilyName)),
        birth_date,
        organization: text(&form.organization).filter(|_| wants(IdentityField::Organization)),
        license_number: text(&form.license_number).filter(|_| wants(IdentityField::LicenseNumber)),
    };
    // The verification's own checks too (an e-mail's form, a name's
    // length), so that every fault shows at once.
    let request = crate::usecases::verify::Request {
        subsegment: None,
        person,
        consent: true,
        customer_ref: None,
        customer_ref_ix: None,
        offer_id: None,
        idempotency: None,
    };
    if let Err(errors) = crate::usecases::verify::check(community, &request) {
        state.add_domain_errors(errors);
    }
    (request.person, state)
}

async fn render_choice(state: &AppState, ctx: &Context, with_error: bool) -> Response {
    let offer = match ctx.session.offer_id {
        Some(id) => crate::store::offers::get(&state.db, id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let mut options = Vec::new();
    for key in offer.map(|o| o.communities).unwrap_or_default() {
        if let Ok(Some(community)) = state.community(&key).await {
            options.push(view::Choice {
                label: capitalised(&ctx.tr.community(&community.key, &community.display_name)),
                key: community.key.clone(),
            });
        }
    }
    view::choice(state, ctx, options, with_error)
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The page of a session that takes no more attempts.
fn closed(state: &AppState, ctx: &Context) -> Response {
    match Status::of(&ctx.session) {
        Status::Verified => view::message(state, ctx, Closed::Verified, StatusCode::OK),
        Status::NotVerified => view::message(state, ctx, Closed::Exhausted, StatusCode::OK),
        Status::Canceled => view::message(state, ctx, Closed::Canceled, StatusCode::GONE),
        Status::Expired | Status::Open => {
            view::message(state, ctx, Closed::Expired, StatusCode::GONE)
        }
    }
}

fn unknown(state: &AppState, headers: &HeaderMap, asked: Option<&str>) -> Response {
    let tr = Tr {
        locale: pick_locale(asked, None, headers),
    };
    view::unknown(state, tr)
}

fn with_cookie(
    state: &AppState,
    ctx: &mut Context,
    jar: CookieJar,
    response: Response,
) -> Response {
    if !ctx.new_cookie {
        return response;
    }
    let cookie = Cookie::build((CSRF_COOKIE, ctx.csrf_cookie.clone()))
        .path("/verify/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.hosted.secure_cookies())
        .build();
    (jar.add(cookie), response).into_response()
}
