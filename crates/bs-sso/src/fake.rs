//! A local fake EVE SSO for tests (feature `fake`), faithful where it matters for security.
//!
//! An axum server on `127.0.0.1:0` serving, under its base URL, the same paths as
//! login.eveonline.com: metadata, `/v2/oauth/authorize`, `/v2/oauth/token`,
//! `/v2/oauth/revoke` and `/oauth/jwks`. Behaviour copied from the real SSO:
//! * authorize checks `client_id`, the registered `redirect_uri`, `response_type=code`,
//!   `state` and `code_challenge_method=S256`, then 302s back with `code` and `state`. There
//!   is no login page: the character is chosen by the test, either with
//!   [`FakeSso::login_as`] before the redirect or a `fake_character_id` query parameter;
//! * the token endpoint wants a form body and HTTP Basic client auth; codes are single use
//!   (a replayed code also kills the grant issued from it) and checked against the PKCE
//!   challenge; refresh **rotates** the refresh token and invalidates the old one; dead,
//!   used, revoked or unknown grants answer `400 {"error":"invalid_grant"}`;
//! * revoke answers 200 whatever the token;
//! * access tokens are RS256 JWTs with EVE's claim set (`scp, jti, kid, sub, azp, tenant,
//!   tier, region, aud, name, owner, exp, iat, iss`), keys are made in-process with
//!   aws-lc-rs, the JWKS holds two RSA keys plus an EC key (as EVE's does), and keys can be
//!   rotated; a character's `owner` can change (a sale) with or without killing its grants.
//!
//! Time comes from [`FakeSso::set_now`] when set, so token `iat`/`exp` can be pinned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use serde_json::{Value, json};
use url::Url;

use crate::client::pkce_challenge;
use crate::random::random_token;

/// Access token lifetime, as on EVE SSO.
pub const ACCESS_TOKEN_SECONDS: i64 = 1200;
/// Authorization code lifetime.
const CODE_SECONDS: i64 = 300;

/// A fake-side failure (key generation, randomness, socket).
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("rsa key operation failed")]
    Crypto,
    #[error("random source failed")]
    Random,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown character {0}")]
    UnknownCharacter(i64),
}

/// An RS256 signing key with its `kid`.
pub struct RsaSigningKey {
    kid: String,
    pair: KeyPair,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl RsaSigningKey {
    /// A fresh 2048-bit key (CPU-bound, ~0.1 s: call from `spawn_blocking` in async code).
    pub fn generate(kid: impl Into<String>) -> Result<Self, FakeError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| FakeError::Crypto)?;
        Ok(Self {
            kid: kid.into(),
            pair,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as DER `RSAPublicKey` (what an algorithm-confusion attacker has).
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key as a JWK, as EVE publishes it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "alg": "RS256",
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            "kid": self.kid,
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "use": "sig",
        })
    }

    /// Signs `header.claims` with RS256, whatever `header` says (tests forge headers).
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> Result<String, FakeError> {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| FakeError::Crypto)?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Signs with the standard header `{"alg":"RS256","kid":…,"typ":"JWT"}`.
    pub fn sign_claims(&self, claims: &Value) -> Result<String, FakeError> {
        self.sign_jwt(
            &json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
            claims,
        )
    }
}

/// The application registered at the fake SSO.
#[derive(Clone, Debug)]
pub struct FakeClient {
    pub client_id: String,
    pub client_secret: String,
    pub callback_url: Url,
}

#[derive(Clone, Debug)]
struct Character {
    name: String,
    owner: String,
}

struct Code {
    client_id: String,
    character_id: i64,
    scopes: Vec<String>,
    challenge: Option<String>,
    created_at: DateTime<Utc>,
    used: bool,
    /// Refresh tokens issued from this code: revoked if the code is replayed.
    issued: Vec<String>,
}

struct Grant {
    client_id: String,
    character_id: i64,
    scopes: Vec<String>,
    active: bool,
}

