//! EVE SSO building blocks for the authentication service, independent of storage.
//!
//! * [`config`]: where the SSO lives and who we are to it ([`SsoConfig`], [`Secret`]).
//! * [`client`]: the OAuth 2.0 authorization-code flow with `state` and PKCE S256,
//!   token exchange, refresh (with rotated refresh tokens) and revoke ([`SsoClient`]).
//! * [`jwt`]: local validation of EVE access tokens ([`JwtValidator`] → [`VerifiedCharacter`]).
//! * [`cipher`]: AES-256-GCM encryption of refresh tokens at rest with a keyring ([`TokenCipher`]).
//! * [`session`], [`csrf`], [`redirect`], [`state`]: session ids, CSRF tokens, `return_to`
//!   sanitising and a single-use `state` store.
//! * `fake` (feature `fake`): a local fake EVE SSO for tests.
//!
//! Nothing here does storage; time is always a parameter (`now`) so every expiry and
//! rate limit is testable without sleeping. See `README.md` for the design note.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod cipher;
pub mod client;
pub mod config;
pub mod csrf;
#[cfg(feature = "fake")]
pub mod fake;
pub mod jwt;
pub mod random;
pub mod redirect;
pub mod secret;
pub mod session;
pub mod state;

pub use cipher::{CipherError, KeyId, TokenCipher, token_aad};
pub use client::{AuthorizeRequest, SsoClient, SsoError, TokenResponse};
pub use config::{SsoConfig, SsoEndpoints};
pub use csrf::CsrfKey;
pub use jwt::{
    IdentityCheck, JwtError, JwtValidator, ValidatorConfig, VerifiedCharacter, check_identity,
    parse_subject,
};
pub use random::RandomError;
pub use redirect::safe_return_to;
pub use secret::Secret;
pub use session::{generate_session_id, hash_session_id};
pub use state::{MemoryStateStore, StateError};
