//! Local validation of EVE SSO access tokens (RS256 JWTs).
//!
//! The checklist (eve-platform notes §7.3), in the order applied:
//! 1. header `alg` must be `RS256` — never taken from the token to pick a verifier, so
//!    `none` and HS256-signed-with-the-public-key are rejected before any key is used;
//!    `jku`/`x5u`/`jwk` headers are ignored (keys only ever come from our JWKS URL);
//! 2. the key is chosen by `kid` from the JWKS; an unknown `kid` triggers one refetch,
//!    single-flight and at most once per `refetch_interval` (time injected), so a flood
//!    of forged `kid`s cannot turn us into a JWKS hammer;
//! 3. signature; then `iss` from an exact allowlist, `aud` containing both the client id
//!    and `"EVE Online"`, `azp` equal to the client id, `exp`/`iat`/`nbf` against `now`
//!    with a small leeway, `tenant`, and `sub` parsed strictly as `CHARACTER:EVE:<id>`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use parking_lot::RwLock;
use serde::Deserialize;
use url::Url;

/// Accepted `iss` values, exactly (the metadata says `login.eveonline.com`; tokens have
/// been seen with the scheme). Typos and trailing slashes are rejected on purpose.
pub const ACCEPTED_ISSUERS: [&str; 2] = ["login.eveonline.com", "https://login.eveonline.com"];
/// The audience every EVE SSO token carries besides the client id.
pub const EVE_AUDIENCE: &str = "EVE Online";
/// The only accepted `sub` prefix.
pub const SUBJECT_PREFIX: &str = "CHARACTER:EVE:";
/// EVE access tokens are ~1–2 KiB; anything far larger is not one.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// More keys than this in a JWKS is not EVE's key set; extra keys are ignored.
const MAX_JWKS_KEYS: usize = 32;

