//! The requests of the load runs: the same requests as wrk scripts (for
//! the peaks, when wrk is installed) and as steps of the bench's driver
//! (for the paced runs, the journey, and wherever wrk is missing).

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use uuid::Uuid;

use crate::common::{Load, Pace, WRK_THREADS, drive, expect_success, wrk, wrk_installed};
use crate::fixtures::{Range, uuid_of};
use crate::people;

/// One request (or journey) of a driver's worker.
pub type Step = BoxFuture<'static, ()>;

/// The server under load, as the bench's driver reaches it.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub address: Arc<str>,
    pub key: Arc<str>,
    pub concurrency: usize,
}

/// A wrk script (in this folder) with the arguments its `init` takes.
pub struct WrkScript {
    pub path: &'static str,
    pub script: &'static str,
    pub args: Vec<String>,
}

impl Target {
    /// The k-th request of a worker: its place in the run's range.
    fn slot(&self, worker: usize, k: u64) -> i64 {
        worker as i64 + self.concurrency as i64 * k as i64
    }

    fn post(&self, path: &str, idempotency_key: String, body: String) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&*self.key)
            .header("idempotency-key", idempotency_key)
            .header("content-type", "application/json")
            .body(body)
    }

    fn step(request: reqwest::RequestBuilder) -> Step {
        Box::pin(async move {
            expect_success(request).await;
        })
    }

    /// POST /v1/verifications for the people of `range` (verify.lua).
    pub fn verification(
        &self,
        range: Range,
    ) -> impl Fn(usize, u64) -> Step + Send + Sync + 'static {
        let target = self.clone();
        move |worker, k| {
            let n = range.at(target.slot(worker, k));
            Self::step(target.post(
                "/v1/verifications",
                format!("v-{n}"),
                people::verification_body(n, None),
            ))
        }
    }

    pub fn verification_script(&self, range: Range) -> WrkScript {
        WrkScript {
            path: "/v1/verifications",
            script: "verify.lua",
            args: vec![
                self.key.to_string(),
                range.first.to_string(),
                range.count.to_string(),
                WRK_THREADS.to_string(),
            ],
        }
    }

    /// POST /v1/tokens for the memberships of `range` (issue.lua).
    pub fn issuance(
        &self,
        offer: Uuid,
        range: Range,
    ) -> impl Fn(usize, u64) -> Step + Send + Sync + 'static {
        let target = self.clone();
        move |worker, k| {
            let n = range.at(target.slot(worker, k));
            Self::step(target.post(
                "/v1/tokens",
                format!("i-{n}"),
                format!(
                    r#"{{"membership_id":"{}","offer_id":"{offer}"}}"#,
                    uuid_of(n)
                ),
            ))
        }
    }

    pub fn issuance_script(&self, offer: Uuid, range: Range) -> WrkScript {
        WrkScript {
            path: "/v1/tokens",
            script: "issue.lua",
            args: vec![
                self.key.to_string(),
                offer.to_string(),
                range.first.to_string(),
                range.count.to_string(),
                WRK_THREADS.to_string(),
            ],
        }
    }

    /// POST /v1/redemptions of the tokens of `range`, signed in `signed` in
    /// the same order.
    pub fn redemption(
        &self,
        range: Range,
        signed: Arc<Vec<String>>,
    ) -> impl Fn(usize, u64) -> Step + Send + Sync + 'static {
        let target = self.clone();
        move |worker, k| {
            let n = range.at(target.slot(worker, k));
            Self::step(target.post(
                "/v1/redemptions",
                format!("rd-{n}"),
                format!(
                    r#"{{"token":"{}","order_ref":"order-{n}","amount":12900}}"#,
                    signed[(n - range.first) as usize]
                ),
            ))
        }
    }

    /// redeem.lua, over a file of signed tokens, one a line.
    pub fn redemption_script(&self, tokens_file: &Path) -> WrkScript {
        WrkScript {
            path: "/v1/redemptions",
            script: "redeem.lua",
            args: vec![
                self.key.to_string(),
                tokens_file.display().to_string(),
                WRK_THREADS.to_string(),
            ],
        }
    }

    /// A verification naming the offer, then the redemption of the token
    /// in its answer.
    pub fn journey(
        &self,
        offer: Uuid,
        range: Range,
    ) -> impl Fn(usize, u64) -> Step + Send + Sync + 'static {
        let target = self.clone();
        move |worker, k| {
            let n = range.at(target.slot(worker, k));
            let target = target.clone();
            Box::pin(async move {
                let answer = expect_success(target.post(
                    "/v1/verifications",
                    format!("jv-{n}"),
                    people::verification_body(n, Some(offer)),
                ))
                .await;
                let answer: serde_json::Value =
                    serde_json::from_str(&answer).expect("a JSON answer");
                let token = answer["token"]["token"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no token for person {n}: {answer}"));
                expect_success(target.post(
                    "/v1/redemptions",
                    format!("jr-{n}"),
                    format!(r#"{{"token":"{token}","order_ref":"order-{n}","amount":12900}}"#),
                ))
                .await;
            })
        }
    }

    /// A GET of `path`, with the checkout's key when `with_key` (get.lua).
    pub fn get(
        &self,
        path: &'static str,
        with_key: bool,
    ) -> impl Fn(usize, u64) -> Step + Send + Sync + 'static {
        let target = self.clone();
        move |_, _| {
            let request = target.client.get(format!("{}{path}", target.address));
            Self::step(if with_key {
                request.bearer_auth(&*target.key)
            } else {
                request
            })
        }
    }

    pub fn get_script(&self, path: &'static str, with_key: bool) -> WrkScript {
        WrkScript {
            path,
            script: "get.lua",
            args: if with_key {
                vec![self.key.to_string()]
            } else {
                vec![]
            },
        }
    }

    /// The requests at their peak for `seconds`: wrk with `script` when
    /// there is one and wrk is installed, else the bench's driver.
    pub async fn at_peak<F>(&self, seconds: u64, script: Option<WrkScript>, step: F) -> Load
    where
        F: Fn(usize, u64) -> Step + Send + Sync + 'static,
    {
        match script {
            Some(script) if wrk_installed() => wrk(
                &format!("{}{}", self.address, script.path),
                &Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("benches/checkout")
                    .join(script.script),
                &script.args,
                seconds,
                self.concurrency,
            ),
            _ => drive(seconds, self.concurrency, Pace::Closed, step).await,
        }
    }

    /// The requests paced at `rate` a second for `seconds`.
    pub async fn paced<F>(&self, seconds: u64, rate: f64, step: F) -> Load
    where
        F: Fn(usize, u64) -> Step + Send + Sync + 'static,
    {
        drive(seconds, self.concurrency, Pace::Rate(rate), step).await
    }
}
