//! The `[events]` and `[webhooks]` settings.

use std::time::Duration;

use serde::Deserialize;

/// Events written by `serve` itself rather than by a caller's change.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// `membership.expiring` is written this many days before a membership
    /// ends (0: never).
    pub membership_expiring_before_days: u32,
    /// How often each process looks for expiring memberships and refreshes
    /// the event metrics.
    pub job_interval_ms: u64,
    /// Events are kept this long (those still being delivered longer), and
    /// the delivery log as long.
    pub retention_days: u32,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            membership_expiring_before_days: 14,
            job_interval_ms: 60_000,
            retention_days: 30,
        }
    }
}

impl EventSettings {
    pub fn job_interval(&self) -> Duration {
        Duration::from_millis(self.job_interval_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.job_interval_ms < 10 || self.membership_expiring_before_days > 366 {
            return Err(
                "events: job_interval_ms at least 10, membership_expiring_before_days \
                        at most 366"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Delivery of events to webhook endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookSettings {
    /// Whether this process delivers (any number of processes may).
    pub deliver: bool,
    /// Hosts endpoints may be registered at: exact names, or `*.example.com`
    /// for its subdomains. Empty: any host.
    pub allowed_hosts: Vec<String>,
    /// Whether receivers may resolve to private, loopback or link-local
    /// addresses. True in development only.
    pub allow_private_addresses: bool,
    /// One delivery request's deadline.
    pub request_timeout_ms: u64,
    /// How long a claimed delivery stays claimed; past it, another process
    /// may take it over (its claimer died). Longer than the request timeout.
    pub lease_ms: u64,
    /// How often each process looks for due deliveries when it found none.
    pub poll_interval_ms: u64,
    /// Deliveries claimed at once by a process.
    pub batch_size: i64,
    /// Deliveries in flight at once to one endpoint, per process.
    pub per_endpoint_concurrency: i64,
    /// The waits between attempts: the first attempt is immediate, then
    /// one retry per entry. Standard Webhooks' schedule by default.
    pub retry_delays_ms: Vec<u64>,
    /// Each wait varies by up to this fraction either way.
    pub jitter: f64,
    /// An endpoint failing for this long without a success is disabled.
    pub disable_after_days: f64,
    /// After a rotation, the previous secret keeps signing this long.
    pub secret_overlap_secs: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            deliver: true,
            allowed_hosts: Vec::new(),
            allow_private_addresses: false,
            request_timeout_ms: 10_000,
            lease_ms: 30_000,
            poll_interval_ms: 1_000,
            batch_size: 64,
            per_endpoint_concurrency: 4,
            retry_delays_ms: vec![
                5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
            ],
            jitter: 0.1,
            disable_after_days: 5.0,
            secret_overlap_secs: 86_400,
        }
    }
}

impl WebhookSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout_ms == 0 || self.lease_ms <= self.request_timeout_ms + 100 {
            return Err(
                "webhooks: lease_ms must exceed request_timeout_ms (by 100 ms at least): \
                        a claim must outlive its request"
                    .into(),
            );
        }
        if self.poll_interval_ms < 10
            || !(1..=1_000).contains(&self.batch_size)
            || !(1..=100).contains(&self.per_endpoint_concurrency)
        {
            return Err(
                "webhooks: poll_interval_ms at least 10, batch_size 1 to 1000, \
                        per_endpoint_concurrency 1 to 100"
                    .into(),
            );
        }
        if self.retry_delays_ms.len() > 20
            || self.retry_delays_ms.iter().any(|d| *d > 7 * 86_400_000)
            || !(0.0..=0.5).contains(&self.jitter)
            || !(self.disable_after_days > 0.0 && self.disable_after_days <= 365.0)
            || self.secret_overlap_secs > 30 * 86_400
        {
            return Err(
                "webhooks: at most 20 retry_delays_ms of at most 7 days each, jitter \
                        0 to 0.5, disable_after_days above 0 and at most 365, \
                        secret_overlap_secs at most 30 days"
                    .into(),
            );
        }
        Ok(())
    }
}
