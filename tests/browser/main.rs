//! The hosted pages in a real browser: headless Chromium at a phone's size,
//! driven through chromedriver, every state checked with axe-core against
//! WCAG 2.2 AA and saved as a screenshot. Every test is ignored so that a
//! plain `cargo test` needs no browser; `bash .ci/browser` installs
//! Chromium, chromedriver and axe-core and runs them
//! (`cargo test --test browser -- --ignored --test-threads=1`).

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod checkout;
mod flows;
mod harness;
mod shop;
mod smoke;
mod webdriver;
