//! The few W3C WebDriver commands the suite needs, as JSON over plain HTTP
//! to a local chromedriver.
//!
//! Why not fantoccini: built without its TLS features it takes a connector
//! only as a `hyper_util` type, which offergate does not depend on; the
//! protocol is small enough to speak with the reqwest the tests already use.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver names a web element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Keys as WebDriver codes them (the Unicode private-use characters of the
/// specification's key table).
pub mod keys {
    pub const TAB: char = '\u{E004}';
    pub const ENTER: char = '\u{E007}';
    pub const SPACE: char = '\u{E00D}';
}

/// One browser session on a WebDriver server.
#[derive(Clone, Debug)]
pub struct Session {
    http: reqwest::Client,
    base: String,
    browser_pid: Option<u32>,
}

/// A reference to an element of the current page.
#[derive(Clone, Debug)]
pub struct Element {
    session: Session,
    id: String,
}

impl Session {
    /// Opens a session with `capabilities` as `alwaysMatch`.
    pub async fn new(webdriver: &str, capabilities: Value) -> Result<Self, String> {
        let http = reqwest::Client::new();
        let answer = call(
            &http,
            reqwest::Method::POST,
            &format!("{webdriver}/session"),
            Some(json!({"capabilities": {"alwaysMatch": capabilities}})),
        )
        .await?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {answer}"))?;
        Ok(Session {
            http,
            base: format!("{webdriver}/session/{id}"),
            browser_pid: answer["capabilities"]["goog:processID"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok()),
        })
    }

    /// The session's address on its WebDriver server.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The browser's own process, where the server tells it.
    pub fn browser_pid(&self) -> Option<u32> {
        self.browser_pid
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// How long an asynchronous script may take before the command fails.
    pub async fn set_script_timeout(&self, timeout: Duration) {
        self.post("/timeouts", json!({"script": timeout.as_millis() as u64}))
            .await;
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .expect("the URL is a string")
            .to_owned()
    }

    /// The first element matching the CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        match found {
            Ok(value) => Some(self.element(&value)),
            Err(error) if error.starts_with("no such element") => None,
            Err(error) => panic!("finding {css}: {error}"),
        }
    }

    /// The element matching the CSS selector, which must be there.
    pub async fn element_by(&self, css: &str) -> Element {
        match self.find(css).await {
            Some(element) => element,
            None => panic!(
                "no element matches {css} on {}, which reads:\n{}",
                self.current_url().await,
                self.page_text().await
            ),
        }
    }

    /// The page's text as a reader sees it, for failure messages.
    async fn page_text(&self) -> String {
        match Box::pin(self.find("body")).await {
            Some(body) => body.text().await,
            None => String::new(),
        }
    }

    /// The element that has the focus (the body when none has).
    pub async fn active_element(&self) -> Element {
        let value = self.get("/element/active").await;
        self.element(&value)
    }

    fn element(&self, value: &Value) -> Element {
        Element {
            session: self.clone(),
            id: value[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("not an element reference: {value}"))
                .to_owned(),
        }
    }

    /// Runs `script` as a function body in the page; `arguments` holds
    /// `args`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Runs `script` until it calls its last argument with the result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// Presses each key in turn (down, then up), as a keyboard would.
    pub async fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                [
                    json!({"type": "keyDown", "value": key.to_string()}),
                    json!({"type": "keyUp", "value": key.to_string()}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await
            .expect("actions released");
    }

    /// The visible viewport as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self.get("/screenshot").await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("base64 text"))
            .expect("the screenshot is base64")
    }

    /// Polls `condition` until it holds, failing after `limit` with
    /// `what`.
    pub async fn wait_until<F, Fut>(&self, limit: Duration, what: &str, mut condition: F)
    where
        F: FnMut(Session) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        while !condition(self.clone()).await {
            if Instant::now() >= deadline {
                panic!(
                    "waited {limit:?} for {what}; the page is {} and reads:\n{}",
                    self.current_url().await,
                    self.page_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Element {
    pub async fn click(&self) {
        self.session
            .post(&format!("/element/{}/click", self.id), json!({}))
            .await;
    }

    /// Whether the element is gone from the page, as when the page it was
    /// on has been left.
    pub async fn is_stale(&self) -> bool {
        match self
            .session
            .command(
                reqwest::Method::GET,
                &format!("/element/{}/name", self.id),
                None,
            )
            .await
        {
            Ok(_) => false,
            // Mid-navigation chromedriver may also say the node has left
            // the document.
            Err(error) => {
                error.starts_with("stale element reference")
                    || error.contains("does not belong to the document")
            }
        }
    }

    /// Empties an input.
    pub async fn clear(&self) {
        self.session
            .post(&format!("/element/{}/clear", self.id), json!({}))
            .await;
    }

    /// Types `text` into the element (focusing it first).
    pub async fn send_keys(&self, text: &str) {
        self.session
            .post(
                &format!("/element/{}/value", self.id),
                json!({"text": text}),
            )
            .await;
    }

    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.session
            .get(&format!("/element/{}/attribute/{name}", self.id))
            .await
            .as_str()
            .map(str::to_owned)
    }

    pub async fn property(&self, name: &str) -> Value {
        self.session
            .get(&format!("/element/{}/property/{name}", self.id))
            .await
    }

    pub async fn text(&self) -> String {
        self.session
            .get(&format!("/element/{}/text", self.id))
            .await
            .as_str()
            .expect("text is a string")
            .to_owned()
    }
}

/// One WebDriver command: its `value`, or the error's name and message.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = http.request(method, url).timeout(Duration::from_secs(120));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|error| error.to_string())?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|error| error.to_string())?;
    let value = answer["value"].clone();
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{}: {}",
            value["error"].as_str().unwrap_or("unknown error"),
            value["message"].as_str().unwrap_or_default()
        ))
    }
}
