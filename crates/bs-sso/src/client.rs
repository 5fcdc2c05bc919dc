//! The EVE SSO OAuth 2.0 client: authorize URL with `state` and PKCE S256, code exchange,
//! refresh (rotation-aware) and revoke.
//!
//! Plain reqwest instead of the `oauth2` crate: the flow is four requests and the
//! crate's HTTP client is on an older reqwest. Token endpoints get a form body and HTTP
//! Basic client authentication, as EVE SSO v2 requires (JSON bodies are rejected).
//!
//! Errors never carry a token: a dead grant is [`SsoError::InvalidGrant`] (permanent,
//! recognised from the body, not the status), server trouble is
//! [`SsoError::Transient`] (retry; never delete a token because of it).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::config::{ConfigError, Metadata, SsoConfig, SsoEndpoints};
use crate::random::{RandomError, random_token};
use crate::secret::Secret;

/// Per-request timeout: SSO answers in well under a second when healthy.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Remote error descriptions are echoed into logs; keep them short.
const MAX_DESCRIPTION: usize = 200;

/// Why an SSO call failed.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The grant is dead (`invalid_grant`/`invalid_token`): revoked, expired, already
    /// used, or issued to another client. Permanent: tombstone the token and tell the user.
    #[error("sso grant is invalid: {description}")]
    InvalidGrant { description: String },
    /// SSO refused the request for another reason (e.g. `invalid_client`); a configuration
    /// or protocol bug, not worth retrying blindly.
    #[error("sso rejected the request with status {status}: {error}")]
    Rejected { status: u16, error: String },
    /// Network trouble, a timeout or a 5xx: retry later.
    #[error("sso is unavailable: {0}")]
    Transient(String),
    /// A 2xx answer we could not understand.
    #[error("unexpected sso response: {0}")]
    Protocol(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl SsoError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Everything needed to start a login: send the browser to `url`, keep `state` and
/// `pkce_verifier` server-side (see [`crate::state`]) until the callback.
#[derive(Debug)]
pub struct AuthorizeRequest {
    pub url: Url,
    /// 256 bits of randomness, base64url.
    pub state: String,
    /// The PKCE code verifier (32 random bytes, base64url); never sent to the browser.
    pub pkce_verifier: Secret<String>,
}

/// A token endpoint answer.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    /// The access token (an RS256 JWT); validate it with [`crate::JwtValidator`].
    pub access_token: Secret<String>,
    /// Seconds until the access token expires (1200 on EVE SSO).
    pub expires_in: u64,
    pub token_type: String,
    /// The refresh token to store from now on. After a refresh this may differ from the
    /// one sent (rotation); it is the old one only if SSO did not return a new one.
    pub refresh_token: Secret<String>,
}

#[derive(Deserialize)]
struct RawToken {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
    #[serde(default)]
    token_type: String,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: Option<String>,
    error_description: Option<String>,
}

/// The PKCE S256 challenge for a verifier: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The EVE SSO client.
#[derive(Clone, Debug)]
pub struct SsoClient {
    config: SsoConfig,
    endpoints: SsoEndpoints,
    http: reqwest::Client,
}

impl SsoClient {
    /// A client on the well-known endpoint paths under `config.base_url` (no network).
    pub fn new(config: SsoConfig, http: reqwest::Client) -> Self {
        let endpoints = SsoEndpoints::from_base(&config.base_url);
        Self::with_endpoints(config, endpoints, http)
    }

    pub fn with_endpoints(
        config: SsoConfig,
        endpoints: SsoEndpoints,
        http: reqwest::Client,
    ) -> Self {
        Self {
            config,
            endpoints,
            http,
        }
    }

