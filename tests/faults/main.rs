//! The fault suite: the release binary in several processes, against faults
//! a deployment meets. `.ci/faults` runs it (`cargo test --release --test
//! faults -- --ignored`) against a PostgreSQL cluster of its own, which one
//! test stops and starts; each test reports its figures in one line.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../api/processes.rs"]
mod processes;

mod full_pool;
mod outage;
mod sigterm;
mod storm;

use std::collections::HashMap;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use processes::{IN_FLIGHT, Processes, replayed};

/// `count` tokens of `offer` for `membership`, issued on every process in
/// turn.
pub async fn issue_tokens(
    processes: &Processes,
    offer: &str,
    membership: Uuid,
    count: usize,
) -> Vec<String> {
    let issue = json!({"membership_id": membership, "offer_id": offer});
    futures::stream::iter(0..count)
        .map(|n| {
            let request = processes.post(n % processes.servers.len(), "/v1/tokens", None, &issue);
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let issued: Value = response.json().await.unwrap();
                assert_eq!(status, 201, "{issued}");
                issued["token"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// The redemption of each redeemed token, by token id.
pub async fn redemption_of_token(processes: &Processes) -> HashMap<Uuid, Uuid> {
    sqlx::query_as::<_, (Uuid, Uuid)>("SELECT token_id, id FROM redemptions")
        .fetch_all(&processes.db)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// What one fault did, in the figures the suite reports.
pub struct Figures {
    pub fault: &'static str,
    /// Requests sent, retries included.
    pub attempts: usize,
    /// Effects a client was told of (a 201), each checked in the database.
    pub acknowledged: usize,
    /// Acknowledged effects missing or different in the database, and
    /// effects done twice: must be 0.
    pub lost: usize,
    /// Seconds from the fault's end to service as before.
    pub recovery_secs: f64,
    pub detail: String,
}

impl Figures {
    /// One line on stderr and, when `OFFERGATE_FAULTS_REPORT` names a file,
    /// one line appended to it, for `.ci/faults` to print as a table.
    pub fn report(&self) {
        let line = format!(
            "{} | attempts {} | acknowledged effects {} | lost effects {} | recovered in {:.2} s | {}",
            self.fault,
            self.attempts,
            self.acknowledged,
            self.lost,
            self.recovery_secs,
            self.detail
        );
        eprintln!("fault suite: {line}");
        if let Ok(path) = std::env::var("OFFERGATE_FAULTS_REPORT") {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("the report file opens");
            writeln!(file, "{line}").expect("the report is written");
        }
    }
}

/// A whole answer: status, body, and whether it was replayed.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

impl Answer {
    /// The whole answer, or `None` when the client got none.
    pub async fn read(sent: reqwest::Result<reqwest::Response>) -> Option<Self> {
        let response = sent.ok()?;
        let status = response.status().as_u16();
        let replayed = replayed(&response);
        let body = response.json().await.ok()?;
        Some(Answer {
            status,
            body,
            replayed,
        })
    }

    pub fn kind(&self) -> String {
        self.body["type"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| self.status.to_string())
    }
}
