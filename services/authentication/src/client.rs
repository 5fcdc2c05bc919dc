//! [`AuthClient`]: how other services (the BFF first) ask "may this user do that?".
//!
//! One type, several transports, so callers never branch on topology: it holds the
//! authentication service's state and answers in-process ([`crate::start_with_client`]),
//! or goes through the runtime's service directory ([`AuthClient::from_services`]: the
//! in-process router in all-in-one mode, HTTP in split mode), or POSTs to a base URL
//! ([`AuthClient::remote`]). The API is deliberately tiny:
//!
//! ```text
//! let answer = client.authorize(Subject::SessionCookie(cookie_header), "battle-reports", "view").await?;
//! if !answer.allow { /* 403, answer.reason says why */ }
//! ```
//!
//! `Subject::SessionCookie` takes the browser's whole `Cookie` header (or the bare
//! session id); the session is validated exactly as the service's own routes do
//! (expiry, revocation, blocked account), so an answer is never staler than the call.

use std::sync::Arc;

use crate::api::AuthorizeAnswer;
use crate::service::AuthService;
use crate::settings::{SECURE_SESSION_COOKIE, SESSION_COOKIE};

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A `Cookie` header value (`a=1; battlescope_session=…`) or a bare session id.
    SessionCookie(&'a str),
    /// An account id already established by the caller.
    Account(&'a str),
}

/// Why the question could not be answered (the answer itself is never an error).
#[derive(Debug, thiserror::Error)]
pub enum AuthClientError {
    #[error("authentication service unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
enum Transport {
    Local(Arc<AuthService>),
    Remote {
        http: reqwest::Client,
        url: String,
    },
    /// Through the runtime's service directory (in-process router or HTTP, as the
    /// binary registered it).
    Directory(bs_runtime::client::ServiceClient),
}

/// The client; cheap to clone.
#[derive(Clone)]
pub struct AuthClient {
    transport: Transport,
}

impl std::fmt::Debug for AuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.transport {
            Transport::Local(_) => f.write_str("AuthClient(local)"),
            Transport::Remote { url, .. } => write!(f, "AuthClient(remote {url})"),
            Transport::Directory(_) => f.write_str("AuthClient(directory)"),
        }
    }
}

/// The session id inside a `Cookie` header, or the value itself if it is a bare id.
pub fn session_id_from_cookie(cookie: &str) -> Option<&str> {
    if !cookie.contains('=') {
        let id = cookie.trim();
        return (!id.is_empty()).then_some(id);
    }
    cookie
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE || *k == SECURE_SESSION_COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

impl AuthClient {
    pub(crate) fn local(service: Arc<AuthService>) -> Self {
        Self {
            transport: Transport::Local(service),
        }
    }

    /// A client through the runtime's service directory: works in every topology the
    /// binary sets up (`ctx.services`), once the authentication service is registered.
    pub fn from_services(
        services: &bs_runtime::client::ServiceDirectory,
    ) -> Result<Self, AuthClientError> {
        let client = services
            .get(bs_config::ServiceName::Authentication)
            .map_err(|e| AuthClientError::Unavailable(e.to_string()))?;
        Ok(Self {
            transport: Transport::Directory(client),
        })
    }

    /// A client for a service at `base_url` (e.g. `http://127.0.0.1:3007`).
    pub fn remote(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            transport: Transport::Remote {
                http,
                url: format!("{}/authorize", base_url.trim_end_matches('/')),
            },
        }
    }

    /// May `subject` do `action` in `feature`? Fails closed: an unknown or expired
    /// session, an unknown feature or action, a blocked account are all `allow: false`.
    pub async fn authorize(
        &self,
        subject: Subject<'_>,
        feature: &str,
        action: &str,
    ) -> Result<AuthorizeAnswer, AuthClientError> {
        let (account_id, session_id) = match subject {
            Subject::Account(a) => (Some(a), None),
            Subject::SessionCookie(c) => match session_id_from_cookie(c) {
                Some(id) => (None, Some(id)),
                None => {
                    return Ok(AuthorizeAnswer {
                        allow: false,
                        reason: "not_authenticated".into(),
                        account_id: None,
                        cache_ttl_seconds: 0,
                    });
                }
            },
        };
        let body = serde_json::json!({
            "account_id": account_id, "session_id": session_id, "feature": feature, "action": action,
        });
        match &self.transport {
            Transport::Directory(client) => client
                .send_json(axum::http::Method::POST, "/authorize", &body)
                .await
                .map_err(|e| AuthClientError::Unavailable(e.to_string())),
            Transport::Local(service) => {
                let result = match (account_id, session_id) {
                    (Some(a), _) => service
                        .authorize_account(a, feature, action)
                        .await
                        .map(|d| (Some(a.to_owned()), d)),
                    (None, Some(s)) => service.authorize_session(s, feature, action).await,
                    (None, None) => return Err(AuthClientError::Unavailable("no subject".into())),
                };
                let (account_id, d) =
                    result.map_err(|e| AuthClientError::Unavailable(e.to_string()))?;
                Ok(AuthorizeAnswer {
                    allow: d.allow,
                    reason: d.reason.as_str().to_owned(),
                    account_id,
                    cache_ttl_seconds: 0,
                })
            }
            Transport::Remote { http, url } => {
                let resp = http
                    .post(url)
                    .json(&body)
                    .timeout(std::time::Duration::from_secs(5))
                    .send()
                    .await
                    .map_err(|e| AuthClientError::Unavailable(e.without_url().to_string()))?;
                if !resp.status().is_success() {
                    return Err(AuthClientError::Unavailable(format!(
                        "status {}",
                        resp.status()
                    )));
                }
                resp.json()
                    .await
                    .map_err(|e| AuthClientError::Unavailable(e.without_url().to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_in_a_cookie_header() {
        assert_eq!(
            session_id_from_cookie("x=1; battlescope_session=abc; y=2"),
            Some("abc")
        );
        assert_eq!(session_id_from_cookie("abc"), Some("abc"));
        assert_eq!(
            session_id_from_cookie("__Host-battlescope_session=def"),
            Some("def")
        );
        assert_eq!(session_id_from_cookie("x=1"), None);
        assert_eq!(session_id_from_cookie(""), None);
    }
}
