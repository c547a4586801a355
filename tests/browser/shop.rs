//! The shop a verification session returns to: a server on a port of its
//! own that answers `GET /return?session_id=...` with a small page and
//! remembers every session id it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use tokio::task::JoinHandle;

pub struct Shop {
    /// `http://127.0.0.1:<port>`, for `hosted.return_origins`.
    pub origin: String,
    returned: Arc<Mutex<Vec<String>>>,
    server: JoinHandle<()>,
}

impl Shop {
    pub async fn start() -> Self {
        let returned: Arc<Mutex<Vec<String>>> = Arc::default();
        let app = Router::new()
            .route("/return", get(back_at_the_shop))
            .route("/script-probe", get(script_probe))
            .route("/unlabelled", get(unlabelled))
            .with_state(returned.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the shop binds");
        let origin = format!("http://{}", listener.local_addr().expect("bound"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the shop serves");
        });
        Shop {
            origin,
            returned,
            server,
        }
    }

    pub fn return_url(&self) -> String {
        format!("{}/return", self.origin)
    }

    /// The session ids the shop was sent back with, in order.
    pub fn returned_session_ids(&self) -> Vec<String> {
        self.returned.lock().expect("returns").clone()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn back_at_the_shop(
    State(returned): State<Arc<Mutex<Vec<String>>>>,
    Query(query): Query<HashMap<String, String>>,
) -> Html<&'static str> {
    if let Some(id) = query.get("session_id") {
        returned.lock().expect("returns").push(id.clone());
    }
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Back at the shop</title></head>\
         <body><main><h1 id=\"shop\">Back at the shop</h1></main></body></html>",
    )
}

/// A page that says whether it ran its script.
async fn script_probe() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Script probe</title></head>\
         <body><main><p id=\"probe\">scripts off</p>\
         <script>document.getElementById('probe').textContent = 'scripts on';</script>\
         </main></body></html>",
    )
}

/// A page that breaks WCAG twice: an image without a text alternative and
/// a field without a label.
async fn unlabelled() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Unlabelled</title></head>\
         <body><main><h1>Unlabelled</h1>\
         <img src=\"data:image/gif;base64,R0lGODlhAQABAAAAACw=\">\
         <form method=\"post\"><input type=\"text\" name=\"q\"></form>\
         </main></body></html>",
    )
}
