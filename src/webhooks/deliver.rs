//! The deliverers: a task inside every `serve` process that claims due
//! deliveries in the database, sends them signed per Standard Webhooks, and
//! records each attempt. Any number of processes may deliver: a claim is a
//! row lease taken with `FOR UPDATE SKIP LOCKED`, so no delivery is sent by
//! two processes at once, and one whose process died is due again once its
//! lease lapses, with the same `webhook-id`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::RngExt;
use secrecy::SecretSlice;
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::Webhooks;
use super::address::CheckedResolver;
use super::settings::WebhookSettings;
use crate::store::webhooks::{self as store, AttemptRecord, ClaimCall, Claimed, Outcome};

/// The metric counting delivery attempts, labelled by `outcome`.
pub const DELIVERIES_METRIC: &str = "webhook_deliveries_total";
/// Bytes of a receiver's answer kept in the delivery log.
pub const EXCERPT_MAX: usize = 1_024;

/// The body of a delivery: the event as `GET /v1/events` lists it.
#[derive(Serialize)]
pub struct Envelope<'a> {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub data: &'a serde_json::Value,
}

/// The wait before retry number `retry` (1 for the first retry), with
/// jitter, or None when the schedule is over.
pub fn retry_delay(settings: &WebhookSettings, retry: usize) -> Option<Duration> {
    let base = *settings.retry_delays_ms.get(retry.checked_sub(1)?)?;
    let spread = if settings.jitter > 0.0 {
        rand::rng().random_range(-settings.jitter..=settings.jitter)
    } else {
        0.0
    };
    Some(Duration::from_secs_f64(
        (base as f64 * (1.0 + spread) / 1_000.0).max(0.0),
    ))
}

pub struct Deliverer {
    db: PgPool,
    webhooks: Webhooks,
    client: reqwest::Client,
}

