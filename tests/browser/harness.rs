//! Headless Chromium under a chromedriver of the test's own, and the checks
//! every state of a page gets: axe-core, a screenshot, the phone-sized
//! layout and the page's origin.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::webdriver::Session;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALLED_BY: &str = "`bash .ci/browser` installs it and runs this suite";

/// A phone's viewport (CSS pixels), the size every test browses at.
pub const PHONE: (u32, u32) = (390, 844);

/// Chromium with a fresh profile, driven through its own chromedriver;
/// dropping it quits the browser and removes the profile.
pub struct Browser {
    pub session: Session,
    _chromedriver: Chromedriver,
    _profile: Profile,
}

struct Chromedriver(Child);

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    pub async fn start() -> Self {
        Self::launch(true).await
    }

    /// A browser whose pages run no JavaScript (WebDriver's own scripts
    /// still run).
    pub async fn without_javascript() -> Self {
        Self::launch(false).await
    }

    async fn launch(javascript: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let chromedriver = Chromedriver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!("{CHROMEDRIVER} does not start ({error}); {INSTALLED_BY}")
                }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_until_ready(&webdriver).await;

        let profile = Profile(
            std::env::temp_dir().join(format!("offergate-browser-{}", uuid::Uuid::new_v4())),
        );
        let (width, height) = PHONE;
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.0.display()),
            ],
        });
        // Headless Chromium keeps its window at least 500 px wide whatever
        // --window-size says; the phone's viewport comes from emulation.
        // Without touch: chromedriver's taps wait on page timers, which
        // never fire where the page may not run JavaScript.
        options["mobileEmulation"] = json!({
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0, "mobile": false, "touch": false}
        });
        if !javascript {
            options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
        }
        let session = Session::new(
            &webdriver,
            json!({"browserName": "chrome", "goog:chromeOptions": options}),
        )
        .await
        .unwrap_or_else(|error| panic!("{CHROMIUM} does not start ({error}); {INSTALLED_BY}"));
        session.set_script_timeout(Duration::from_secs(60)).await;
        Browser {
            session,
            _chromedriver: chromedriver,
            _profile: profile,
        }
    }
}

impl std::ops::Deref for Browser {
    type Target = Session;

    fn deref(&self) -> &Session {
        &self.session
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quit before chromedriver is killed, or Chromium outlives it. Drop
        // runs inside the test's runtime: the request goes from a thread and
        // a runtime of its own.
        let session = self.session.url().to_owned();
        let quit = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                reqwest::Client::new()
                    .delete(session)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            })
        })
        .join()
        .unwrap_or(false);
        // A browser that would not quit (a command still hanging in it) is
        // killed, so no test leaves one behind.
        if let (false, Some(pid)) = (quit, self.session.browser_pid()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

async fn wait_until_ready(webdriver: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = format!("{webdriver}/status");
    loop {
        if let Ok(response) = reqwest::get(&status).await
            && let Ok(body) = response.json::<Value>().await
            && body["value"]["ready"] == true
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer {status} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// axe-core's source, from the file `OFFERGATE_AXE_JS` names.
fn axe_source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = std::env::var("OFFERGATE_AXE_JS").unwrap_or_else(|_| {
            panic!(
                "OFFERGATE_AXE_JS is not set: it names axe-core's axe.min.js, which \
                 `bash .ci/browser` installs under .ci/node_modules and sets"
            )
        });
        std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "OFFERGATE_AXE_JS={path} cannot be read ({error}): `bash .ci/browser` \
                 installs axe-core there"
            )
        })
    })
}

/// One rule axe-core found broken, with the nodes that break it.
pub struct Violation {
    pub id: String,
    pub impact: String,
    pub help: String,
    /// Each node's CSS path and axe's account of what to fix.
    pub nodes: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "  {} ({}): {}", self.id, self.impact, self.help)?;
        for node in &self.nodes {
            write!(f, "\n      {node}")?;
        }
        Ok(())
    }
}

