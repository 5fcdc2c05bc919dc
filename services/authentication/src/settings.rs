//! The service's settings, derived once from the shared configuration.
//!
//! Operator-facing knobs live in `bs-config` (`[sso]`, `[auth]`, `public_url`,
//! `listen`); the rest are engineering constants here, overridable by tests through
//! [`Settings`] directly.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bs_config::Config;
use chrono::TimeDelta;
use url::Url;

use crate::domain::session::SessionPolicy;

/// Cookie carrying the opaque session id.
pub const SESSION_COOKIE: &str = "battlescope_session";
/// Cookie carrying the CSRF token (readable by the page's scripts, bound to the session).
pub const CSRF_COOKIE: &str = "battlescope_csrf";
/// Cookie binding a pending SSO login to this browser (`SameSite=Lax`: it must survive
/// SSO's cross-site top-level redirect back to the callback).
pub const PREAUTH_COOKIE: &str = "battlescope_preauth";
/// The names used over https (`Secure` cookies).
pub const SECURE_SESSION_COOKIE: &str = "__Host-battlescope_session";
pub const SECURE_CSRF_COOKIE: &str = "__Host-battlescope_csrf";
pub const SECURE_PREAUTH_COOKIE: &str = "__Secure-battlescope_preauth";
/// Header carrying the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Form field carrying the CSRF token for plain HTML form posts.
pub const CSRF_FIELD: &str = "csrf_token";

/// Fixed-window rate limits per client address.
#[derive(Clone, Copy, Debug)]
pub struct RateLimits {
    pub window: Duration,
    pub login: i64,
    pub callback: i64,
}

/// Everything the service needs to know about its deployment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// External base URL; its origin is the only accepted `Origin` on state changes.
    pub public_url: Url,
    /// `Secure` cookies (the public URL is https).
    pub secure_cookies: bool,
    pub session: SessionPolicy,
    /// How long a login may take between `/auth/login` and the callback.
    pub login_state_ttl: TimeDelta,
    /// Pending logins kept at most (beyond it new logins get 503 until some expire).
    pub max_pending_logins: i64,
    pub rate_limits: RateLimits,
    /// Refresh access tokens this long before they expire.
    pub refresh_ahead: TimeDelta,
    /// How often the refresh job looks for due grants.
    pub refresh_poll: Duration,
    pub refresh_batch: i64,
    /// Characters' affiliation is re-checked this often.
    pub affiliation_every: TimeDelta,
    pub affiliation_poll: Duration,
    pub affiliation_batch: i64,
    /// The character that becomes the first SuperAdmin.
    pub superadmin_character_id: Option<i64>,
    /// The development login is on (configured on AND served on loopback only).
    pub dev_login: bool,
}

fn parse_duration(name: &str, raw: &str) -> anyhow::Result<TimeDelta> {
    let d = humantime::parse_duration(raw).with_context(|| format!("{name} `{raw}`"))?;
    TimeDelta::from_std(d).with_context(|| format!("{name} `{raw}` is too large"))
}

/// Whether `listen` (an `ip:port` or a bare ip/host) is a loopback address.
pub fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    if let Ok(ip) = listen.trim_matches(['[', ']']).parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    host.eq_ignore_ascii_case("localhost")
}

impl Settings {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let public_url = Url::parse(&config.public_url)
            .with_context(|| format!("public_url `{}`", config.public_url))?;
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host_str().is_none() {
            bail!(
                "public_url `{}` must be an absolute http(s) url",
                config.public_url
            );
        }
        let idle = parse_duration("auth.session_idle", &config.auth.session_idle)?;
        let absolute = parse_duration("auth.session_absolute", &config.auth.session_absolute)?;
        if idle <= TimeDelta::zero() || absolute <= TimeDelta::zero() {
            bail!("auth.session_idle and auth.session_absolute must be positive");
        }
        let dev_login =
            config.auth.dev_login && is_loopback(&config.listen) && is_loopback(&config.ports.host);
        if config.auth.dev_login && !dev_login {
            tracing::warn!(listen = %config.listen, "auth.dev_login is on but the service is not on a loopback address; development login stays off");
        }
        Ok(Self {
            secure_cookies: public_url.scheme() == "https",
            public_url,
            session: SessionPolicy {
                idle,
                absolute,
                touch_every: TimeDelta::minutes(1),
            },
            login_state_ttl: TimeDelta::minutes(10),
            max_pending_logins: 10_000,
            rate_limits: RateLimits {
                window: Duration::from_secs(60),
                login: 30,
                callback: 30,
            },
            refresh_ahead: TimeDelta::minutes(5),
            refresh_poll: Duration::from_secs(30),
            refresh_batch: 100,
            affiliation_every: TimeDelta::hours(1),
            affiliation_poll: Duration::from_secs(60),
            affiliation_batch: 1000,
            superadmin_character_id: (config.auth.superadmin_character_id > 0)
                .then_some(config.auth.superadmin_character_id),
            dev_login,
        })
    }

    /// The session cookie's name: `__Host-` prefixed over https, so no sibling subdomain
    /// (or plain-http response) can plant or overwrite it.
    pub fn session_cookie(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }

    pub fn csrf_cookie(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_CSRF_COOKIE
        } else {
            CSRF_COOKIE
        }
    }

    /// The pre-auth cookie is scoped to `/auth`, so it can take `__Secure-` but not `__Host-`.
    pub fn preauth_cookie(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_PREAUTH_COOKIE
        } else {
            PREAUTH_COOKIE
        }
    }

    /// `scheme://host[:port]` of the public URL, as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for yes in [
            "127.0.0.1:3000",
            "[::1]:3000",
            "127.0.0.1",
            "::1",
            "localhost:3000",
            "localhost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "0.0.0.0:3000",
            "[::]:3000",
            "10.0.0.5:3000",
            "example.org:80",
            "192.168.1.2",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn dev_login_needs_loopback_and_https_means_secure() {
        let mut c = Config::default();
        c.auth.dev_login = true;
        assert!(
            Settings::from_config(&c)
                .map(|s| s.dev_login)
                .unwrap_or(false)
        );
        c.listen = "0.0.0.0:3000".into();
        assert!(
            !Settings::from_config(&c)
                .map(|s| s.dev_login)
                .unwrap_or(true)
        );
        c.public_url = "https://bs.example.org".into();
        assert!(
            Settings::from_config(&c)
                .map(|s| s.secure_cookies)
                .unwrap_or(false)
        );
    }
}
