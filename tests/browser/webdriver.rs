//! The suite's view of a browser: fantoccini's WebDriver client, with the
//! few commands the tests use, each failing the test with what the page
//! showed.

use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::Value;

/// Keys as WebDriver codes them (the Unicode private-use characters of the
/// specification's key table, as fantoccini's `Key` names them).
pub mod keys {
    pub const TAB: char = '\u{E004}';
    pub const ENTER: char = '\u{E007}';
    pub const SPACE: char = '\u{E00D}';
}

/// One browser session on a WebDriver server.
#[derive(Clone, Debug)]
pub struct Session {
    client: Client,
    base: String,
    browser_pid: Option<u32>,
}

/// A reference to an element of the current page.
#[derive(Clone, Debug)]
pub struct Element {
    session: Session,
    element: fantoccini::elements::Element,
}

impl Session {
    /// Opens a session with `capabilities`.
    pub async fn new(webdriver: &str, capabilities: Value) -> Result<Self, String> {
        let capabilities: Capabilities = match capabilities {
            Value::Object(map) => map,
            other => return Err(format!("capabilities must be an object: {other}")),
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(webdriver)
            .await
            .map_err(|error| error.to_string())?;
        let id = client
            .session_id()
            .await
            .map_err(|error| error.to_string())?
            .ok_or("the server named no session")?;
        let browser_pid = client
            .capabilities()
            .and_then(|c| c.get("goog:processID"))
            .and_then(Value::as_u64)
            .and_then(|pid| u32::try_from(pid).ok());
        Ok(Session {
            client,
            base: format!("{webdriver}/session/{id}"),
            browser_pid,
        })
    }

    /// The session's address on its WebDriver server (to end it from a
    /// runtime of its own).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The browser's own process, where the server tells it.
    pub fn browser_pid(&self) -> Option<u32> {
        self.browser_pid
    }

    /// How long an asynchronous script may take before the command fails.
    pub async fn set_script_timeout(&self, timeout: Duration) {
        let mut timeouts = TimeoutConfiguration::default();
        timeouts.set_script(Some(timeout));
        self.client
            .update_timeouts(timeouts)
            .await
            .expect("timeouts set");
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("going to {url}: {error}"));
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// The first element matching the CSS selector, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => Some(self.element(element)),
            Err(error) if error.is_no_such_element() => None,
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
        let element = self.client.active_element().await.expect("active element");
        self.element(element)
    }

    fn element(&self, element: fantoccini::elements::Element) -> Element {
        Element {
            session: self.clone(),
            element,
        }
    }

    /// Runs `script` as a function body in the page; `arguments` holds
    /// `args`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("script failed: {error}"))
    }

    /// Runs `script` until it calls its last argument with the result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute_async(script, args)
            .await
            .unwrap_or_else(|error| panic!("asynchronous script failed: {error}"))
    }

    /// Presses each key in turn (down, then up), as a keyboard would.
    pub async fn press(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for key in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key });
        }
        self.client
            .perform_actions(actions)
            .await
            .expect("keys pressed");
        self.client
            .release_actions()
            .await
            .expect("actions released");
    }

    /// The visible viewport as a PNG.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("a screenshot")
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
        self.element.click().await.expect("clicked");
    }

    /// Whether the element is gone from the page, as when the page it was
    /// on has been left.
    pub async fn is_stale(&self) -> bool {
        match self.element.tag_name().await {
            Ok(_) => false,
            // Mid-navigation chromedriver may also say the node has left
            // the document.
            Err(error) => {
                error.is_stale_element_reference()
                    || error
                        .to_string()
                        .contains("does not belong to the document")
            }
        }
    }

    /// Empties an input.
    pub async fn clear(&self) {
        self.element.clear().await.expect("cleared");
    }

    /// Types `text` into the element (focusing it first).
    pub async fn send_keys(&self, text: &str) {
        self.element.send_keys(text).await.expect("typed");
    }

    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.element.attr(name).await.expect("attribute read")
    }

    /// A DOM property, as JSON (`checked` is a boolean).
    pub async fn property(&self, name: &str) -> Value {
        self.session
            .execute(
                "return arguments[0][arguments[1]];",
                vec![
                    serde_json::to_value(&self.element).expect("element reference"),
                    Value::String(name.to_owned()),
                ],
            )
            .await
    }

    pub async fn text(&self) -> String {
        self.element.text().await.expect("text read")
    }
}