/// Runs axe-core on the page against WCAG 2.0, 2.1 and 2.2 A and AA;
/// `state` names the page's state.
pub async fn axe_violations(session: &Session, state: &str) -> Vec<Violation> {
    session.execute(axe_source(), vec![]).await;
    let results = session
        .execute_async(
            r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, {runOnly: {type: 'tag',
                    values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}})
                .then(results => done({
                    passes: results.passes.length,
                    violations: results.violations.map(v => ({
                        id: v.id, impact: v.impact, help: v.help,
                        nodes: v.nodes.map(n => JSON.stringify(n.target) + ' -- ' + n.failureSummary),
                    })),
                }))
                .catch(error => done({error: String(error)}));
            "#,
            vec![],
        )
        .await;
    assert!(
        results["error"].is_null(),
        "axe failed on {state}: {results}"
    );
    // A page axe ran no rule on proves nothing.
    assert!(
        results["passes"].as_u64().is_some_and(|passes| passes > 0),
        "axe checked nothing on {state}: {results}"
    );
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    results["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|violation| Violation {
            id: text(&violation["id"]),
            impact: violation["impact"]
                .as_str()
                .unwrap_or("no impact given")
                .to_owned(),
            help: text(&violation["help"]),
            nodes: violation["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect(),
        })
        .collect()
}

/// axe-core finds nothing against WCAG 2.2 AA, or the test fails listing
/// every violation: its rule, impact, help and nodes.
pub async fn axe(session: &Session, state: &str) {
    let violations = axe_violations(session, state).await;
    assert!(
        violations.is_empty(),
        "axe found {} violation(s) on {state}:\n{}",
        violations.len(),
        violations
            .iter()
            .map(Violation::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Where the screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots")
}

/// The viewport as `target/browser-screenshots/<name>.png`.
pub async fn screenshot(session: &Session, name: &str) {
    let png = session.screenshot().await;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot of {name} is not a PNG"
    );
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

/// The page needs no sideways scrolling at the browser's phone width.
pub async fn assert_fits_phone(session: &Session, state: &str) {
    let layout = session
        .execute(
            r#"
            const inner = window.innerWidth;
            const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
                + (typeof e.className === 'string' && e.className
                    ? '.' + e.className.trim().split(/\s+/).join('.') : '');
            const wide = [...document.body.querySelectorAll('*')]
                .map(e => [e, e.getBoundingClientRect().right])
                .filter(([, right]) => right > inner + 0.5)
                .sort((a, b) => b[1] - a[1])
                .slice(0, 8)
                .map(([e, right]) => name(e) + ' to ' + Math.round(right) + ' px');
            return {scroll: document.documentElement.scrollWidth, inner, wide};
            "#,
            vec![],
        )
        .await;
    let (scroll, inner) = (layout["scroll"].as_u64(), layout["inner"].as_u64());
    assert_eq!(
        inner,
        Some(u64::from(PHONE.0)),
        "the viewport is phone-sized"
    );
    assert!(
        scroll <= inner,
        "{state} is wider ({scroll:?} px) than the phone ({inner:?} px); past its edge: {}",
        layout["wide"]
    );
}

/// Every URL the page names in a link, image, form or script, and every
/// resource it loaded, is on the page's own origin.
pub async fn assert_same_origin(session: &Session, state: &str) {
    let found = session
        .execute(
            r#"
            const urls = [];
            for (const e of document.querySelectorAll('link[href]')) urls.push(e.href);
            for (const e of document.querySelectorAll('img')) urls.push(e.currentSrc || e.src);
            for (const e of document.querySelectorAll('script[src]')) urls.push(e.src);
            for (const e of document.forms) urls.push(e.action);
            for (const e of performance.getEntriesByType('resource')) urls.push(e.name);
            return {origin: location.origin, urls,
                    foreign: urls.filter(u => new URL(u, location.href).origin !== location.origin)};
            "#,
            vec![],
        )
        .await;
    assert_eq!(
        found["foreign"],
        json!([]),
        "{state} names or loads URLs off its origin {}: {}",
        found["origin"],
        found["urls"]
    );
}

/// `<html lang>`.
pub async fn html_lang(session: &Session) -> String {
    session
        .element_by("html")
        .await
        .attribute("lang")
        .await
        .unwrap_or_default()
}
