//! Hosted verification sessions: the API a checkout calls, and the page a
//! shopper's browser posts to (driven here without a browser; the browser
//! suite in tests/browser drives it in Chromium).

use std::collections::HashMap;

use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

const SHOP: &str = "http://shop.test:3000";

async fn app() -> TestApp {
    spawn_app_with(|s| s.hosted.return_origins = vec![SHOP.into()]).await
}

async fn create(app: &TestApp, checkout: &str, body: Value) -> reqwest::Response {
    app.post_json(checkout, "/v1/verification-sessions", body)
        .await
}

async fn created(app: &TestApp, checkout: &str, body: Value) -> Value {
    let response = create(app, checkout, body).await;
    assert_eq!(response.status(), 201, "{:?}", response.text().await);
    response.json().await.expect("session")
}

/// A browser without JavaScript: it keeps the page's cookie and posts the
/// form as the page wrote it.
struct Shopper {
    client: reqwest::Client,
    url: String,
    cookie: Option<String>,
    csrf: Option<String>,
    forwarded_for: Option<String>,
}

struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Shopper {
    fn new(url: &str) -> Self {
        Shopper {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            url: url.to_owned(),
            cookie: None,
            csrf: None,
            forwarded_for: None,
        }
    }

    fn keep(&mut self, response: &reqwest::Response) {
        if let Some(set) = response.headers().get("set-cookie") {
            let pair = set.to_str().expect("ascii").split(';').next().unwrap_or("");
            self.cookie = Some(pair.to_owned());
        }
    }

    async fn read(&mut self, response: reqwest::Response) -> Page {
        self.keep(&response);
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        };
        if let Some(csrf) = page
            .body
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            self.csrf = Some(csrf.to_owned());
        }
        page
    }

    async fn open(&mut self, query: &str) -> Page {
        let mut request = self.client.get(format!("{}{query}", self.url));
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        let response = request.send().await.expect("page");
        self.read(response).await
    }

    async fn post(&mut self, fields: &[(&str, &str)]) -> Page {
        let mut form: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(csrf) = &self.csrf {
            form.push(("csrf".into(), csrf.clone()));
        }
        let mut request = self.client.post(&self.url).form(&form);
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(address) = &self.forwarded_for {
            request = request.header("x-forwarded-for", address);
        }
        let response = request.send().await.expect("post");
        self.read(response).await
    }
}

const ANA: [(&str, &str); 6] = [
    ("given_name", "Ana"),
    ("family_name", "Lima"),
    ("birth_day", "9"),
    ("birth_month", "3"),
    ("birth_year", "2004"),
    ("consent", "yes"),
];

fn wrong_year() -> Vec<(&'static str, &'static str)> {
    let mut fields = ANA.to_vec();
    fields[4] = ("birth_year", "2001");
    fields
}

async fn read_session(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.get_with_key(&format!("/v1/verification-sessions/{id}"), key)
        .await
}

