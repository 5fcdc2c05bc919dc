//! What to do after one webhook attempt: the policy of reliability-security.md §6, pure.
//!
//! * 2xx: delivered.
//! * 429: wait `Retry-After` (header first, in seconds, fractional allowed; else the body's
//!   `retry_after`, which Discord has been seen sending in milliseconds — a body value above
//!   [`MS_THRESHOLD`] is read as ms), clamped to [`RetrySettings::max_retry_after`]. Does not
//!   count as an attempt (up to `max_rate_limited` times, so a broken server cannot pin a
//!   delivery forever).
//! * 401/403/404: never retried; the webhook is disabled with the reason.
//! * Other 4xx (400: payload bug) and 3xx (redirects are never followed): dead letter at once.
//! * 5xx, timeouts, connection errors: exponential backoff with jitter until `max_attempts`,
//!   then dead letter.

use std::time::Duration;

/// A body `retry_after` above this many units is taken to be milliseconds.
pub const MS_THRESHOLD: f64 = 1000.0;

#[derive(Clone, Debug)]
pub struct RetrySettings {
    pub base: Duration,
    pub max_backoff: Duration,
    pub max_attempts: u32,
    pub max_retry_after: Duration,
    pub max_rate_limited: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 8,
            max_retry_after: Duration::from_secs(600),
            max_rate_limited: 50,
        }
    }
}

/// The result of one attempt as the policy needs it.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Status {
        code: u16,
        /// `Retry-After` header, parsed as (fractional) seconds.
        retry_after_header: Option<f64>,
        /// `retry_after` from a JSON body.
        retry_after_body: Option<f64>,
    },
    /// Timeout, refused connection, TLS failure.
    Transport(String),
    /// The SSRF guard refused the URL or its address at send time: never sent, not retried.
    Refused(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Delivered,
    /// Try again after `after`; `counts` is false for rate limiting.
    Retry {
        after: Duration,
        counts: bool,
        reason: String,
    },
    DeadLetter {
        reason: String,
    },
    /// Disable the webhook (and dead-letter this delivery).
    Disable {
        reason: String,
    },
}

/// The delay a 429 asks for, clamped.
pub fn retry_after(header: Option<f64>, body: Option<f64>, max: Duration) -> Duration {
    let secs = match (header, body) {
        (Some(h), _) if h.is_finite() && h >= 0.0 => h,
        (_, Some(b)) if b.is_finite() && b >= 0.0 => {
            if b > MS_THRESHOLD {
                b / 1000.0
            } else {
                b
            }
        }
        _ => 1.0,
    };
    Duration::from_secs_f64(secs.min(max.as_secs_f64()))
}

/// Exponential backoff with "equal jitter": half the step fixed, half random (`jitter` ∈ [0,1)),
/// so retries spread out but never collapse to zero.
pub fn backoff(attempts: u32, settings: &RetrySettings, jitter: f64) -> Duration {
    let step = settings
        .base
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)))
        .min(settings.max_backoff);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Decides after an attempt. `attempts` counts previous counted attempts plus this one;
/// `rate_limited` the 429s so far (this one included).
pub fn decide(
    attempt: &Attempt,
    attempts: u32,
    rate_limited: u32,
    settings: &RetrySettings,
    jitter: f64,
) -> Decision {
    let retry_or_dead = |reason: String| {
        if attempts >= settings.max_attempts {
            Decision::DeadLetter {
                reason: format!("{reason} (after {attempts} attempts)"),
            }
        } else {
            Decision::Retry {
                after: backoff(attempts, settings, jitter),
                counts: true,
                reason,
            }
        }
    };
    match attempt {
        Attempt::Transport(e) => retry_or_dead(format!("transport: {e}")),
        Attempt::Refused(e) => Decision::DeadLetter {
            reason: format!("refused: {e}"),
        },
        Attempt::Status { code, .. } if (200..300).contains(code) => Decision::Delivered,
        Attempt::Status {
            code: 429,
            retry_after_header,
            retry_after_body,
        } => {
            if rate_limited > settings.max_rate_limited {
                return Decision::DeadLetter {
                    reason: format!("rate limited {rate_limited} times"),
                };
            }
            Decision::Retry {
                after: retry_after(
                    *retry_after_header,
                    *retry_after_body,
                    settings.max_retry_after,
                ),
                counts: false,
                reason: "429 rate limited".into(),
            }
        }
        Attempt::Status {
            code: c @ (401 | 403 | 404),
            ..
        } => Decision::Disable {
            reason: format!("http {c}: the webhook is gone or its token is invalid"),
        },
        Attempt::Status { code, .. } if *code >= 500 => retry_or_dead(format!("http {code}")),
        Attempt::Status { code, .. } => Decision::DeadLetter {
            reason: format!("http {code}"),
        },
    }
}