struct Inner {
    /// The key signing new tokens.
    active: Arc<RsaSigningKey>,
    /// Older keys still published in the JWKS.
    published: Vec<Arc<RsaSigningKey>>,
    characters: HashMap<i64, Character>,
    next_login: Option<i64>,
    codes: HashMap<String, Code>,
    grants: HashMap<String, Grant>,
    now: Option<DateTime<Utc>>,
    key_serial: u32,
}

struct Shared {
    client: FakeClient,
    base_url: Url,
    inner: Mutex<Inner>,
    jwks_fetches: AtomicU64,
    token_requests: AtomicU64,
    /// Token requests still to answer with a 503 (an SSO outage).
    fail_token_requests: AtomicU64,
}

/// A running fake SSO. Dropping it stops accepting connections; keep-alive connections
/// already open may be served until their client drops them (use a fresh HTTP client to
/// observe "SSO is down").
pub struct FakeSso {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSso {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeSso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSso")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn generate_key(kid: String) -> Result<RsaSigningKey, FakeError> {
    tokio::task::spawn_blocking(move || RsaSigningKey::generate(kid))
        .await
        .map_err(|_| FakeError::Crypto)?
}

impl FakeSso {
    /// Starts the fake on `127.0.0.1:0` with two signing keys.
    pub async fn start(client: FakeClient) -> Result<Self, FakeError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("http://{addr}")).map_err(|_| FakeError::Crypto)?;
        let key_a = generate_key("JWT-Signature-Key-1".into()).await?;
        let key_b = generate_key("JWT-Signature-Key-2".into()).await?;
        let shared = Arc::new(Shared {
            client,
            base_url,
            inner: Mutex::new(Inner {
                active: Arc::new(key_a),
                published: vec![Arc::new(key_b)],
                characters: HashMap::new(),
                next_login: None,
                codes: HashMap::new(),
                grants: HashMap::new(),
                now: None,
                key_serial: 2,
            }),
            jwks_fetches: AtomicU64::new(0),
            token_requests: AtomicU64::new(0),
            fail_token_requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/v2/oauth/authorize", get(authorize))
            .route("/v2/oauth/token", post(token))
            .route("/v2/oauth/revoke", post(revoke))
            .route("/oauth/jwks", get(jwks))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "fake sso server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The base URL (what `BATTLESCOPE_SSO_URL` should be set to).
    pub fn base_url(&self) -> Url {
        self.shared.base_url.clone()
    }

    pub fn client(&self) -> &FakeClient {
        &self.shared.client
    }

    /// Registers a character and returns its owner hash.
    pub fn add_character(&self, character_id: i64, name: &str) -> Result<String, FakeError> {
        let owner = new_owner_hash()?;
        self.shared.inner.lock().characters.insert(
            character_id,
            Character {
                name: name.to_owned(),
                owner: owner.clone(),
            },
        );
        Ok(owner)
    }

    /// The next authorize request logs in as this character.
    pub fn login_as(&self, character_id: i64) {
        self.shared.inner.lock().next_login = Some(character_id);
    }

    /// The character's current owner hash.
    pub fn owner_of(&self, character_id: i64) -> Option<String> {
        self.shared
            .inner
            .lock()
            .characters
            .get(&character_id)
            .map(|c| c.owner.clone())
    }

    /// Changes the owner hash only; existing grants keep working and the next refresh
    /// mints a token with the new `owner` (the service must notice).
    pub fn set_owner(&self, character_id: i64, owner: &str) -> Result<(), FakeError> {
        let mut inner = self.shared.inner.lock();
        let c = inner
            .characters
            .get_mut(&character_id)
            .ok_or(FakeError::UnknownCharacter(character_id))?;
        c.owner = owner.to_owned();
        Ok(())
    }

    /// Simulates a character sale: a new owner hash, and every grant for the character dies.
    pub fn sell_character(&self, character_id: i64) -> Result<String, FakeError> {
        let owner = new_owner_hash()?;
        self.set_owner(character_id, &owner)?;
        self.revoke_character_grants(character_id);
        Ok(owner)
    }

    /// Pins the fake's clock (token `iat`/`exp`, code expiry); `None` is the real clock.
    pub fn set_now(&self, now: Option<DateTime<Utc>>) {
        self.shared.inner.lock().now = now;
    }

    /// The key currently signing tokens.
    pub fn signing_key(&self) -> Arc<RsaSigningKey> {
        self.shared.inner.lock().active.clone()
    }

    /// Adds a new signing key (it becomes the active one); with `retire_old`, the previous
    /// keys leave the JWKS. Returns the new `kid`.
    pub async fn rotate_signing_key(&self, retire_old: bool) -> Result<String, FakeError> {
        let serial = {
            let mut inner = self.shared.inner.lock();
            inner.key_serial += 1;
            inner.key_serial
        };
        let key = Arc::new(generate_key(format!("JWT-Signature-Key-{serial}")).await?);
        let kid = key.kid.clone();
        let mut inner = self.shared.inner.lock();
        let old = std::mem::replace(&mut inner.active, key);
        if retire_old {
            inner.published.clear();
        } else {
            inner.published.insert(0, old);
        }
        Ok(kid)
    }

    /// A valid EVE claim set for `character_id` as of the fake's clock.
    pub fn claims_for(&self, character_id: i64, scopes: &[&str]) -> Result<Value, FakeError> {
        let inner = self.shared.inner.lock();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        claims(
            &self.shared.client.client_id,
            &inner,
            &inner.active.kid,
            character_id,
            &scopes,
        )
    }

    /// A valid access token for `character_id`, signed with the active key.
    pub fn mint_access_token(
        &self,
        character_id: i64,
        scopes: &[&str],
    ) -> Result<String, FakeError> {
        self.signing_key()
            .sign_claims(&self.claims_for(character_id, scopes)?)
    }

    /// JWKS documents served so far.
    pub fn jwks_fetches(&self) -> u64 {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Token endpoint requests so far.
    pub fn token_requests(&self) -> u64 {
        self.shared.token_requests.load(Ordering::SeqCst)
    }

    /// Whether a refresh token is still usable.
    pub fn is_grant_active(&self, refresh_token: &str) -> bool {
        self.shared
            .inner
            .lock()
            .grants
            .get(refresh_token)
            .is_some_and(|g| g.active)
    }

    /// The next `n` token requests fail with 503 (grants are untouched).
    pub fn fail_next_token_requests(&self, n: u64) {
        self.shared.fail_token_requests.store(n, Ordering::SeqCst);
    }

    /// Kills every grant of a character, as when the player revokes the application on
    /// EVE's site; the owner hash stays.
    pub fn revoke_character_grants(&self, character_id: i64) {
        for grant in self.shared.inner.lock().grants.values_mut() {
            if grant.character_id == character_id {
                grant.active = false;
            }
        }
    }

    /// Active grants (refresh tokens) for a character.
    pub fn active_grants(&self, character_id: i64) -> usize {
        self.shared
            .inner
            .lock()
            .grants
            .values()
            .filter(|g| g.active && g.character_id == character_id)
            .count()
    }
}

fn new_owner_hash() -> Result<String, FakeError> {
    // EVE owner hashes are 28-character base64 strings.
    let raw = crate::random::random_bytes::<20>().map_err(|_| FakeError::Random)?;
    Ok(STANDARD.encode(raw))
}

fn now_of(inner: &Inner) -> DateTime<Utc> {
    inner.now.unwrap_or_else(Utc::now)
}

fn claims(
    client_id: &str,
    inner: &Inner,
    kid: &str,
    character_id: i64,
    scopes: &[String],
) -> Result<Value, FakeError> {
    let character = inner
        .characters
        .get(&character_id)
        .ok_or(FakeError::UnknownCharacter(character_id))?;
    let now = now_of(inner).timestamp();
    let mut claims = json!({
        "jti": random_token::<16>().map_err(|_| FakeError::Random)?,
        "kid": kid,
        "sub": format!("CHARACTER:EVE:{character_id}"),
        "azp": client_id,
        "tenant": "tranquility",
        "tier": "live",
        "region": "world",
        "aud": [client_id, "EVE Online"],
        "name": character.name,
        "owner": character.owner,
        "exp": now + ACCESS_TOKEN_SECONDS,
        "iat": now,
        "iss": "login.eveonline.com",
    });
    // EVE: a string for one scope, an array for several, absent for none.
    if let Some(obj) = claims.as_object_mut() {
        match scopes {
            [] => {}
            [one] => {
                obj.insert("scp".into(), Value::String(one.clone()));
            }
            many => {
                obj.insert("scp".into(), json!(many));
            }
        }
    }
    Ok(claims)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn metadata(State(s): State<Arc<Shared>>) -> Response {
    let at = |p: &str| s.base_url.join(p).map(String::from).unwrap_or_default();
    axum::Json(json!({
        "issuer": "login.eveonline.com",
        "authorization_endpoint": at("/v2/oauth/authorize"),
        "token_endpoint": at("/v2/oauth/token"),
        "response_types_supported": ["code", "token"],
        "jwks_uri": at("/oauth/jwks"),
        "revocation_endpoint": at("/v2/oauth/revoke"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["HS256"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let mut keys: Vec<Value> = {
        let inner = s.inner.lock();
        std::iter::once(&inner.active)
            .chain(inner.published.iter())
            .map(|k| k.jwk())
            .collect()
    };
    // EVE also publishes an ES256 key; validators must skip it, not choke on it.
    keys.push(json!({
        "alg": "ES256", "crv": "P-256", "kid": "8878a23f-b40a-4a1c-8ca3-2c1d5a5c3a5d",
        "kty": "EC", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32]),
    }));
    axum::Json(json!({"keys": keys, "SkipUnresolvedJsonWebKeys": true})).into_response()
}

async fn authorize(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str);
    if get("response_type") != Some("code") {
        return (StatusCode::BAD_REQUEST, "unsupported response_type").into_response();
    }
    if get("client_id") != Some(s.client.client_id.as_str()) {
        return (StatusCode::BAD_REQUEST, "unknown client_id").into_response();
    }
    if get("redirect_uri") != Some(s.client.callback_url.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri does not match the application",
        )
            .into_response();
    }
    let Some(state) = get("state").filter(|v| !v.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "state is required").into_response();
    };
    let challenge = get("code_challenge").map(str::to_owned);
    if challenge.is_some() && get("code_challenge_method") != Some("S256") {
        return (StatusCode::BAD_REQUEST, "only S256 is supported").into_response();
    }
    let scopes: Vec<String> = get("scope")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let Ok(code) = random_token::<16>() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    {
        let mut inner = s.inner.lock();
        let requested = get("fake_character_id").and_then(|v| v.parse::<i64>().ok());
        let Some(character_id) = requested.or_else(|| inner.next_login.take()) else {
            return (
                StatusCode::BAD_REQUEST,
                "fake sso: no character chosen (login_as)",
            )
                .into_response();
        };
        if !inner.characters.contains_key(&character_id) {
            return (StatusCode::BAD_REQUEST, "fake sso: unknown character").into_response();
        }
        let created_at = now_of(&inner);
        inner.codes.insert(
            code.clone(),
            Code {
                client_id: s.client.client_id.clone(),
                character_id,
                scopes,
                challenge,
                created_at,
                used: false,
                issued: Vec::new(),
            },
        );
    }
    let mut location = s.client.callback_url.clone();
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

/// Checks HTTP Basic client authentication.
fn client_authenticated(s: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(b64.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    text.split_once(':')
        .is_some_and(|(id, secret)| id == s.client.client_id && secret == s.client.client_secret)
}

fn parse_form(headers: &HeaderMap, body: &str) -> Option<HashMap<String, String>> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    Some(
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect(),
    )
}

fn token_response(
    s: &Shared,
    inner: &mut Inner,
    character_id: i64,
    scopes: Vec<String>,
) -> Result<(String, Value), FakeError> {
    let key = inner.active.clone();
    let access = key.sign_claims(&claims(
        &s.client.client_id,
        inner,
        &key.kid,
        character_id,
        &scopes,
    )?)?;
    // EVE v2 refresh tokens are 24-character strings.
    let refresh = random_token::<18>().map_err(|_| FakeError::Random)?;
    inner.grants.insert(
        refresh.clone(),
        Grant {
            client_id: s.client.client_id.clone(),
            character_id,
            scopes,
            active: true,
        },
    );
    let body = json!({
        "access_token": access,
        "expires_in": ACCESS_TOKEN_SECONDS,
        "token_type": "Bearer",
        "refresh_token": refresh,
    });
    Ok((refresh, body))
}

async fn token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let outage = s
        .fail_token_requests
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if outage {
        // What EVE answers during downtime: a 503 whose body is not an OAuth error.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "tranquility unavailable"})),
        )
            .into_response();
    }
    let Some(form) = parse_form(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    };
    if !client_authenticated(&s, &headers) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    let get = |k: &str| form.get(k).map(String::as_str);
    let mut inner = s.inner.lock();
    let now = now_of(&inner);
    match get("grant_type") {
        Some("authorization_code") => {
            let code_value = get("code").unwrap_or_default();
            let Some(code) = inner.codes.get_mut(code_value) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code not found",
                );
            };
            if code.used {
                // RFC 6749 §4.1.2: a replayed code revokes what it issued.
                let issued = std::mem::take(&mut code.issued);
                for rt in issued {
                    if let Some(g) = inner.grants.get_mut(&rt) {
                        g.active = false;
                    }
                }
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code has already been used",
                );
            }
            code.used = true;
            if code.client_id != s.client.client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code does not match the client specified",
                );
            }
            if now.signed_duration_since(code.created_at) > TimeDelta::seconds(CODE_SECONDS) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code has expired",
                );
            }
            if let Some(challenge) = &code.challenge {
                let ok = get("code_verifier").is_some_and(|v| pkce_challenge(v) == *challenge);
                if !ok {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Code verifier does not match the challenge",
                    );
                }
            }
            let (character_id, scopes) = (code.character_id, code.scopes.clone());
            match token_response(&s, &mut inner, character_id, scopes) {
                Ok((refresh, body)) => {
                    if let Some(code) = inner.codes.get_mut(code_value) {
                        code.issued.push(refresh);
                    }
                    axum::Json(body).into_response()
                }
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        Some("refresh_token") => {
            let rt = get("refresh_token").unwrap_or_default();
            let Some(grant) = inner.grants.get_mut(rt).filter(|g| g.active) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid refresh token. Token missing/expired.",
                );
            };
            if grant.client_id != s.client.client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token does not match the client specified.",
                );
            }
            // Rotation: the old refresh token dies as the new one is issued.
            grant.active = false;
            let (character_id, scopes) = (grant.character_id, grant.scopes.clone());
            match token_response(&s, &mut inner, character_id, scopes) {
                Ok((_, body)) => axum::Json(body).into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type not supported",
        ),
    }
}

async fn revoke(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let Some(form) = parse_form(&headers, &body) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    };
    if !client_authenticated(&s, &headers) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    if let Some(token) = form.get("token")
        && let Some(g) = s.inner.lock().grants.get_mut(token)
    {
        g.active = false;
    }
    // EVE answers 200 even for unknown or already-invalid tokens.
    StatusCode::OK.into_response()
}
