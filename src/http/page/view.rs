//! The page's templates and what they are filled with; every response the
//! page sends leaves through `html`, with its security headers.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::i18n::{Arg, Tr};
use super::{Context, PageForm};
use crate::domain::Invalid;
use crate::domain::community::Community;
use crate::domain::identity::IdentityField;
use crate::domain::session::Locale;
use crate::http::AppState;

/// What every page shows around its content.
pub struct Chrome {
    pub tr: Tr,
    pub title: String,
    pub brand: String,
    pub has_logo: bool,
    pub languages: Vec<LanguageLink>,
}

pub struct LanguageLink {
    pub code: &'static str,
    pub name: &'static str,
    pub href: String,
    pub current: bool,
}

fn chrome(state: &AppState, tr: Tr, title_id: &str, error: bool, extra_query: &str) -> Chrome {
    let title = if error {
        format!("{} {}", tr.t("error-prefix"), tr.t(title_id))
    } else {
        tr.t(title_id)
    };
    Chrome {
        tr,
        title: format!("{title} – {}", state.hosted.brand),
        brand: state.hosted.brand.clone(),
        has_logo: state.hosted.logo.is_some(),
        languages: Locale::ALL
            .into_iter()
            .map(|locale| LanguageLink {
                code: locale.as_str(),
                name: match locale {
                    Locale::En => "English",
                    Locale::Fr => "Français",
                    Locale::Ru => "Русский",
                },
                href: format!("?lang={}{extra_query}", locale.as_str()),
                current: locale == tr.locale,
            })
            .collect(),
    }
}

pub struct Notice {
    pub id: &'static str,
    pub title: String,
    pub lines: Vec<String>,
}

pub struct ErrorLink {
    pub target: String,
    pub text: String,
}

pub struct Field {
    pub name: &'static str,
    pub label: String,
    pub hint: Option<String>,
    pub value: String,
    pub error: Option<String>,
    pub input_type: &'static str,
    pub autocomplete: &'static str,
    pub described_by: String,
}

pub struct Birth {
    pub day: String,
    pub month: String,
    pub year: String,
    pub error: Option<String>,
    pub described_by: String,
}

/// A form's values and faults, kept across a failed attempt.
pub struct FormState {
    values: Vec<(&'static str, String)>,
    consent: bool,
    pub errors: Vec<&'static str>,
    /// Faults on no field of the form's own.
    other_errors: usize,
    pub notice: Option<Notice>,
}

const TEXT_FIELDS: [IdentityField; 5] = [
    IdentityField::GivenName,
    IdentityField::FamilyName,
    IdentityField::Email,
    IdentityField::LicenseNumber,
    IdentityField::Organization,
];

impl FormState {
    pub fn empty() -> Self {
        FormState {
            values: Vec::new(),
            consent: false,
            errors: Vec::new(),
            other_errors: 0,
            notice: None,
        }
    }

    pub fn from_form(form: &PageForm) -> Self {
        let mut state = FormState::empty();
        let keep = |v: &Option<String>| v.clone().unwrap_or_default().chars().take(200).collect();
        state.values = vec![
            ("given_name", keep(&form.given_name)),
            ("family_name", keep(&form.family_name)),
            ("email", keep(&form.email)),
            ("license_number", keep(&form.license_number)),
            ("organization", keep(&form.organization)),
            ("birth_day", keep(&form.birth_day)),
            ("birth_month", keep(&form.birth_month)),
            ("birth_year", keep(&form.birth_year)),
        ];
        state.consent = form.consent.as_deref() == Some("yes");
        state
    }

    pub fn error(&mut self, field: &'static str) {
        if !self.errors.contains(&field) {
            self.errors.push(field);
        }
    }

    /// Faults the verification's own checks found (a malformed e-mail, a
    /// name too long), each on its field.
    pub fn add_domain_errors(&mut self, errors: Vec<Invalid>) {
        for error in errors {
            let field = error.field.strip_prefix("person.").unwrap_or(&error.field);
            match known_field(field) {
                Some(known) => self.error(known),
                None => self.other_errors += 1,
            }
        }
    }