#[tokio::test]
async fn a_shopper_verifies_on_the_page_and_the_checkout_reads_the_token_with_its_key() {
    let app = app().await;
    let setup = app.offer_setup().await;
    let offer = app.offer(&setup.admin, json!({})).await;
    let session = created(
        &app,
        &setup.checkout,
        json!({"community": "student", "offer_id": offer["id"], "locale": "fr",
               "return_url": format!("{SHOP}/back?cart=7"), "customer_ref": "cust-1"}),
    )
    .await;
    assert_eq!(session["status"], "open");
    assert_eq!(session["max_attempts"], 3);
    let url = session["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("{}/verify/vs_", app.address)),
        "{url}"
    );
    let id = session["id"].as_str().expect("id");
    assert!(!url.contains(id), "the URL's secret is not the session id");
    assert_eq!(
        app.count("SELECT count(*) FROM verification_sessions WHERE customer_ref_ix IS NOT NULL")
            .await,
        1,
        "the reference is kept as its keyed hash"
    );

    let mut shopper = Shopper::new(url);
    let page = shopper.open("").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html lang=\"fr\">"));
    assert!(page.body.contains("Prénom") && page.body.contains("Date de naissance"));
    assert!(
        !page.body.contains("name=\"email\""),
        "students give no e-mail"
    );
    let done = shopper.post(&ANA).await;
    assert_eq!(done.status, 303);
    let location = done.headers["location"].to_str().expect("location");
    assert_eq!(location, format!("{SHOP}/back?cart=7&session_id={id}"));

    let read: Value = read_session(&app, &setup.checkout, id)
        .await
        .json()
        .await
        .expect("session");
    assert_eq!(read["status"], "verified");
    assert_eq!(read["verified_community"], "student");
    assert_eq!(read["attempts"], 1);
    let token = read["token"]["token"].as_str().expect("a token");
    assert!(!location.contains(token) && !done.body.contains(token));
    let again = shopper.open("").await;
    assert!(again.body.contains("id=\"verified\""));
    assert!(
        !again.body.contains(token),
        "the page never shows the token"
    );
    let redeemed = app
        .redeem(&setup.checkout, "order-1", token, "order-1")
        .await;
    assert_eq!(redeemed.status(), 201);

    // Only the key that created the session reads it.
    let other = app.key(Role::Checkout).await;
    assert_problem(read_session(&app, &other, id).await, 404, "not_found").await;
    assert_problem(read_session(&app, &setup.admin, id).await, 403, "forbidden").await;
}

