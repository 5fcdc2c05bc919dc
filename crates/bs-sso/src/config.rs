//! SSO configuration: where EVE SSO lives, who we are to it, and its endpoint URLs.
//!
//! The endpoints hang off one base URL exactly as on the real SSO, so pointing
//! `BATTLESCOPE_SSO_URL` at the fake (or a staging SSO) moves all of them at once.
//! When metadata (RFC 8414) is available its URLs are used, but only if they stay on
//! the configured origin: a metadata document must not be able to send our client
//! secret or our users somewhere else.

use serde::Deserialize;
use url::Url;

use crate::secret::Secret;

/// The real EVE SSO.
pub const DEFAULT_SSO_URL: &str = "https://login.eveonline.com";
/// Environment variable names (operators and tests rely on them).
pub const ENV_SSO_URL: &str = "BATTLESCOPE_SSO_URL";
pub const ENV_CLIENT_ID: &str = "BATTLESCOPE_SSO_CLIENT_ID";
pub const ENV_CLIENT_SECRET: &str = "BATTLESCOPE_SSO_CLIENT_SECRET";
pub const ENV_PUBLIC_URL: &str = "BATTLESCOPE_PUBLIC_URL";
/// Space-separated ESI scopes to request; empty (the default) is an identity-only login.
pub const ENV_SCOPES: &str = "BATTLESCOPE_SSO_SCOPES";

pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const AUTHORIZE_PATH: &str = "/v2/oauth/authorize";
pub const TOKEN_PATH: &str = "/v2/oauth/token";
pub const REVOKE_PATH: &str = "/v2/oauth/revoke";
pub const JWKS_PATH: &str = "/oauth/jwks";

/// A configuration problem, reported at startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {0}")]
    Missing(&'static str),
    #[error("setting {name} is not a valid absolute http(s) url")]
    BadUrl { name: &'static str },
    #[error("sso metadata endpoint {field} is not on the configured sso origin")]
    ForeignEndpoint { field: &'static str },
}

/// Who we are to EVE SSO.
#[derive(Clone, Debug)]
pub struct SsoConfig {
    /// SSO base URL (`https://login.eveonline.com` by default).
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Where SSO sends the browser back: `{BATTLESCOPE_PUBLIC_URL}/auth/callback`.
    pub callback_url: Url,
    /// ESI scopes requested at login; empty means identity only.
    pub scopes: Vec<String>,
}

impl SsoConfig {
    /// Reads the `BATTLESCOPE_*` settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the `BATTLESCOPE_*` settings through `lookup` (pass `|k| std::env::var(k).ok()`
    /// in a binary; tests pass a map), so this stays a pure function.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let non_empty = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());
        let base = non_empty(ENV_SSO_URL).unwrap_or_else(|| DEFAULT_SSO_URL.to_owned());
        let base_url = parse_http_url(&base, ENV_SSO_URL)?;
        let client_id = non_empty(ENV_CLIENT_ID).ok_or(ConfigError::Missing(ENV_CLIENT_ID))?;
        let client_secret =
            non_empty(ENV_CLIENT_SECRET).ok_or(ConfigError::Missing(ENV_CLIENT_SECRET))?;
        let public = non_empty(ENV_PUBLIC_URL).ok_or(ConfigError::Missing(ENV_PUBLIC_URL))?;
        let callback_url = callback_url(&parse_http_url(&public, ENV_PUBLIC_URL)?)?;
        let scopes = non_empty(ENV_SCOPES)
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(Self {
            base_url,
            client_id: client_id.trim().to_owned(),
            client_secret: Secret::new(client_secret),
            callback_url,
            scopes,
        })
    }
}

/// `{public}/auth/callback`, keeping any path prefix of the public URL.
pub fn callback_url(public: &Url) -> Result<Url, ConfigError> {
    let mut base = public.clone();
    base.set_query(None);
    base.set_fragment(None);
    let path = format!("{}/auth/callback", base.path().trim_end_matches('/'));
    base.set_path(&path);
    Ok(base)
}

fn parse_http_url(raw: &str, name: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|_| ConfigError::BadUrl { name })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::BadUrl { name });
    }
    Ok(url)
}

