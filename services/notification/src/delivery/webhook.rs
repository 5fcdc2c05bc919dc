//! The webhook sender: drains the `deliveries` outbox, one request at a time per webhook.
//!
//! Every send re-checks the URL and resolves its host through the SSRF guard, then connects
//! to exactly the checked address (reqwest `resolve` override: no second DNS lookup), follows
//! no redirects, ignores proxies, and caps the response read. The outcome goes through the
//! pure [`retry::decide`](crate::domain::retry::decide). A per-webhook minimum interval paces
//! sends; a 429 pushes that webhook's next slot out by its `retry_after`.
//!
//! On the wire this is at-least-once: a crash between a 2xx and its `sent` row means one
//! resend. Each request carries `X-BattleScope-Delivery` (unique per webhook and subject) so a
//! receiver can drop that rare duplicate; the outbox itself never holds two rows for a match.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bs_runtime::Clock;
use rand::Rng as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::retry::{self, Attempt, Decision, RetrySettings};
use crate::ssrf::{self, AllowList};
use crate::store::{DueDelivery, NotificationStore};

/// Sender tuning.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub retry: RetrySettings,
    /// Minimum time between two requests to the same webhook.
    pub min_interval: Duration,
    /// How often the outbox is polled when nothing wakes the sender.
    pub poll: Duration,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Webhooks served concurrently.
    pub concurrency: usize,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            retry: RetrySettings::default(),
            min_interval: Duration::from_millis(500),
            poll: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            concurrency: 16,
        }
    }
}

/// The largest response body read (for `retry_after`).
const MAX_BODY: usize = 64 * 1024;

pub struct Sender {
    pub store: Arc<dyn NotificationStore>,
    pub clock: Arc<dyn Clock>,
    pub allow: AllowList,
    pub settings: SenderSettings,
    /// Woken by the consumer after it enqueued deliveries.
    pub wake: Arc<Notify>,
}

fn parse_secs(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok()
}

/// One HTTP attempt through the SSRF guard.
pub async fn send_once(d: &DueDelivery, allow: &AllowList, settings: &SenderSettings) -> Attempt {
    let url = match ssrf::check_url(&d.url, allow) {
        Ok(u) => u,
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    let addr = match ssrf::resolve(&url, allow).await {
        Ok(a) => a,
        Err(e @ ssrf::SsrfError::Unresolvable(_)) => return Attempt::Transport(e.to_string()),
        Err(e) => return Attempt::Refused(e.to_string()),
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout);
    if let Some(url::Host::Domain(host)) = url.host() {
        builder = builder.resolve(host, addr);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => return Attempt::Transport(e.to_string()),
    };
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "BattleScope notifications")
        .header("x-battlescope-delivery", d.id.to_string())
        .body(d.body.clone())
        .send()
        .await;
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => return Attempt::Transport(e.to_string()),
    };
    let code = resp.status().as_u16();
    let header = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_secs);
    let mut body_after = None;
    if code == 429 {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            if buf.len() > MAX_BODY {
                break;
            }
        }
        body_after = serde_json::from_slice::<serde_json::Value>(&buf)
            .ok()
            .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64));
    }
    Attempt::Status {
        code,
        retry_after_header: header,
        retry_after_body: body_after,
    }
}

impl Sender {
    /// Runs until shutdown. An in-flight request is finished and recorded before it stops.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next_slot: HashMap<i64, Instant> = HashMap::new();
        while !shutdown.is_cancelled() {
            let due = match self.store.due_deliveries(self.clock.now(), 500).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the delivery outbox");
                    Vec::new()
                }
            };
            // The oldest due delivery of each webhook whose slot is open.
            let now = Instant::now();
            let mut picked: Vec<DueDelivery> = Vec::new();
            let mut earliest: Option<Instant> = None;
            for d in due {
                if picked.iter().any(|p| p.webhook_id == d.webhook_id) {
                    continue;
                }
                match next_slot.get(&d.webhook_id) {
                    Some(&slot) if slot > now => {
                        earliest = Some(earliest.map_or(slot, |e| e.min(slot)));
                    }
                    _ => picked.push(d),
                }
                if picked.len() >= self.settings.concurrency {
                    break;
                }
            }
            if picked.is_empty() {
                let wait = earliest
                    .map(|e| e.saturating_duration_since(now))
                    .unwrap_or(self.settings.poll)
                    .min(self.settings.poll);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
                continue;
            }
            let results = futures::future::join_all(
                picked
                    .iter()
                    .map(|d| send_once(d, &self.allow, &self.settings)),
            )
            .await;
            for (d, attempt) in picked.iter().zip(results) {
                let pause = self.record(d, &attempt).await;
                next_slot.insert(
                    d.webhook_id,
                    Instant::now() + self.settings.min_interval.max(pause),
                );
            }
            next_slot.retain(|_, slot| *slot > Instant::now());
        }
    }

    /// Stores the outcome; returns how long the webhook should rest (429).
    async fn record(&self, d: &DueDelivery, attempt: &Attempt) -> Duration {
        let rate_limited = matches!(attempt, Attempt::Status { code: 429, .. });
        let attempts = d.attempts + u32::from(!rate_limited);
        let limited = d.rate_limited + u32::from(rate_limited);
        let jitter: f64 = rand::rng().random();
        let decision = retry::decide(attempt, attempts, limited, &self.settings.retry, jitter);
        let now = self.clock.now();
        let outcome = match &decision {
            Decision::Delivered => self.store.mark_delivered(d.id, attempts, now).await,
            Decision::Retry {
                after,
                counts,
                reason,
            } => {
                let attempts = if *counts { attempts } else { d.attempts };
                let next = now + chrono::Duration::from_std(*after).unwrap_or_default();
                self.store
                    .reschedule(d.id, next, attempts, limited, reason)
                    .await
            }
            Decision::DeadLetter { reason } => {
                self.store.dead_letter(d.id, attempts, reason, now).await
            }
            Decision::Disable { reason } => {
                self.store.disable_webhook(d.webhook_id, reason, now).await
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(delivery = d.id, error = %e, "cannot record a delivery outcome");
        }
        let label = match &decision {
            Decision::Delivered => "delivered",
            Decision::Retry { .. } => "retry",
            Decision::DeadLetter { .. } => "dead_letter",
            Decision::Disable { .. } => "disabled",
        };
        metrics::counter!("battlescope_notification_webhook_attempts_total", "outcome" => label)
            .increment(1);
        match decision {
            Decision::Retry {
                after,
                counts: false,
                ..
            } => after,
            _ => Duration::ZERO,
        }
    }
}
