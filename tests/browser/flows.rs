//! The hosted verification page, as shoppers use it: in each language,
//! with mistakes, with wrong answers, without JavaScript, by keyboard
//! alone, and too late.

use serde_json::Value;

use crate::checkout::{
    ANA, ANA_A_YEAR_LATER, Checkout, PATIENCE, check_state, fill_in, message, submit, wait_for,
};
use crate::harness::{Browser, html_lang};
use crate::webdriver::keys;

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn a_student_verifies_in_english_and_the_checkout_redeems_the_token() {
    verifies_and_redeems("en").await;
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn a_student_verifies_in_french_and_the_checkout_redeems_the_token() {
    verifies_and_redeems("fr").await;
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn a_student_verifies_in_russian_and_the_checkout_redeems_the_token() {
    verifies_and_redeems("ru").await;
}

/// The whole flow in `lang`: the empty form, its errors, a success, the
/// return to the shop, the token redeemed, and the page revisited.
async fn verifies_and_redeems(lang: &str) {
    let checkout = Checkout::start().await;
    let session = checkout.create_session(Some(lang)).await;
    let (id, url) = (
        session["id"].as_str().unwrap(),
        session["url"].as_str().unwrap(),
    );
    let browser = Browser::start().await;

    browser.goto(url).await;
    assert!(browser.find("#error-summary").await.is_none());
    check_state(&browser, lang, "empty").await;

    submit(&browser).await;
    wait_for(&browser, "#error-summary").await;
    assert_eq!(
        browser.element_by("#error-summary h2").await.text().await,
        message(lang, "error-summary-title")
    );
    check_state(&browser, lang, "errors").await;
    assert_errors_lead_to_their_fields(&browser).await;

    fill_in(&browser, &ANA).await;
    submit(&browser).await;
    checkout.assert_returned(&browser, id).await;
    checkout.redeem_the_sessions_token(id).await;

    browser.goto(url).await;
    wait_for(&browser, "#verified").await;
    let back = browser.element_by("#verified a[href]").await;
    let href = back.attribute("href").await.unwrap_or_default();
    assert!(
        href.starts_with(&checkout.shop.origin),
        "the verified page links back to the shop, not {href}"
    );
    check_state(&browser, lang, "verified").await;
}

/// The summary names every field at fault, once, each link leads to an
/// input of the form, and that input points its screen reader at its own
/// message.
async fn assert_errors_lead_to_their_fields(browser: &Browser) {
    let report = browser
        .execute(
            r#"
            const links = [...document.querySelectorAll('#error-summary a')];
            return links.map(a => {
                const id = a.getAttribute('href').replace(/^#/, '');
                const field = document.getElementById(id);
                const described = [field, field && field.closest('fieldset')]
                    .filter(e => e && e.hasAttribute('aria-describedby'))
                    .flatMap(e => e.getAttribute('aria-describedby').split(/\s+/));
                const messages = described
                    .map(d => document.getElementById(d))
                    .filter(e => e && e.classList.contains('field-error'))
                    .map(e => e.textContent.trim());
                return {
                    href: a.getAttribute('href'),
                    text: a.textContent.trim(),
                    field: field ? field.tagName.toLowerCase() : null,
                    in_form: !!(field && field.form),
                    invalid: field ? field.getAttribute('aria-invalid') : null,
                    messages,
                };
            });
            "#,
            vec![],
        )
        .await;
    let links = report.as_array().expect("summary links");
    let hrefs: Vec<&str> = links.iter().map(|l| l["href"].as_str().unwrap()).collect();
    for required in ["#given_name", "#family_name", "#consent"] {
        assert!(
            hrefs.contains(&required),
            "{required} in the summary: {report}"
        );
    }
    assert!(
        hrefs.iter().any(|href| href.starts_with("#birth_")),
        "the date of birth in the summary: {report}"
    );
    let mut unique = hrefs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), hrefs.len(), "each field once: {report}");
    for link in links {
        assert_eq!(link["field"], "input", "{link}");
        assert_eq!(link["in_form"], true, "{link}");
        assert_eq!(link["invalid"], "true", "{link}");
        let text = link["text"].as_str().unwrap();
        assert!(
            link["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m.as_str().unwrap().ends_with(text))),
            "the field's described-by message repeats the summary's {text:?}: {link}"
        );
    }

    // Following a link takes the shopper to its field.
    let first = browser.element_by("#error-summary a").await;
    let target = first.attribute("href").await.unwrap();
    first.click().await;
    let landed: Value = browser
        .execute(
            "const f = document.querySelector(arguments[0]); \
             const r = f.getBoundingClientRect(); \
             return {hash: location.hash, focused: '#' + document.activeElement.id, \
                     visible: r.top >= 0 && r.bottom <= innerHeight};",
            vec![Value::from(target.clone())],
        )
        .await;
    assert_eq!(landed["hash"], target.as_str(), "{landed}");
    assert_eq!(landed["focused"], target.as_str(), "{landed}");
    assert_eq!(landed["visible"], true, "{target} scrolled into view");
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn a_wrong_answer_offers_a_retry_until_the_attempts_run_out() {
    let checkout = Checkout::start_with(|settings| settings.hosted.max_attempts = 3).await;
    let session = checkout.create_session(Some("fr")).await;
    let (id, url) = (
        session["id"].as_str().unwrap(),
        session["url"].as_str().unwrap(),
    );
    let browser = Browser::start().await;
    browser.goto(url).await;

    fill_in(&browser, &ANA_A_YEAR_LATER).await;
    submit(&browser).await;
    wait_for(&browser, "#not-verified").await;
    assert!(
        browser.find("form button#verify-submit").await.is_some(),
        "the form again, to retry"
    );
    check_state(&browser, "fr", "not-verified").await;
    assert_eq!(checkout.session(id).await["status"], "open");

    let mut attempts = 1;
    while browser.find("#attempts-exhausted").await.is_none() {
        assert!(attempts < 20, "the attempts never run out");
        fill_in(&browser, &ANA_A_YEAR_LATER).await;
        submit(&browser).await;
        attempts += 1;
        browser
            .wait_until(PATIENCE, "the attempt's answer", |page| async move {
                page.find("#not-verified").await.is_some()
                    || page.find("#attempts-exhausted").await.is_some()
            })
            .await;
    }
    assert!(
        browser.find("#verify-submit").await.is_none(),
        "no more tries"
    );
    check_state(&browser, "fr", "attempts-exhausted").await;

    let session = checkout.session(id).await;
    assert_eq!(session["status"], "not_verified", "{session}");
    assert!(session.get("token").is_none_or(Value::is_null), "{session}");
    assert_eq!(attempts, 3, "the page allows hosted.max_attempts attempts");
    assert!(checkout.shop.returned_session_ids().is_empty());
}

#[tokio::test]
#[ignore = "needs Chromium: bash .ci/browser"]
async fn without_javascript_the_whole_flow_completes() {
    let checkout = Checkout::start().await;
    let session = checkout.create_session(Some("en")).await;
    let (id, url) = (
        session["id"].as_str().unwrap(),
        session["url"].as_str().unwrap(),
    );
    let browser = Browser::without_javascript().await;

    browser.goto(url).await;
    submit(&browser).await;
    wait_for(&browser, "#error-summary").await;
    fill_in(&browser, &ANA).await;
    submit(&browser).await;

    checkout.assert_returned(&browser, id).await;
    checkout.redeem_the_sessions_token(id).await;
}

#[tokio::test]
#[ignore = "needs Chromium: bash .ci/browser"]
async fn a_keyboard_alone_fills_in_and_submits_the_form() {
    let checkout = Checkout::start().await;
    let session = checkout.create_session(Some("en")).await;
    let (id, url) = (
        session["id"].as_str().unwrap(),
        session["url"].as_str().unwrap(),
    );
    let browser = Browser::start().await;
    browser.goto(url).await;

    let answers = ANA.answers();
    let mut visited = Vec::new();
    loop {
        assert!(
            visited.len() < 40,
            "Tab never reached the submit button: {visited:?}"
        );
        browser.press(&keys::TAB.to_string()).await;
        let focused = browser
            .active_element()
            .await
            .attribute("id")
            .await
            .unwrap_or_default();
        visited.push(focused.clone());
        if let Some((_, answer)) = answers.iter().find(|(field, _)| *field == focused) {
            browser.press(answer).await;
        } else if focused == "consent" {
            browser.press(&keys::SPACE.to_string()).await;
        } else if focused == "verify-submit" {
            browser.press(&keys::ENTER.to_string()).await;
            break;
        }
    }
    for field in answers.iter().map(|(field, _)| *field).chain(["consent"]) {
        assert!(
            visited.iter().any(|v| v == field),
            "Tab reached {field}: {visited:?}"
        );
    }

    checkout.assert_returned(&browser, id).await;
    assert_eq!(checkout.session(id).await["status"], "verified");
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn an_expired_session_says_so_with_410() {
    let checkout = Checkout::start().await;
    let session = checkout.create_session(Some("en")).await;
    let (id, url) = (
        session["id"].as_str().unwrap(),
        session["url"].as_str().unwrap(),
    );
    sqlx::query("UPDATE verification_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(id)
        .execute(&checkout.app.db)
        .await
        .expect("the session's end moved to the past");

    let status = checkout
        .app
        .client
        .get(url)
        .send()
        .await
        .expect("sent")
        .status();
    assert_eq!(status, 410);
    let browser = Browser::start().await;
    browser.goto(url).await;
    wait_for(&browser, "#expired").await;
    assert!(
        browser.find("#verify-submit").await.is_none(),
        "no form to fill in"
    );
    check_state(&browser, "en", "expired").await;
    assert_eq!(checkout.session(id).await["status"], "expired");
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn the_language_links_switch_the_page() {
    let checkout = Checkout::start().await;
    let session = checkout.create_session(None).await;
    let browser = Browser::start().await;
    browser.goto(session["url"].as_str().unwrap()).await;
    assert_eq!(html_lang(&browser).await, "en", "Chromium asks for English");

    for lang in ["fr", "ru", "en"] {
        browser
            .element_by(&format!("a[hreflang={lang}]"))
            .await
            .click()
            .await;
        browser
            .wait_until(PATIENCE, "the language to change", |page| async move {
                html_lang(&page).await == lang
            })
            .await;
        assert_eq!(
            browser.element_by("h1").await.text().await,
            message(lang, "heading")
        );
        assert!(browser.find("#verify-submit").await.is_some());
    }
    crate::harness::axe(&browser, "the page after switching languages").await;
}