    fn value(&self, name: &str) -> String {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    fn has_error(&self, name: &str) -> bool {
        self.errors.contains(&name)
    }
}

fn known_field(field: &str) -> Option<&'static str> {
    [
        "given_name",
        "family_name",
        "email",
        "license_number",
        "organization",
        "birth_date",
        "consent",
    ]
    .into_iter()
    .find(|f| *f == field)
}

#[derive(Template)]
#[template(path = "verify/form.html")]
struct FormPage {
    c: Chrome,
    intro: String,
    action: String,
    csrf: String,
    community: Option<String>,
    errors: Vec<ErrorLink>,
    notice: Option<Notice>,
    fields: Vec<Field>,
    birth: Option<Birth>,
    consent_text: String,
    consent_checked: bool,
    consent_error: Option<String>,
}

pub fn form(
    state: &AppState,
    ctx: &Context,
    community: &Community,
    form: FormState,
    status: StatusCode,
) -> Response {
    let tr = ctx.tr;
    let message = |field: &str| tr.t(&format!("error-{field}"));
    let mut fields = Vec::new();
    for field in TEXT_FIELDS {
        if !community.required_fields.contains(&field) {
            continue;
        }
        let name = field.as_str();
        let error = form.has_error(name).then(|| message(name));
        let hint = (field == IdentityField::Email).then(|| tr.t("hint-email"));
        let mut described = Vec::new();
        if hint.is_some() {
            described.push(format!("{name}-hint"));
        }
        if error.is_some() {
            described.push(format!("{name}-error"));
        }
        fields.push(Field {
            name,
            label: tr.t(&format!("field-{name}")),
            hint,
            value: form.value(name),
            error,
            input_type: if field == IdentityField::Email {
                "email"
            } else {
                "text"
            },
            autocomplete: match field {
                IdentityField::GivenName => "given-name",
                IdentityField::FamilyName => "family-name",
                IdentityField::Email => "email",
                IdentityField::Organization => "organization",
                _ => "off",
            },
            described_by: described.join(" "),
        });
    }
    let birth = community
        .required_fields
        .contains(&IdentityField::BirthDate)
        .then(|| {
            let error = form.has_error("birth_date").then(|| message("birth_date"));
            Birth {
                day: form.value("birth_day"),
                month: form.value("birth_month"),
                year: form.value("birth_year"),
                described_by: if error.is_some() {
                    "birth_date-hint birth_date-error".into()
                } else {
                    "birth_date-hint".into()
                },
                error,
            }
        });
    // The summary lists the faults in the order of the fields.
    let mut errors = Vec::new();
    for field in fields.iter().filter(|f| f.error.is_some()) {
        errors.push(ErrorLink {
            target: field.name.to_owned(),
            text: field.error.clone().unwrap_or_default(),
        });
    }
    if let Some(error) = birth.as_ref().and_then(|b| b.error.clone()) {
        errors.push(ErrorLink {
            target: "birth_day".into(),
            text: error,
        });
    }
    let consent_error = form.has_error("consent").then(|| message("consent"));
    if let Some(error) = &consent_error {
        errors.push(ErrorLink {
            target: "consent".into(),
            text: error.clone(),
        });
    }
    if form.other_errors > 0 {
        errors.push(ErrorLink {
            target: "main".into(),
            text: tr.t("error-other"),
        });
    }
    let group = group_name(&tr, community, ctx.session.subsegment.as_deref());
    let chosen = (ctx.session.community.is_none()).then(|| community.key.clone());
    let extra = chosen
        .as_deref()
        .map(|k| format!("&community={k}"))
        .unwrap_or_default();
    let page = FormPage {
        c: chrome(state, tr, "page-title", !errors.is_empty(), &extra),
        intro: tr.t_with(
            "intro",
            &[
                ("brand", Arg::Text(state.hosted.brand.clone())),
                ("group", Arg::Text(group)),
            ],
        ),
        action: ctx.path.clone(),
        csrf: csrf_token(state, ctx),
        community: chosen,
        errors,
        notice: form.notice,
        fields,
        birth,
        consent_text: tr.t1("consent", "brand", &state.hosted.brand),
        consent_checked: form.consent,
        consent_error,
    };
    html(ctx, page.render(), status, true)
}

fn group_name(tr: &Tr, community: &Community, subsegment: Option<&str>) -> String {
    let name = tr.community(&community.key, &community.display_name);
    match subsegment {
        Some(sub) => tr.t_with(
            "group-with-subsegment",
            &[
                ("community", Arg::Text(name)),
                ("subsegment", Arg::Text(tr.subsegment(sub))),
            ],
        ),
        None => name,
    }
}

pub struct Choice {
    pub key: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "verify/choose.html")]
struct ChoicePage {
    c: Chrome,
    action: String,
    options: Vec<Choice>,
    first: String,
    error: Option<String>,
}

pub fn choice(state: &AppState, ctx: &Context, options: Vec<Choice>, with_error: bool) -> Response {
    let error = with_error.then(|| ctx.tr.t("error-community"));
    let page = ChoicePage {
        c: chrome(state, ctx.tr, "page-title", error.is_some(), ""),
        action: ctx.path.clone(),
        first: options.first().map(|o| o.key.clone()).unwrap_or_default(),
        options,
        error,
    };
    let status = if with_error {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    html(ctx, page.render(), status, false)
}

pub struct Link {
    pub href: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "verify/message.html")]
