//! The merchant's side of a hosted verification: an offergate with a
//! roster, a student offer and a shop to return to; sessions created and
//! read with a checkout key, tokens redeemed; and the shopper's side of the
//! page: filling the form in and checking each state it shows.

use std::time::Duration;

use offergate::config::Settings;
use offergate::domain::api_key::Role;
use serde_json::{Value, json};

use crate::harness::{Browser, assert_fits_phone, assert_same_origin, axe, html_lang, screenshot};
use crate::helpers::{TestApp, spawn_app_with};
use crate::shop::Shop;
use crate::webdriver::Session;

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct Checkout {
    pub app: TestApp,
    pub shop: Shop,
    pub key: String,
    /// An active offer for students.
    pub offer_id: String,
}

impl Checkout {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// An offergate whose sessions may return to the shop, with settings
    /// adjusted by `customise`.
    pub async fn start_with(customise: impl FnOnce(&mut Settings)) -> Self {
        let shop = Shop::start().await;
        let origin = shop.origin.clone();
        let app = spawn_app_with(|settings| {
            settings.hosted.return_origins = vec![origin];
            customise(settings);
        })
        .await;
        let (admin, key) = (app.key(Role::Admin).await, app.key(Role::Checkout).await);
        app.import_roster(&admin).await;
        let offer = app.offer(&admin, json!({})).await;
        Checkout {
            offer_id: offer["id"].as_str().expect("offer id").to_owned(),
            app,
            shop,
            key,
        }
    }

    /// A session for the student offer, in `locale` (None: the browser's
    /// language decides).
    pub async fn create_session(&self, locale: Option<&str>) -> Value {
        let mut body = json!({
            "offer_id": self.offer_id,
            "return_url": self.shop.return_url(),
            "customer_ref": "shopper-1",
        });
        if let Some(locale) = locale {
            body["locale"] = json!(locale);
        }
        let response = self
            .app
            .post_json(&self.key, "/v1/verification-sessions", body)
            .await;
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let session: Value = response.json().await.expect("session");
        assert_eq!(session["status"], "open");
        let url = session["url"].as_str().expect("the session's url");
        assert!(
            url.starts_with(&format!("{}/", self.app.address)),
            "{url} is on the app's own address {}",
            self.app.address
        );
        session
    }

    /// The session as the checkout reads it.
    pub async fn session(&self, id: &str) -> Value {
        let response = self
            .app
            .get_with_key(&format!("/v1/verification-sessions/{id}"), &self.key)
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("session")
    }

    /// The checkout reads a verified session and redeems its token.
    pub async fn redeem_the_sessions_token(&self, id: &str) {
        let session = self.session(id).await;
        assert_eq!(session["status"], "verified", "{session}");
        assert!(session["membership_id"].is_string(), "{session}");
        let token = &session["token"];
        assert_eq!(token["offer_id"], self.offer_id.as_str(), "{session}");
        let jwt = token["token"].as_str().expect("a token");
        let redeemed = self
            .app
            .redeem(
                &self.key,
                &format!("order-{id}"),
                jwt,
                &format!("order-{id}"),
            )
            .await;
        assert_eq!(redeemed.status(), 201, "{:?}", redeemed.text().await);
        let redemption: Value = redeemed.json().await.expect("redemption");
        assert_eq!(redemption["offer_id"], self.offer_id.as_str());
    }

    /// The browser is back at the shop with the session's id, and the shop
    /// was sent that id once.
    pub async fn assert_returned(&self, browser: &Session, id: &str) {
        let back = format!("{}?session_id={id}", self.shop.return_url());
        browser
            .wait_until(PATIENCE, "the return to the shop", |page| {
                let back = back.clone();
                async move {
                    page.current_url().await == back || page.find("#csrf-refused").await.is_some()
                }
            })
            .await;
        fail_if_refused_as_forged(browser).await;
        assert_eq!(
            browser.element_by("#shop").await.text().await,
            "Back at the shop"
        );
        assert_eq!(self.shop.returned_session_ids(), [id]);
    }
}

/// A shopper's answers to the page, field by field.
pub struct Shopper {
    pub given_name: &'static str,
    pub family_name: &'static str,
    pub birth_day: &'static str,
    pub birth_month: &'static str,
    pub birth_year: &'static str,
}

/// Ana Lima, a student on the roster.
pub const ANA: Shopper = Shopper {
    given_name: "Ana",
    family_name: "Lima",
    birth_day: "9",
    birth_month: "3",
    birth_year: "2004",
};

/// Ana Lima with the wrong year of birth.
pub const ANA_A_YEAR_LATER: Shopper = Shopper {
    birth_year: "2005",
    ..ANA
};

impl Shopper {
    /// Each field of the student form, by its id, with this shopper's
    /// answer.
    pub fn answers(&self) -> [(&'static str, &'static str); 5] {
        [
            ("given_name", self.given_name),
            ("family_name", self.family_name),
            ("birth_day", self.birth_day),
            ("birth_month", self.birth_month),
            ("birth_year", self.birth_year),
        ]
    }
}

/// Fills the form in as `shopper` with consent given (the clicks and typing
/// a shopper does).
pub async fn fill_in(browser: &Session, shopper: &Shopper) {
    for (id, answer) in shopper.answers() {
        let field = browser.element_by(&format!("input#{id}")).await;
        field.clear().await;
        field.send_keys(answer).await;
    }
    let consent = browser.element_by("input#consent[type=checkbox]").await;
    if consent.property("checked").await != true {
        consent.click().await;
    }
    assert_eq!(consent.property("checked").await, true, "consent given");
}

pub async fn submit(browser: &Session) {
    let button = browser.element_by("button#verify-submit").await;
    button.click().await;
    browser
        .wait_until(PATIENCE, "the form's answer", |_| {
            let button = button.clone();
            async move { button.is_stale().await }
        })
        .await;
    fail_if_refused_as_forged(browser).await;
}

/// The page's answer to a form it takes for a forged one: fail at once,
/// with the page's words, rather than wait for what will not come.
pub async fn fail_if_refused_as_forged(browser: &Session) {
    if let Some(refused) = browser.find("#csrf-refused").await {
        panic!(
            "the page refused the form from its own origin as forged: {:?}",
            refused.text().await
        );
    }
}

/// Waits until the page shows the element `css`.
pub async fn wait_for(browser: &Session, css: &str) {
    browser
        .wait_until(PATIENCE, css, |page| async move {
            page.find(css).await.is_some()
        })
        .await;
}

/// The checks every state of the page gets: its language, the phone's
/// width, nothing from another origin, axe, and a screenshot named
/// `<lang>-<state>`.
pub async fn check_state(browser: &Browser, lang: &str, state: &str) {
    let name = format!("{lang}-{state}");
    assert_eq!(html_lang(browser).await, lang, "<html lang> on {name}");
    screenshot(browser, &name).await;
    assert_fits_phone(browser, &name).await;
    assert_same_origin(browser, &name).await;
    axe(browser, &name).await;
}

/// A message of the page's catalogue for `lang` (a one-line entry of
/// `locales/<lang>/page.ftl`, placeables left as written).
pub fn message(lang: &str, key: &str) -> String {
    let path = format!("{}/locales/{lang}/page.ftl", env!("CARGO_MANIFEST_DIR"));
    let catalogue = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    catalogue
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .trim_start()
                .strip_prefix('=')
                .map(|value| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{key} is not in {path}"))
}
