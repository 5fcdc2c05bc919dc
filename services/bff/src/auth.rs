//! Feature checks delegated to the authentication service.
//!
//! When the operator made pages public (`web.public_pages`, the default) anonymous reads are
//! allowed and the authentication service is not asked. Otherwise the browser's `Cookie`
//! header goes to [`bs_authentication::AuthClient::authorize`]; the answer fails closed.

use axum::http::HeaderMap;
use bs_authentication::{AuthClient, Subject};
use bs_runtime::ServiceDirectory;

/// The features the UI checks.
pub const BATTLE_REPORTS: &str = "battle-reports";
pub const BATTLE_INTEL: &str = "battle-intel";
pub const SEARCH: &str = "search";

/// Why a read was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No valid session: log in.
    NotAuthenticated,
    /// Logged in without the feature (the reason from the authentication service).
    Forbidden(String),
    /// The authentication service could not answer.
    Unavailable(String),
}

/// Asks "may this browser read `feature`?".
#[derive(Clone)]
pub struct Gate {
    services: ServiceDirectory,
    public: bool,
}

impl Gate {
    pub fn new(services: ServiceDirectory, public: bool) -> Self {
        Self { services, public }
    }

    /// True when a `Cookie` header carries a session (for the header's login/logout link).
    pub fn has_session(headers: &HeaderMap) -> bool {
        headers
            .get(axum::http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(bs_authentication::client::session_id_from_cookie)
            .is_some()
    }

    pub async fn check(&self, headers: &HeaderMap, feature: &str) -> Result<(), Denied> {
        if self.public {
            return Ok(());
        }
        let Some(cookie) = headers
            .get(axum::http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(Denied::NotAuthenticated);
        };
        let client = AuthClient::from_services(&self.services)
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        let answer = client
            .authorize(Subject::SessionCookie(cookie), feature, "view")
            .await
            .map_err(|e| Denied::Unavailable(e.to_string()))?;
        if answer.allow {
            Ok(())
        } else if answer.reason == "not_authenticated" || answer.account_id.is_none() {
            Err(Denied::NotAuthenticated)
        } else {
            Err(Denied::Forbidden(answer.reason))
        }
    }
}
