//! The harness itself, on pages that need no verification session.

use crate::harness::{
    Browser, assert_fits_phone, assert_same_origin, axe, axe_violations, html_lang, screenshot,
};
use crate::helpers::spawn_app;
use crate::shop::Shop;

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn the_docs_page_renders_and_loads_only_from_its_own_origin() {
    let app = spawn_app().await;
    let browser = Browser::start().await;

    browser.goto(&app.url("/docs")).await;

    assert_eq!(html_lang(&browser).await, "en");
    assert!(browser.find("#post-\\/v1\\/redemptions").await.is_some());
    assert_same_origin(&browser, "the docs page").await;
    axe(&browser, "the docs page").await;
    assert_fits_phone(&browser, "the docs page").await;
    screenshot(&browser, "docs").await;
}

#[tokio::test]
#[ignore = "needs Chromium and axe-core: bash .ci/browser"]
async fn axe_passes_a_clean_page_and_names_what_breaks_a_bad_one() {
    let shop = Shop::start().await;
    let browser = Browser::start().await;

    browser.goto(&shop.return_url()).await;
    axe(&browser, "the shop's return page").await;

    browser.goto(&format!("{}/unlabelled", shop.origin)).await;
    let mut found: Vec<String> = axe_violations(&browser, "an unlabelled page")
        .await
        .into_iter()
        .map(|violation| violation.id)
        .collect();
    found.sort();
    assert_eq!(found, ["image-alt", "label"]);
}

#[tokio::test]
#[ignore = "needs Chromium: bash .ci/browser"]
async fn the_browser_without_javascript_runs_no_page_script() {
    let shop = Shop::start().await;
    let probe = format!("{}/script-probe", shop.origin);

    let with = Browser::start().await;
    with.goto(&probe).await;
    let without = Browser::without_javascript().await;
    without.goto(&probe).await;

    assert_eq!(with.element_by("#probe").await.text().await, "scripts on");
    assert_eq!(
        without.element_by("#probe").await.text().await,
        "scripts off"
    );
}
