//! What every zKillboard/EVE Ref client shares: the identifying User-Agent,
//! a request pacer and the classification of failed responses.
//!
//! The clients never sleep on errors themselves: they return a [`FetchError`]
//! that says what happened (and for 429 how long the server asked to wait),
//! and the caller — which owns cancellation and the backoff policy — decides.
//! The only waiting done here is the [`Pacer`], which keeps a client under its
//! request rate.

use std::time::Duration;

use tokio::time::Instant;

/// An identifying User-Agent with the operator's contact, as zKillboard and ESI ask.
pub fn user_agent(contact: &str) -> String {
    format!(
        "BattleScope/{} ({contact}; +https://github.com/battlescope/battlescope)",
        env!("CARGO_PKG_VERSION")
    )
}

/// Builds the HTTP client every zKillboard client uses.
pub fn build_client(contact: &str, timeout: Duration) -> Result<reqwest::Client, FetchError> {
    reqwest::Client::builder()
        .user_agent(user_agent(contact))
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| FetchError::Transport(e.to_string()))
}

/// A failed fetch, classified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// 429: over the rate limit. `retry_after` when the server said.
    #[error("rate limited (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// 403: refused (missing or unacceptable User-Agent, or access denied).
    #[error("forbidden (403)")]
    Forbidden,
    /// 5xx or another unexpected status.
    #[error("server error ({0})")]
    Server(u16),
    /// A 200 whose body is an HTML error page (Cloudflare, proxies).
    #[error("html error page with status 200")]
    Html,
    /// Connection, timeout or body read failure.
    #[error("transport error: {0}")]
    Transport(String),
    /// The body is not the expected JSON.
    #[error("unparseable body: {0}")]
    Body(String),
}

impl FetchError {
    /// Whether retrying later may succeed (everything except a refusal).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Forbidden)
    }
}

/// Classifies a response that is not a plain success: 429, 403, 5xx.
pub(crate) fn status_error(resp: &reqwest::Response) -> FetchError {
    let status = resp.status().as_u16();
    match status {
        429 => FetchError::RateLimited {
            retry_after: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        403 => FetchError::Forbidden,
        other => FetchError::Server(other),
    }
}

/// Reads a 200 body, refusing HTML error pages (zkillbot discards bodies starting with `<`).
pub(crate) async fn json_body(resp: reqwest::Response) -> Result<bytes::Bytes, FetchError> {
    let body = resp
        .bytes()
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    if body.trim_ascii_start().first() == Some(&b'<') {
        return Err(FetchError::Html);
    }
    Ok(body)
}

pub(crate) fn transport(e: reqwest::Error) -> FetchError {
    FetchError::Transport(e.to_string())
}

/// Spaces requests at least `1/rps` apart. Shared by every request of a client,
/// so probes and refetches count against the same budget as the main walk.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    /// `rps` requests per second; 0 means unpaced.
    pub fn new(rps: u32) -> Self {
        let interval = if rps == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / f64::from(rps))
        };
        Self {
            interval,
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        if self.interval.is_zero() {
            return;
        }
        let mut next = self.next.lock().await;
        let now = Instant::now();
        if *next > now {
            tokio::time::sleep_until(*next).await;
        }
        *next = Instant::now().max(*next) + self.interval;
    }
}