struct MessagePage {
    c: Chrome,
    id: &'static str,
    heading: String,
    lines: Vec<String>,
    link: Option<Link>,
}

/// Why a page shows a message instead of the form.
pub enum Closed {
    Verified,
    Exhausted,
    Expired,
    Canceled,
    Csrf,
}

pub fn message(state: &AppState, ctx: &Context, closed: Closed, status: StatusCode) -> Response {
    let tr = ctx.tr;
    let brand = &state.hosted.brand;
    let back = |id: &str| {
        ctx.return_url.as_ref().map(|url| Link {
            href: url.with_session(ctx.session.id),
            text: tr.t1(id, "brand", brand),
        })
    };
    let (id, title, lines, link) = match closed {
        Closed::Verified => (
            "verified",
            "verified-title",
            vec![tr.t1("verified-body", "brand", brand)],
            back("continue"),
        ),
        Closed::Exhausted => (
            "attempts-exhausted",
            "not-verified-title",
            vec![tr.t1("exhausted-body", "brand", brand)],
            back("back"),
        ),
        Closed::Expired => (
            "expired",
            "expired-title",
            vec![tr.t1("expired-body", "brand", brand)],
            back("back"),
        ),
        Closed::Canceled => (
            "canceled",
            "canceled-title",
            vec![tr.t1("canceled-body", "brand", brand)],
            back("back"),
        ),
        Closed::Csrf => (
            "csrf-refused",
            "csrf-title",
            vec![tr.t("csrf-body")],
            Some(Link {
                href: format!("{}?lang={}", ctx.path, tr.lang()),
                text: tr.t("reload"),
            }),
        ),
    };
    let page = MessagePage {
        c: chrome(state, tr, title, false, ""),
        id,
        heading: tr.t(title),
        lines,
        link,
    };
    html(ctx, page.render(), status, false)
}

pub fn not_verified_notice(ctx: &Context) -> Notice {
    let left = i64::from((ctx.session.max_attempts - ctx.session.attempts).max(0));
    Notice {
        id: "not-verified",
        title: ctx.tr.t("not-verified-title"),
        lines: vec![
            ctx.tr.t("not-verified-body"),
            ctx.tr
                .t_with("attempts-left", &[("left", Arg::Number(left))]),
        ],
    }
}

/// The page for a link no session has.
pub fn unknown(state: &AppState, tr: Tr) -> Response {
    let page = MessagePage {
        c: chrome(state, tr, "unknown-title", false, ""),
        id: "unknown",
        heading: tr.t("unknown-title"),
        lines: vec![tr.t("unknown-body")],
        link: None,
    };
    finish(page.render(), StatusCode::NOT_FOUND, None)
}

pub fn internal_error(ctx: &Context) -> Response {
    plain(ctx, StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn unavailable(ctx: &Context) -> Response {
    let mut response = plain(ctx, StatusCode::SERVICE_UNAVAILABLE);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A bare page for a failure of ours; it says nothing internal.
fn plain(ctx: &Context, status: StatusCode) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body><main><h1>{}</h1></main></body></html>",
        ctx.tr.lang(),
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    finish(Ok(body), status, None)
}

/// The form's CSRF token: bound to this browser's cookie and this session.
pub fn csrf_token(state: &AppState, ctx: &Context) -> String {
    hex::encode(state.indexer.index(
        "page-csrf",
        &[&ctx.csrf_cookie, &ctx.session.id.to_string()],
    ))
}

pub fn csrf_matches(state: &AppState, ctx: &Context, sent: Option<&str>) -> bool {
    let expected = csrf_token(state, ctx);
    sent.is_some_and(|sent| {
        sent.len() == expected.len()
            && sent
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    })
}

fn html(
    ctx: &Context,
    rendered: Result<String, askama::Error>,
    status: StatusCode,
    posts_forward: bool,
) -> Response {
    // A form's success redirects to the shop: form-action must allow that
    // origin too, as browsers check it on redirects.
    let forward = posts_forward
        .then(|| ctx.return_url.as_ref().map(|u| u.origin()))
        .flatten();
    finish(rendered, status, forward.as_deref())
}

fn finish(
    rendered: Result<String, askama::Error>,
    status: StatusCode,
    forward: Option<&str>,
) -> Response {
    let body = match rendered {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(error = %error, "rendering the verification page");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>500</title>"),
            )
                .into_response();
        }
    };
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{}; \
         frame-ancestors 'none'; base-uri 'none'",
        forward.map(|o| format!(" {o}")).unwrap_or_default()
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send
    // `Origin: null` on the form's post. Either way no other origin ever
    // sees the page's URL, which holds the session's secret.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