/// Validator settings.
#[derive(Clone, Debug)]
pub struct ValidatorConfig {
    pub client_id: String,
    pub jwks_url: Url,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`.
    pub leeway: Duration,
    /// Minimum time between two JWKS fetches caused by unknown `kid`s.
    pub refetch_interval: Duration,
    /// Keys older than this are refreshed on the next validation (a revoked key must
    /// not stay trusted forever); if that fetch fails the cached keys stay in use.
    pub max_key_age: Duration,
    /// Expected `tenant` claim; `None` skips the check.
    pub tenant: Option<String>,
}

impl ValidatorConfig {
    /// Settings for tokens issued to `config.client_id`, keys from `endpoints.jwks`.
    pub fn for_sso(config: &crate::SsoConfig, endpoints: &crate::SsoEndpoints) -> Self {
        Self::new(config.client_id.clone(), endpoints.jwks.clone())
    }

    pub fn new(client_id: impl Into<String>, jwks_url: Url) -> Self {
        Self {
            client_id: client_id.into(),
            jwks_url,
            leeway: Duration::from_secs(30),
            refetch_interval: Duration::from_secs(60),
            max_key_age: Duration::from_secs(3600),
            tenant: Some("tranquility".to_owned()),
        }
    }
}

/// The identity proven by a valid access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCharacter {
    pub character_id: i64,
    /// Display only; never an identifier.
    pub name: String,
    /// Changes when the character is sold: identity is `(character_id, owner_hash)`.
    pub owner_hash: String,
    /// `scp` normalised to a set (EVE sends a string for one, an array for many, nothing for none).
    pub scopes: BTreeSet<String>,
    pub expires_at: DateTime<Utc>,
}

/// How a freshly validated token relates to the character stored for a grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityCheck {
    /// Same character, same owner: store the rotated refresh token and carry on.
    Same,
    /// Same character, new owner hash: the character was sold or transferred. Detach it,
    /// drop its tokens, end the sessions that came through it, audit.
    OwnerChanged,
    /// The token is for another character entirely (a mixed-up or hostile grant).
    OtherCharacter,
}

/// Compares a validated token with the `(character_id, owner_hash)` stored for the grant
/// (at login of a known character, at link, and after every refresh).
pub fn check_identity(
    stored_character_id: i64,
    stored_owner_hash: &str,
    verified: &VerifiedCharacter,
) -> IdentityCheck {
    if verified.character_id != stored_character_id {
        IdentityCheck::OtherCharacter
    } else if verified.owner_hash != stored_owner_hash {
        IdentityCheck::OwnerChanged
    } else {
        IdentityCheck::Same
    }
}

/// Why a token was rejected. Messages never contain the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not a well-formed jwt")]
    Malformed,
    #[error("token algorithm {0} is not accepted (rs256 only)")]
    Algorithm(String),
    #[error("token header has no kid")]
    MissingKid,
    #[error("token kid is not in the sso key set")]
    UnknownKid,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token claims are malformed")]
    Claims,
    #[error("token issuer is not eve sso")]
    Issuer,
    #[error("token audience does not contain both the client id and eve online")]
    Audience,
    #[error("token azp is not our client id")]
    AuthorizedParty,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (iat or nbf in the future)")]
    NotYetValid,
    #[error("token tenant is not the expected one")]
    Tenant,
    #[error("token subject is not CHARACTER:EVE:<id>")]
    Subject,
    #[error("token has no owner hash")]
    Owner,
    /// The key set could not be fetched; transient.
    #[error("sso key set unavailable: {0}")]
    Jwks(String),
}

/// Parses `sub` strictly: `CHARACTER:EVE:` then 1–19 ASCII digits, no sign, no leading
/// zero, fitting in `i64`, greater than zero.
pub fn parse_subject(sub: &str) -> Option<i64> {
    let digits = sub.strip_prefix(SUBJECT_PREFIX)?;
    if digits.is_empty()
        || digits.len() > 19
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    digits.parse::<i64>().ok().filter(|id| *id > 0)
}

/// `aud` and `scp` come as a string or an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    iss: String,
    sub: String,
    aud: OneOrMany,
    azp: Option<String>,
    exp: i64,
    iat: i64,
    nbf: Option<i64>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    owner: String,
    scp: Option<OneOrMany>,
    tenant: Option<String>,
}

enum KeySource {
    Http {
        client: reqwest::Client,
        url: Url,
    },
    /// Fixed keys (unit tests, offline tools); never refetched.
    Static,
}

/// What a fetch attempt did.
#[derive(Debug, PartialEq, Eq)]
enum Fetch {
    Done,
    /// Rate-limited (or nothing to fetch from).
    Skipped,
}

struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<DateTime<Utc>>,
}

/// Validates EVE access tokens against a cached JWKS.
pub struct JwtValidator {
    config: ValidatorConfig,
    source: KeySource,
    cache: RwLock<KeyCache>,
    /// Serialises JWKS fetches (single flight); holds the time of the last attempt so
    /// the rate limit also covers failed attempts.
    fetch: tokio::sync::Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cache = self.cache.read();
        f.debug_struct("JwtValidator")
            .field("client_id", &self.config.client_id)
            .field("kids", &cache.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JwtValidator {
    /// A validator fetching keys from `config.jwks_url` (lazily, on first use).
    pub fn new(config: ValidatorConfig, client: reqwest::Client) -> Self {
        let url = config.jwks_url.clone();
        Self::build(config, KeySource::Http { client, url }, HashMap::new())
    }

    /// A validator on a fixed JWKS document (no network, no refetch).
    pub fn from_jwks_json(config: ValidatorConfig, jwks: &str) -> Result<Self, JwtError> {
        let keys = parse_jwks(jwks)?;
        Ok(Self::build(config, KeySource::Static, keys))
    }

    fn build(
        config: ValidatorConfig,
        source: KeySource,
        keys: HashMap<String, Arc<DecodingKey>>,
    ) -> Self {
        // jsonwebtoken panics at the first decode if feature unification across the
        // workspace enables both crypto backends (or neither); installing ours explicitly
        // makes that a non-event. `Err` means one is installed already, which is fine.
        if jsonwebtoken::crypto::CryptoProvider::try_get_default().is_none() {
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
        Self {
            config,
            source,
            cache: RwLock::new(KeyCache {
                keys,
                fetched_at: None,
            }),
            fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// The `kid`s currently trusted.
    pub fn known_kids(&self) -> BTreeSet<String> {
        self.cache.read().keys.keys().cloned().collect()
    }

    /// Validates `token` as of `now`.
    pub async fn validate(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<VerifiedCharacter, JwtError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(JwtError::Malformed);
        }
        // Pin the algorithm from our own reading of the header, before any library
        // parsing: `none`, `HS256` and anything else stop here, named in the error.
        let alg = peek_alg(token)?;
        if alg != "RS256" {
            return Err(JwtError::Algorithm(alg.chars().take(16).collect()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(JwtError::MissingKid)?;
        let key = self.key_for(&kid, now).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Time, audience and issuer are checked below against the injected `now` and
        // with our stricter rules (both audiences required).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let data =
            jsonwebtoken::decode::<RawClaims>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => JwtError::BadSignature,
                    ErrorKind::InvalidAlgorithm => JwtError::Algorithm("mismatch".into()),
                    ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => JwtError::Claims,
                    _ => JwtError::Malformed,
                }
            })?;
        self.check_claims(data.claims, now)
    }

    fn check_claims(
        &self,
        c: RawClaims,
        now: DateTime<Utc>,
    ) -> Result<VerifiedCharacter, JwtError> {
        if !ACCEPTED_ISSUERS.contains(&c.iss.as_str()) {
            return Err(JwtError::Issuer);
        }
        let aud = c.aud.into_vec();
        if !aud.contains(&self.config.client_id) || !aud.iter().any(|a| a == EVE_AUDIENCE) {
            return Err(JwtError::Audience);
        }
        if c.azp.as_deref() != Some(self.config.client_id.as_str()) {
            return Err(JwtError::AuthorizedParty);
        }
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(i64::MAX);
        let now_s = now.timestamp();
        if c.exp.saturating_add(leeway) <= now_s {
            return Err(JwtError::Expired);
        }
        if c.iat > now_s.saturating_add(leeway)
            || c.nbf.is_some_and(|nbf| nbf > now_s.saturating_add(leeway))
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(expected) = &self.config.tenant
            && c.tenant.as_deref() != Some(expected.as_str())
        {
            return Err(JwtError::Tenant);
        }
        let character_id = parse_subject(&c.sub).ok_or(JwtError::Subject)?;
        if c.owner.is_empty() {
            return Err(JwtError::Owner);
        }
        let expires_at = DateTime::<Utc>::from_timestamp(c.exp, 0).ok_or(JwtError::Claims)?;
        Ok(VerifiedCharacter {
            character_id,
            name: c.name,
            owner_hash: c.owner,
            scopes: c
                .scp
                .map(OneOrMany::into_vec)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            expires_at,
        })
    }

    /// Forces a JWKS fetch now (e.g. at startup), subject to the same rate limit.
    /// Returns whether a fetch happened (`false`: rate-limited or a static key set).
    pub async fn refresh_keys(&self, now: DateTime<Utc>) -> Result<bool, JwtError> {
        let mut last = self.fetch.lock().await;
        Ok(self.fetch_locked(&mut last, now).await? == Fetch::Done)
    }

    async fn key_for(&self, kid: &str, now: DateTime<Utc>) -> Result<Arc<DecodingKey>, JwtError> {
        let (cached, stale) = self.lookup(kid, now);
        if let (Some(key), false) = (&cached, stale) {
            return Ok(key.clone());
        }
        let mut last = self.fetch.lock().await;
        // Another task may have fetched while we waited for the lock.
        let (again, stale) = self.lookup(kid, now);
        if let (Some(key), false) = (&again, stale) {
            return Ok(key.clone());
        }
        match self.fetch_locked(&mut last, now).await {
            Ok(Fetch::Done) => {}
            Ok(Fetch::Skipped) if self.cache.read().keys.is_empty() => {
                // Nothing ever loaded (SSO was down at the last attempt): say so, rather
                // than blaming the token.
                return Err(JwtError::Jwks("key set not loaded yet".into()));
            }
            Ok(Fetch::Skipped) => {}
            // A stale-but-known key keeps working while SSO is unreachable.
            Err(err) if again.is_none() => return Err(err),
            Err(err) => tracing::warn!(error = %err, "jwks refresh failed, using cached keys"),
        }
        self.lookup(kid, now).0.ok_or(JwtError::UnknownKid)
    }

    fn lookup(&self, kid: &str, now: DateTime<Utc>) -> (Option<Arc<DecodingKey>>, bool) {
        let cache = self.cache.read();
        let max_age = TimeDelta::from_std(self.config.max_key_age).unwrap_or(TimeDelta::MAX);
        let stale = match (&self.source, cache.fetched_at) {
            (KeySource::Static, _) => false,
            (KeySource::Http { .. }, None) => true,
            (KeySource::Http { .. }, Some(at)) => now.signed_duration_since(at) > max_age,
        };
        (cache.keys.get(kid).cloned(), stale)
    }

    async fn fetch_locked(
        &self,
        last: &mut Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Fetch, JwtError> {
        let KeySource::Http { client, url } = &self.source else {
            return Ok(Fetch::Skipped);
        };
        let interval = TimeDelta::from_std(self.config.refetch_interval).unwrap_or(TimeDelta::MAX);
        if let Some(at) = *last
            && now.signed_duration_since(at) < interval
        {
            return Ok(Fetch::Skipped);
        }
        *last = Some(now);
        let body = async {
            let resp = client
                .get(url.clone())
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            if !resp.status().is_success() {
                return Err(format!("status {}", resp.status()));
            }
            crate::client::read_capped(resp).await
        }
        .await
        .map_err(JwtError::Jwks)?;
        let keys = parse_jwks(&body)?;
        tracing::info!(kids = ?keys.keys().collect::<Vec<_>>(), "sso key set fetched");
        let mut cache = self.cache.write();
        cache.keys = keys;
        cache.fetched_at = Some(now);
        Ok(Fetch::Done)
    }
}

/// The header's `alg` string, read without trusting anything else in the token.
fn peek_alg(token: &str) -> Result<String, JwtError> {
    use base64::Engine as _;
    let (header_b64, rest) = token.split_once('.').ok_or(JwtError::Malformed)?;
    if rest.matches('.').count() != 1 {
        return Err(JwtError::Malformed);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwtError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    match header.get("alg") {
        Some(serde_json::Value::String(alg)) => Ok(alg.clone()),
        _ => Err(JwtError::Malformed),
    }
}

/// Parses a JWKS document, keeping only RSA signature keys usable with RS256 that have
/// a `kid`. Keys of other types (EVE also publishes an ES256 key) or that fail to parse
/// are skipped one by one, so a new key type upstream cannot break login.
fn parse_jwks(body: &str) -> Result<HashMap<String, Arc<DecodingKey>>, JwtError> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_str(body).map_err(|e| JwtError::Jwks(format!("jwks: {e}")))?;
    let mut keys = HashMap::new();
    for value in doc.keys.into_iter().take(MAX_JWKS_KEYS) {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
            || jwk
                .common
                .key_algorithm
                .is_some_and(|a| a != KeyAlgorithm::RS256)
            || jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, Arc::new(key));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_parsing_is_strict() {
        assert_eq!(parse_subject("CHARACTER:EVE:2112625428"), Some(2112625428));
        assert_eq!(parse_subject("CHARACTER:EVE:1"), Some(1));
        for bad in [
            "CHARACTER:EVE:",
            "CHARACTER:EVE:abc",
            "CHARACTER:EVE:-1",
            "CHARACTER:EVE:+1",
            "CHARACTER:EVE:0",
            "CHARACTER:EVE:01",
            "CHARACTER:EVE:1:2",
            "CHARACTER:EVE:1 ",
            " CHARACTER:EVE:1",
            "CHARACTER:EVE:١",
            "CHARACTER:EVE:99999999999999999999",
            "CHARACTER:EVE:9223372036854775808",
            "EVE:CHARACTER:1",
            "CORPORATION:EVE:1",
            "character:eve:1",
        ] {
            assert_eq!(parse_subject(bad), None, "{bad}");
        }
        assert_eq!(
            parse_subject("CHARACTER:EVE:9223372036854775807"),
            Some(i64::MAX)
        );
    }
}