/// The SSO endpoint URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsoEndpoints {
    /// The `issuer` value from metadata (`login.eveonline.com` on the real SSO).
    pub issuer: String,
    pub authorize: Url,
    pub token: Url,
    pub revoke: Url,
    pub jwks: Url,
}

/// The subset of RFC 8414 metadata we read.
#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: Option<String>,
    pub jwks_uri: String,
}

impl SsoEndpoints {
    /// The well-known paths under `base`, as on the real SSO.
    pub fn from_base(base: &Url) -> Self {
        let at = |path: &str| {
            let mut u = base.clone();
            u.set_path(path);
            u.set_query(None);
            u.set_fragment(None);
            u
        };
        Self {
            issuer: base.host_str().unwrap_or_default().to_owned(),
            authorize: at(AUTHORIZE_PATH),
            token: at(TOKEN_PATH),
            revoke: at(REVOKE_PATH),
            jwks: at(JWKS_PATH),
        }
    }

    /// The metadata URL under `base`.
    pub fn metadata_url(base: &Url) -> Url {
        let mut u = base.clone();
        u.set_path(METADATA_PATH);
        u.set_query(None);
        u.set_fragment(None);
        u
    }

    /// Endpoints from a metadata document; every URL must share `base`'s origin.
    pub(crate) fn from_metadata(base: &Url, meta: &Metadata) -> Result<Self, ConfigError> {
        let defaults = Self::from_base(base);
        let check = |raw: &str, field: &'static str| -> Result<Url, ConfigError> {
            let url = Url::parse(raw).map_err(|_| ConfigError::ForeignEndpoint { field })?;
            if url.origin() != base.origin() {
                return Err(ConfigError::ForeignEndpoint { field });
            }
            Ok(url)
        };
        Ok(Self {
            issuer: meta.issuer.clone(),
            authorize: check(&meta.authorization_endpoint, "authorization_endpoint")?,
            token: check(&meta.token_endpoint, "token_endpoint")?,
            revoke: match &meta.revocation_endpoint {
                Some(raw) => check(raw, "revocation_endpoint")?,
                None => defaults.revoke,
            },
            jwks: check(&meta.jwks_uri, "jwks_uri")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(base: &str) -> Metadata {
        Metadata {
            issuer: "login.eveonline.com".into(),
            authorization_endpoint: format!("{base}/v2/oauth/authorize"),
            token_endpoint: format!("{base}/v2/oauth/token"),
            revocation_endpoint: None,
            jwks_uri: format!("{base}/oauth/jwks"),
        }
    }

    #[test]
    fn metadata_endpoints_must_stay_on_the_sso_origin() {
        let base = Url::parse("https://login.eveonline.com").unwrap();
        let ok = SsoEndpoints::from_metadata(&base, &meta("https://login.eveonline.com")).unwrap();
        assert_eq!(ok, SsoEndpoints::from_base(&base));
        let mut foreign = meta("https://login.eveonline.com");
        foreign.token_endpoint = "https://evil.test/v2/oauth/token".into();
        assert!(matches!(
            SsoEndpoints::from_metadata(&base, &foreign),
            Err(ConfigError::ForeignEndpoint {
                field: "token_endpoint"
            })
        ));
        let mut downgraded = meta("https://login.eveonline.com");
        downgraded.jwks_uri = "http://login.eveonline.com/oauth/jwks".into();
        assert!(SsoEndpoints::from_metadata(&base, &downgraded).is_err());
    }

    #[test]
    fn well_known_paths_match_the_real_sso() {
        let e = SsoEndpoints::from_base(&Url::parse(DEFAULT_SSO_URL).unwrap());
        assert_eq!(
            e.authorize.as_str(),
            "https://login.eveonline.com/v2/oauth/authorize"
        );
        assert_eq!(
            e.token.as_str(),
            "https://login.eveonline.com/v2/oauth/token"
        );
        assert_eq!(
            e.revoke.as_str(),
            "https://login.eveonline.com/v2/oauth/revoke"
        );
        assert_eq!(e.jwks.as_str(), "https://login.eveonline.com/oauth/jwks");
        assert_eq!(e.issuer, "login.eveonline.com");
        assert_eq!(
            SsoEndpoints::metadata_url(&Url::parse(DEFAULT_SSO_URL).unwrap()).as_str(),
            "https://login.eveonline.com/.well-known/oauth-authorization-server"
        );
    }
}