    /// A client on the endpoints read from the SSO metadata document. If the document
    /// cannot be fetched the well-known paths are used (they are the same on the real
    /// SSO); a document that points off-origin is an error.
    pub async fn discover(config: SsoConfig, http: reqwest::Client) -> Result<Self, SsoError> {
        let url = SsoEndpoints::metadata_url(&config.base_url);
        let fetched = async {
            let resp = http
                .get(url)
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
                .map_err(|e| SsoError::Transient(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(SsoError::Transient(format!(
                    "metadata status {}",
                    resp.status()
                )));
            }
            let body = read_capped(resp).await.map_err(SsoError::Transient)?;
            serde_json::from_str::<Metadata>(&body)
                .map_err(|e| SsoError::Protocol(format!("metadata: {e}")))
        }
        .await;
        let endpoints = match fetched {
            Ok(meta) => SsoEndpoints::from_metadata(&config.base_url, &meta)?,
            Err(err) => {
                tracing::warn!(error = %err, "sso metadata unavailable, using well-known paths");
                SsoEndpoints::from_base(&config.base_url)
            }
        };
        Ok(Self::with_endpoints(config, endpoints, http))
    }

    pub fn config(&self) -> &SsoConfig {
        &self.config
    }

    pub fn endpoints(&self) -> &SsoEndpoints {
        &self.endpoints
    }

    /// A fresh authorize request for the configured scopes.
    pub fn authorize_url(&self) -> Result<AuthorizeRequest, SsoError> {
        self.authorize_url_for(&self.config.scopes)
    }

    /// A fresh authorize request (new `state`, new PKCE verifier) for `scopes`.
    pub fn authorize_url_for(&self, scopes: &[String]) -> Result<AuthorizeRequest, SsoError> {
        let state = random_token::<32>()?;
        let verifier = random_token::<32>()?;
        let mut url = self.endpoints.authorize.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.config.client_id);
            q.append_pair("redirect_uri", self.config.callback_url.as_str());
            if !scopes.is_empty() {
                q.append_pair("scope", &scopes.join(" "));
            }
            q.append_pair("state", &state);
            q.append_pair("code_challenge", &pkce_challenge(&verifier));
            q.append_pair("code_challenge_method", "S256");
        }
        Ok(AuthorizeRequest {
            url,
            state,
            pkce_verifier: Secret::new(verifier),
        })
    }

    /// Exchanges an authorization code (from the callback, after the `state` check) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret<String>,
    ) -> Result<TokenResponse, SsoError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", pkce_verifier.expose().as_str()),
        ];
        let raw = self.token_request(&form).await?;
        let refresh_token = raw
            .refresh_token
            .ok_or_else(|| SsoError::Protocol("no refresh_token in code exchange".into()))?;
        Ok(TokenResponse {
            access_token: Secret::new(raw.access_token),
            expires_in: raw.expires_in,
            token_type: raw.token_type,
            refresh_token: Secret::new(refresh_token),
        })
    }

    /// Refreshes an access token. Store the returned `refresh_token` (rotation is on at
    /// EVE SSO) and check the new JWT's `sub`/`owner` against the stored character.
    pub async fn refresh(&self, refresh_token: &Secret<String>) -> Result<TokenResponse, SsoError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose().as_str()),
        ];
        let raw = self.token_request(&form).await?;
        Ok(TokenResponse {
            access_token: Secret::new(raw.access_token),
            expires_in: raw.expires_in,
            token_type: raw.token_type,
            refresh_token: Secret::new(
                raw.refresh_token
                    .unwrap_or_else(|| refresh_token.expose().clone()),
            ),
        })
    }

    /// Revokes a refresh token (on unlink or account deletion). EVE SSO answers 200 even
    /// for tokens that are already invalid, so success means "not usable any more".
    pub async fn revoke(&self, refresh_token: &Secret<String>) -> Result<(), SsoError> {
        let form = [
            ("token_type_hint", "refresh_token"),
            ("token", refresh_token.expose().as_str()),
        ];
        let resp = self.post_form(self.endpoints.revoke.clone(), &form).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = read_capped(resp).await.unwrap_or_default();
        Err(classify_error(status, &body))
    }

    async fn post_form(
        &self,
        url: Url,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, SsoError> {
        self.http
            .post(url)
            .basic_auth(
                &self.config.client_id,
                Some(self.config.client_secret.expose()),
            )
            .form(form)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            // The error text names the URL, never the body, so no token leaks here.
            .map_err(|e| SsoError::Transient(e.without_url().to_string()))
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<RawToken, SsoError> {
        let resp = self.post_form(self.endpoints.token.clone(), form).await?;
        let status = resp.status();
        let body = read_capped(resp).await.map_err(SsoError::Transient)?;
        if !status.is_success() {
            return Err(classify_error(status, &body));
        }
        let raw: RawToken = serde_json::from_str(&body)
            .map_err(|e| SsoError::Protocol(format!("token response: {e}")))?;
        if raw.access_token.is_empty() {
            return Err(SsoError::Protocol("empty access_token".into()));
        }
        Ok(raw)
    }
}

/// Largest SSO response body we read (tokens, metadata, JWKS are a few KiB).
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// Reads a response body as UTF-8 text, refusing more than [`MAX_BODY`] bytes so a
/// misbehaving upstream cannot make us buffer without bound.
pub(crate) async fn read_capped(mut resp: reqwest::Response) -> Result<String, String> {
    if resp
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Err("response body too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err("response body too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "response body is not utf-8".into())
}

/// Maps a non-2xx answer to an error. Dead grants are recognised by the body's `error`
/// code, whatever the status (EVE has used both 400 and 401 for them).
fn classify_error(status: reqwest::StatusCode, body: &str) -> SsoError {
    let parsed: Option<RawError> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|e| e.error.clone());
    let description = parsed
        .and_then(|e| e.error_description)
        .map(|d| d.chars().take(MAX_DESCRIPTION).collect::<String>())
        .unwrap_or_default();
    match error.as_deref() {
        Some("invalid_grant" | "invalid_token") => SsoError::InvalidGrant { description },
        _ if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            SsoError::Transient(format!("status {status}"))
        }
        Some(other) => SsoError::Rejected {
            status: status.as_u16(),
            error: other.chars().take(MAX_DESCRIPTION).collect(),
        },
        None => SsoError::Rejected {
            status: status.as_u16(),
            error: "no error code".into(),
        },
    }
}