impl Deliverer {
    pub fn new(db: PgPool, webhooks: Webhooks) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(webhooks.settings.request_timeout())
            .connect_timeout(webhooks.settings.request_timeout())
            // A receiver's redirect is a failure, not a new destination.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("offergate-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(std::sync::Arc::new(CheckedResolver(
                webhooks.destinations.clone(),
            )))
            .build()?;
        Ok(Deliverer {
            db,
            webhooks,
            client,
        })
    }

    /// Claims up to `limit` due deliveries.
    pub async fn claim(&self, limit: usize) -> Result<(Uuid, Vec<Claimed>), sqlx::Error> {
        let settings = &self.webhooks.settings;
        let claim = Uuid::new_v4();
        let claimed = store::claim(
            &self.db,
            &ClaimCall {
                claim,
                limit: i64::try_from(limit).unwrap_or(i64::MAX),
                lease_secs: settings.lease().as_secs_f64(),
                per_endpoint: settings.per_endpoint_concurrency,
            },
        )
        .await?;
        Ok((claim, claimed))
    }

    pub async fn deliver(&self, claim: Uuid, message: Claimed) -> Result<(), sqlx::Error> {
        let settings = &self.webhooks.settings;
        let started = Instant::now();
        let sent = self.send(&message).await;
        let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let retry = usize::try_from(message.attempts - message.round_start).unwrap_or(usize::MAX);
        let failed = || Outcome::Failed {
            retry_in_secs: retry_delay(settings, retry).map(|d| d.as_secs_f64()),
        };
        let (outcome, status_code, excerpt, error) = match &sent {
            Ok((status, body)) if (200..300).contains(status) => {
                (Outcome::Delivered, Some(*status), Some(body.as_str()), None)
            }
            Ok((410, body)) => (Outcome::Gone, Some(410), Some(body.as_str()), None),
            Ok((status, body)) => (failed(), Some(*status), Some(body.as_str()), None),
            Err(error) => (failed(), None, None, Some(error.as_str())),
        };
        metrics::counter!(DELIVERIES_METRIC, "outcome" => match outcome {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Failed { retry_in_secs: Some(_) } => "retrying",
            Outcome::Failed { retry_in_secs: None } => "failed",
        })
        .increment(1);
        let mut tx = self.db.begin().await?;
        let recorded = store::record(
            &mut tx,
            &AttemptRecord {
                claim,
                event_id: message.event_id,
                endpoint_id: message.endpoint_id,
                attempt: message.attempts,
                outcome,
                status_code: status_code.map(i32::from),
                latency_ms,
                response_excerpt: excerpt,
                error,
                disable_after_secs: settings.disable_after_days * 86_400.0,
            },
        )
        .await?;
        tx.commit().await?;
        if !recorded {
            tracing::warn!(
                event = %message.event_id,
                endpoint = %message.endpoint_id,
                "a webhook delivery outlived its lease; its result was not recorded"
            );
        }
        Ok(())
    }

    /// Sends one delivery: the receiver's status and the start of its
    /// answer, or why nothing came back.
    async fn send(&self, message: &Claimed) -> Result<(u16, String), String> {
        let url = self
            .webhooks
            .destinations
            .parse(&message.url)
            .map_err(|refused| format!("the endpoint's URL is refused: {refused}"))?;
        if let Some(host) = url.host_str()
            && host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok()
        {
            // An address written in the URL is not resolved: check it here.
            self.webhooks
                .destinations
                .resolve(host, 0)
                .await
                .map_err(|refused| format!("the endpoint's URL is refused: {refused}"))?;
        }
        let body = serde_json::to_vec(&Envelope {
            id: message.event_id,
            kind: &message.kind,
            timestamp: message.occurred_at,
            data: &message.data,
        })
        .map_err(|e| e.to_string())?;
        let secrets = self.secrets(message)?;
        let id = message.event_id.to_string();
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let signature = super::signature::header(&secrets, &id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status().as_u16();
        let mut excerpt = Vec::new();
        let mut stream = response.bytes_stream();
        while excerpt.len() < EXCERPT_MAX {
            match stream.next().await {
                Some(Ok(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(EXCERPT_MAX);
        Ok((status, String::from_utf8_lossy(&excerpt).into_owned()))
    }

    fn secrets(&self, message: &Claimed) -> Result<Vec<SecretSlice<u8>>, String> {
        let sealer = &self.webhooks.sealer;
        let mut secrets = vec![
            sealer
                .unseal(message.endpoint_id, &message.sealed_secret)
                .map_err(|e| e.to_string())?,
        ];
        if let Some(previous) = &message.sealed_previous_secret {
            secrets.push(
                sealer
                    .unseal(message.endpoint_id, previous)
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(secrets)
    }
}

/// A request error as the delivery log shows it, with its cause.
fn describe(error: reqwest::Error) -> String {
    use std::error::Error;
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(EXCERPT_MAX).collect()
}

/// Delivers until `stopping` turns true. At most `batch_size` deliveries
/// are in flight per process, each on a task of its own, so a slow
/// receiver holds only its own slots (and at most
/// `per_endpoint_concurrency` of them): while it hangs, the others' due
/// deliveries are claimed and sent.
pub async fn run(db: PgPool, webhooks: Webhooks, mut stopping: watch::Receiver<bool>) {
    let interval = webhooks.settings.poll_interval();
    let slots = usize::try_from(webhooks.settings.batch_size).unwrap_or(1);
    let deliverer = match Deliverer::new(db, webhooks) {
        Ok(deliverer) => Arc::new(deliverer),
        Err(error) => {
            tracing::error!(%error, "webhook delivery cannot start");
            return;
        }
    };
    let free = Arc::new(Semaphore::new(slots));
    loop {
        let available = free.available_permits();
        let pause = if available == 0 {
            // Every slot busy: wait for one to free up.
            tokio::select! {
                _ = free.acquire() => {}
                _ = stopping.wait_for(|stopping| *stopping) => return,
            }
            Duration::ZERO
        } else {
            let claimed = tokio::select! {
                claimed = deliverer.claim(available) => claimed,
                _ = stopping.wait_for(|stopping| *stopping) => return,
            };
            match claimed {
                Ok((claim, messages)) => {
                    let full = messages.len() >= available;
                    for message in messages {
                        let Ok(slot) = free.clone().try_acquire_owned() else {
                            break;
                        };
                        let deliverer = deliverer.clone();
                        tokio::spawn(async move {
                            if let Err(error) = deliverer.deliver(claim, message).await {
                                tracing::warn!(%error, "recording a webhook attempt failed");
                            }
                            drop(slot);
                        });
                    }
                    // A full claim: more may be due at once.
                    if full { Duration::ZERO } else { interval }
                }
                Err(error) => {
                    tracing::warn!(%error, "claiming webhook deliveries failed; trying again later");
                    interval
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
    }
}