#[tokio::test]
async fn a_session_is_refused_for_an_unknown_community_or_offer_and_a_return_url_off_its_origins() {
    let app = app().await;
    let checkout = app.key(Role::Checkout).await;
    let cases = [
        (
            json!({"community": "astronaut", "return_url": SHOP}),
            "community",
        ),
        (json!({"return_url": SHOP}), "community"),
        (
            json!({"offer_id": uuid::Uuid::new_v4(), "return_url": SHOP}),
            "offer_id",
        ),
        (
            json!({"community": "student", "return_url": "https://evil.test/"}),
            "return_url",
        ),
        (
            json!({"community": "student", "return_url": "javascript:alert(1)"}),
            "return_url",
        ),
        (
            json!({"community": "student", "return_url": format!("{SHOP}/#frag")}),
            "return_url",
        ),
        (
            json!({"community": "student", "return_url": SHOP, "locale": "de"}),
            "locale",
        ),
        (
            json!({"community": "student", "subsegment": "veteran", "return_url": SHOP}),
            "subsegment",
        ),
    ];
    for (body, field) in cases {
        let problem = assert_problem(
            create(&app, &checkout, body.clone()).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM verification_sessions")
            .await,
        0
    );
    let admin = app.key(Role::Admin).await;
    assert_problem(
        create(
            &app,
            &admin,
            json!({"community": "student", "return_url": SHOP}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_answer_says_only_that_it_failed_and_the_attempts_are_bounded() {
    let app = app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "locale": "en", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let first = shopper.post(&wrong_year()).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("id=\"not-verified\""));
    assert!(first.body.contains("We could not verify you"));
    assert!(first.body.contains("You have 2 attempts left."));
    assert!(
        !first.body.contains("field-error") && !first.body.contains("error-summary"),
        "nothing says which field was wrong"
    );
    shopper.post(&wrong_year()).await;
    let last = shopper.post(&wrong_year()).await;
    assert!(
        last.body.contains("id=\"attempts-exhausted\""),
        "{}",
        last.body
    );
    let after = shopper.post(&ANA).await;
    assert!(
        after.body.contains("id=\"attempts-exhausted\""),
        "a right answer after the bound changes nothing"
    );
    let read: Value = read_session(&app, &checkout, session["id"].as_str().expect("id"))
        .await
        .json()
        .await
        .expect("session");
    assert_eq!(read["status"], "not_verified");
    assert_eq!(read["attempts"], 3);
    assert!(read["membership_id"].is_null());
}

#[tokio::test]
async fn an_incomplete_form_names_each_fault_and_counts_no_attempt() {
    let app = app().await;
    let checkout = app.key(Role::Checkout).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "locale": "ru", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let page = shopper
        .post(&[
            ("given_name", "Ana"),
            ("birth_day", "31"),
            ("birth_month", "2"),
            ("birth_year", "2004"),
        ])
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("id=\"error-summary\""));
    for (target, error) in [
        ("family_name", "family_name-error"),
        ("birth_day", "birth_date-error"),
        ("consent", "consent-error"),
    ] {
        assert!(
            page.body.contains(&format!("href=\"#{target}\"")),
            "{target} in the summary"
        );
        assert!(
            page.body.contains(&format!("id=\"{error}\"")),
            "{error} beside its field"
        );
    }
    assert!(page.body.contains("aria-describedby=\"family_name-error\""));
    assert!(
        page.body.contains("value=\"Ana\""),
        "what was typed is kept"
    );
    assert!(page.body.contains("Введите фамилию"));
    assert_eq!(
        app.count("SELECT attempts::bigint FROM verification_sessions")
            .await,
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        0
    );
}

#[tokio::test]
async fn a_form_without_its_token_or_cookie_or_from_another_origin_is_refused() {
    let app = app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let url = session["url"].as_str().expect("url");

    // No cookie (a forged cross-site post): refused, and a cookie is set.
    let mut forger = Shopper::new(url);
    let refused = forger.post(&ANA).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("id=\"csrf-refused\""));

    // The cookie, but another session's or a made-up token.
    let mut shopper = Shopper::new(url);
    shopper.open("").await;
    let good = shopper.csrf.clone().expect("token");
    shopper.csrf = Some("0".repeat(good.len()));
    assert_eq!(shopper.post(&ANA).await.status, 403);

    // The right token, posted from another origin.
    shopper.csrf = Some(good);
    let cross = shopper
        .client
        .post(url)
        .header("cookie", shopper.cookie.clone().expect("cookie"))
        .header("origin", "https://evil.test")
        .form(&[("csrf", shopper.csrf.clone().expect("csrf"))])
        .send()
        .await
        .expect("sent");
    assert_eq!(cross.status(), 403);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        0
    );

    // The same browser, from the page, with the Origin a browser sends
    // (its own, or `null` under a strict referrer policy): verified.
    let mut form: Vec<(&str, String)> = ANA.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    form.push(("csrf", shopper.csrf.clone().expect("csrf")));
    for (origin, expected) in [("null", 303), (app.address.as_str(), 200)] {
        let answer = shopper
            .client
            .post(url)
            .header("cookie", shopper.cookie.clone().expect("cookie"))
            .header("origin", origin)
            .form(&form)
            .send()
            .await
            .expect("sent");
        let status = answer.status().as_u16();
        let body = answer.text().await.expect("body");
        assert_eq!(status, expected, "Origin {origin}");
        if expected == 200 {
            assert!(body.contains("id=\"verified\""), "already verified");
        }
    }
}

#[tokio::test]
async fn an_expired_or_canceled_session_takes_no_attempt() {
    let app = app().await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let expiring = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(expiring["url"].as_str().expect("url"));
    shopper.open("").await;
    sqlx::query("UPDATE verification_sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .expect("expired");
    let page = shopper.open("").await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("id=\"expired\""));
    assert_eq!(shopper.post(&ANA).await.status, 410);
    let id = expiring["id"].as_str().expect("id");
    let read: Value = read_session(&app, &checkout, id)
        .await
        .json()
        .await
        .expect("session");
    assert_eq!(read["status"], "expired");
    assert_problem(
        app.post_json(
            &checkout,
            &format!("/v1/verification-sessions/{id}/cancel"),
            json!({}),
        )
        .await,
        409,
        "session_closed",
    )
    .await;

    let open = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let id = open["id"].as_str().expect("id");
    let other = app.key(Role::Checkout).await;
    assert_problem(
        app.post_json(
            &other,
            &format!("/v1/verification-sessions/{id}/cancel"),
            json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let canceled = app
        .post_json(
            &checkout,
            &format!("/v1/verification-sessions/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(canceled.status(), 200);
    let mut late = Shopper::new(open["url"].as_str().expect("url"));
    let page = late.open("").await;
    assert_eq!(page.status, 410);
    assert!(page.body.contains("id=\"canceled\""));
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        0
    );
}

#[tokio::test]
async fn an_unknown_or_malformed_link_is_a_page_that_says_so() {
    let app = app().await;
    for path in [
        "/verify/vs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "/verify/nonsense",
        "/verify/%27%3Cscript%3E",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("type")
                .starts_with("text/html")
        );
        let body = response.text().await.expect("body");
        assert!(
            body.contains("id=\"unknown\"") && !body.contains("<script"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_page_carries_a_strict_policy_and_loads_only_from_its_origin() {
    let app = app().await;
    let checkout = app.key(Role::Checkout).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "teacher", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    let page = shopper.open("?lang=en").await;
    let policy = page.headers["content-security-policy"]
        .to_str()
        .expect("policy");
    assert_eq!(
        policy,
        format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {SHOP}; frame-ancestors 'none'; base-uri 'none'"
        )
    );
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    assert_eq!(page.headers["cache-control"], "no-store");
    let cookie = page.headers["set-cookie"].to_str().expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!page.body.contains("<script") && !page.body.contains("style="));
    for attribute in ["href=\"", "src=\"", "action=\""] {
        for value in page.body.split(attribute).skip(1) {
            let target = value.split('"').next().unwrap_or("");
            assert!(
                target.starts_with('/') || target.starts_with('?') || target.starts_with('#'),
                "{attribute}{target} stays on the page's origin"
            );
        }
    }
    assert!(page.body.contains("name=\"email\"") && page.body.contains("autocomplete=\"email\""));
    let css = app.get("/assets/verify.css").await;
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.text().await.expect("css").contains("--brand: #1d4ed8"));
}

#[tokio::test]
async fn an_offer_for_several_communities_lets_the_shopper_choose_without_javascript() {
    let app = app().await;
    let setup = app.offer_setup().await;
    let offer = app
        .offer(&setup.admin, json!({"communities": ["student", "teacher"]}))
        .await;
    let session = created(
        &app,
        &setup.checkout,
        json!({"offer_id": offer["id"], "locale": "en", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    let choice = shopper.open("").await;
    assert!(choice.body.contains("type=\"radio\" value=\"student\""));
    assert!(choice.body.contains("type=\"radio\" value=\"teacher\""));
    let refused = shopper.open("?community=senior").await;
    assert_eq!(refused.status, 422, "a community the offer is not for");
    let teacher = shopper.open("?community=teacher").await;
    assert!(teacher.body.contains("name=\"email\""));
    let done = shopper
        .post(&[
            ("community", "teacher"),
            ("given_name", "Jean"),
            ("family_name", "Baptiste"),
            ("email", "j.baptiste@lincoln.k12.us"),
            ("consent", "yes"),
        ])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let read: Value = read_session(&app, &setup.checkout, session["id"].as_str().expect("id"))
        .await
        .json()
        .await
        .expect("session");
    assert_eq!(read["verified_community"], "teacher");
    assert!(read["token"]["token"].is_string());
}

#[tokio::test]
async fn many_submissions_at_once_verify_a_session_once_and_issue_one_token() {
    let app = app().await;
    let setup = app.offer_setup().await;
    let offer = app.offer(&setup.admin, json!({})).await;
    let session = created(
        &app,
        &setup.checkout,
        json!({"community": "student", "offer_id": offer["id"], "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let (cookie, csrf) = (shopper.cookie.clone(), shopper.csrf.clone());
    let url = shopper.url.clone();
    let tabs = (0..16).map(|_| {
        let mut tab = Shopper::new(&url);
        tab.cookie = cookie.clone();
        tab.csrf = csrf.clone();
        tokio::spawn(async move { tab.post(&ANA).await.status })
    });
    let statuses: Vec<u16> = futures::future::join_all(tabs)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 303 || *s == 200),
        "{statuses:?}"
    );
    let offer_id: uuid::Uuid = offer["id"].as_str().expect("id").parse().expect("uuid");
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE offer_id = $1")
        .bind(offer_id)
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(tokens, 1);
    assert_eq!(
        app.count("SELECT attempts::bigint FROM verification_sessions")
            .await,
        1
    );
}

#[tokio::test]
async fn many_wrong_answers_at_once_use_no_more_than_the_attempts_allowed() {
    let app = spawn_app_with(|s| {
        s.hosted.return_origins = vec![SHOP.into()];
        s.hosted.max_attempts = 4;
    })
    .await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let tabs = (0..12).map(|_| {
        let mut tab = Shopper::new(&shopper.url);
        tab.cookie = shopper.cookie.clone();
        tab.csrf = shopper.csrf.clone();
        tokio::spawn(async move { tab.post(&wrong_year()).await.status })
    });
    futures::future::join_all(tabs).await;
    assert_eq!(
        app.count("SELECT attempts::bigint FROM verification_sessions")
            .await,
        4
    );
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        4
    );
    assert_eq!(
        app.count("SELECT count(*) FROM verification_sessions WHERE status = 'not_verified'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_shoppers_own_address_feeds_the_rate_limits() {
    let app = spawn_app_with(|s| {
        s.hosted.return_origins = vec![SHOP.into()];
        s.hosted.max_attempts = 10;
        s.verification.max_failures_per_address = 2;
        s.verification.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
    })
    .await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let mut statuses = HashMap::new();
    for (address, given) in [
        ("203.0.113.7", "Zed"),
        ("203.0.113.7", "Yan"),
        ("203.0.113.7", "Xia"),
        ("198.51.100.9", "Wim"),
    ] {
        let session = created(
            &app,
            &checkout,
            json!({"community": "student", "return_url": SHOP}),
        )
        .await;
        let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
        shopper.forwarded_for = Some(address.to_owned());
        shopper.open("").await;
        let mut fields = wrong_year();
        fields[0] = ("given_name", given);
        let page = shopper.post(&fields).await;
        statuses
            .entry(address)
            .or_insert_with(Vec::new)
            .push(page.status);
        if page.status == 429 {
            assert!(page.headers.contains_key("retry-after"));
            assert!(page.body.contains("id=\"rate-limited\""));
        }
    }
    assert_eq!(statuses["203.0.113.7"], vec![200, 200, 429]);
    assert_eq!(
        statuses["198.51.100.9"],
        vec![200],
        "another shopper is not held back"
    );
}

#[tokio::test]
async fn sessions_long_expired_are_swept_and_recent_ones_kept() {
    let app = app().await;
    let checkout = app.key(Role::Checkout).await;
    for _ in 0..3 {
        created(
            &app,
            &checkout,
            json!({"community": "student", "return_url": SHOP}),
        )
        .await;
    }
    sqlx::query(
        "UPDATE verification_sessions SET expires_at = now() - interval '8 days'
         WHERE id IN (SELECT id FROM verification_sessions ORDER BY id LIMIT 2)",
    )
    .execute(&app.db)
    .await
    .expect("aged");
    let settings = crate::helpers::settings_from(HashMap::new()).expect("settings");
    let pruned = offergate::usecases::prune::sweep(&app.db, &settings.retention)
        .await
        .expect("sweep")
        .expect("no other sweep");
    assert_eq!(pruned.sessions, 2);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_sessions")
            .await,
        1
    );
}

#[tokio::test]
async fn a_checkout_key_may_bring_return_origins_of_its_own() {
    let app = app().await;
    let admin = app.key(Role::Admin).await;
    let own = "https://other-shop.test";
    let created_key: Value = app
        .post_json(
            &admin,
            "/v1/api-keys",
            json!({"role": "checkout", "return_origins": [own]}),
        )
        .await
        .json()
        .await
        .expect("key");
    assert_eq!(created_key["return_origins"], json!([own]));
    let key = created_key["key"].as_str().expect("key");
    let session = create(
        &app,
        key,
        json!({"community": "student", "return_url": format!("{own}/back")}),
    )
    .await;
    assert_eq!(session.status(), 201);
    let plain = app.key(Role::Checkout).await;
    let refused = create(
        &app,
        &plain,
        json!({"community": "student", "return_url": format!("{own}/back")}),
    )
    .await;
    assert_problem(refused, 422, "validation_failed").await;
    for (role, origins) in [
        ("partner", json!([own])),
        ("checkout", json!(["https://x.test/path"])),
        ("admin", json!([own])),
    ] {
        let mut body = json!({"role": role, "return_origins": origins});
        if role == "partner" {
            let partner = offergate::store::partners::insert(&app.db, "P")
                .await
                .expect("partner");
            body["partner_id"] = json!(partner.id);
        }
        let problem = assert_problem(
            app.post_json(&admin, "/v1/api-keys", body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "return_origins");
    }
}

#[tokio::test]
async fn the_brand_comes_from_the_settings_and_its_logo_from_the_pages_own_origin() {
    let logo = std::env::temp_dir().join(format!("offergate-logo-{}.svg", uuid::Uuid::new_v4()));
    let svg = r##"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="#0b6e4f"/></svg>"##;
    std::fs::write(&logo, svg).expect("logo written");
    let path = logo.to_string_lossy().into_owned();
    let app = spawn_app_with(move |s| {
        s.hosted.return_origins = vec![SHOP.into()];
        s.hosted.brand_name = "Skyways".into();
        s.hosted.brand_colour = "#0b6e4f".into();
        s.hosted.logo_file = path;
    })
    .await;
    let checkout = app.key(Role::Checkout).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "nurse", "locale": "en", "return_url": SHOP}),
    )
    .await;
    let page = Shopper::new(session["url"].as_str().expect("url"))
        .open("")
        .await;
    assert!(
        page.body
            .contains("<img src=\"/assets/logo\" alt=\"Skyways\"")
    );
    assert!(page.body.contains("I agree that Skyways may check"));
    assert!(
        page.body.contains("name=\"license_number\"") && page.body.contains("name=\"family_name\"")
    );
    assert!(
        !page.body.contains("name=\"given_name\""),
        "nurses give a licence and a last name only"
    );
    let served = app.get("/assets/logo").await;
    assert_eq!(served.headers()["content-type"], "image/svg+xml");
    assert!(
        served.headers()["content-security-policy"]
            .to_str()
            .expect("policy")
            .starts_with("default-src 'none'")
    );
    assert_eq!(served.text().await.expect("svg"), svg);
    let css = app
        .get("/assets/verify.css")
        .await
        .text()
        .await
        .expect("css");
    assert!(css.contains("--brand: #0b6e4f"));
    let _ = std::fs::remove_file(&logo);

    let too_light = crate::helpers::settings_from(HashMap::from([(
        "OFFERGATE_HOSTED__BRAND_COLOUR".to_owned(),
        "#ffcc00".to_owned(),
    )]));
    let refused = too_light
        .expect_err("a colour white text cannot be read on")
        .to_string();
    assert!(
        refused.contains("hosted.brand_colour") && refused.contains("4.5"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_revoked_keys_sessions_stop_and_odd_dates_and_e_mails_are_named_at_once() {
    let app = app().await;
    let admin = app.key(Role::Admin).await;
    let created_key: Value = app
        .post_json(&admin, "/v1/api-keys", json!({"role": "checkout"}))
        .await
        .json()
        .await
        .expect("key");
    let key = created_key["key"].as_str().expect("key");
    app.import_roster(&admin).await;
    let session = created(
        &app,
        key,
        json!({"community": "teacher", "locale": "en", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let faults = shopper
        .post(&[
            ("given_name", "Jean"),
            ("family_name", "Baptiste"),
            ("email", "not-an-address"),
            ("consent", "yes"),
        ])
        .await;
    assert_eq!(faults.status, 422);
    assert!(
        faults.body.contains("id=\"email-error\""),
        "a malformed e-mail is named with the rest"
    );

    let id = created_key["id"].as_str().expect("id");
    let revoked = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("sent");
    assert_eq!(revoked.status(), 200);
    let page = shopper.open("").await;
    assert_eq!(page.status, 410, "a revoked key's session takes no attempt");
    assert!(page.body.contains("id=\"canceled\""));
    let mut teacher: Vec<(&str, &str)> = vec![
        ("given_name", "Jean"),
        ("family_name", "Baptiste"),
        ("email", "j.baptiste@lincoln.k12.us"),
        ("consent", "yes"),
    ];
    assert_eq!(shopper.post(&teacher).await.status, 410);
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        0
    );

    // Day 265 of month 259 is no date, however the numbers wrap.
    let checkout = app.key(Role::Checkout).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let mut student = Shopper::new(session["url"].as_str().expect("url"));
    student.open("").await;
    let mut wrapped = ANA.to_vec();
    wrapped[2] = ("birth_day", "265");
    wrapped[3] = ("birth_month", "259");
    let refused = student.post(&wrapped).await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("id=\"birth_date-error\""));
    teacher.clear();
    assert_eq!(
        app.count("SELECT count(*) FROM verification_attempts")
            .await,
        0
    );
}

#[tokio::test]
async fn in_production_a_session_needs_the_pages_public_url() {
    let app = spawn_app_with(|s| {
        s.profile = offergate::config::Profile::Production;
        s.hosted.return_origins = vec![SHOP.into()];
    })
    .await;
    let checkout = app.key(Role::Checkout).await;
    let refused = create(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let problem = assert_problem(refused, 503, "unavailable").await;
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("hosted.public_url")
    );
    let spoofed = app
        .client
        .post(app.url("/v1/verification-sessions"))
        .bearer_auth(&checkout)
        .header("host", "evil.test")
        .json(&json!({"community": "student", "return_url": SHOP}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        spoofed.status(),
        503,
        "no URL is built from a Host header in production"
    );

    let configured = spawn_app_with(|s| {
        s.profile = offergate::config::Profile::Production;
        s.hosted.return_origins = vec![SHOP.into()];
        s.hosted.public_url = "https://verify.shop.test".into();
    })
    .await;
    let checkout = configured.key(Role::Checkout).await;
    let session = created(
        &configured,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    assert!(
        session["url"]
            .as_str()
            .expect("url")
            .starts_with("https://verify.shop.test/verify/vs_")
    );

    for (env, named) in [
        (
            vec![("OFFERGATE_HOSTED__PUBLIC_URL", "http://verify.shop.test")],
            "https",
        ),
        (
            vec![("OFFERGATE_HOSTED__RETURN_ORIGINS", SHOP)],
            "hosted.public_url",
        ),
    ] {
        let mut vars: HashMap<String, String> = [
            ("OFFERGATE_PROFILE", "production"),
            ("DATABASE_URL", "postgres://app:pw@db/offergate"),
            (
                "OFFERGATE_SECRETS__BLIND_INDEX_KEY",
                "11".repeat(32).as_str(),
            ),
            (
                "OFFERGATE_SECRETS__KEY_ENCRYPTION_KEY",
                "22".repeat(32).as_str(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.extend(env.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        let error = crate::helpers::settings_from(vars)
            .expect_err("refused")
            .to_string();
        assert!(error.contains(named), "{error}");
    }
}

#[tokio::test]
async fn the_page_and_the_api_of_one_key_have_failure_budgets_of_their_own() {
    let app = spawn_app_with(|s| {
        s.hosted.return_origins = vec![SHOP.into()];
        s.hosted.max_attempts = 10;
        s.verification.max_failures_per_key = 2;
    })
    .await;
    let admin = app.key(Role::Admin).await;
    let checkout = app.key(Role::Checkout).await;
    app.import_roster(&admin).await;
    let session = created(
        &app,
        &checkout,
        json!({"community": "student", "return_url": SHOP}),
    )
    .await;
    let mut shopper = Shopper::new(session["url"].as_str().expect("url"));
    shopper.open("").await;
    let mut statuses = Vec::new();
    for given in ["Ula", "Vic", "Wes"] {
        let mut fields = wrong_year();
        fields[0] = ("given_name", given);
        statuses.push(shopper.post(&fields).await.status);
    }
    assert_eq!(
        statuses,
        vec![200, 200, 429],
        "the page's budget for this key is spent"
    );
    // The same key's own calls still have theirs.
    let api = app
        .verify(
            &checkout,
            crate::helpers::student("Xan", "Nobody", "2001-01-01"),
        )
        .await;
    assert_eq!(api.status(), 200);
    let body: Value = api.json().await.expect("answer");
    assert_eq!(body["status"], "not_verified");
}
