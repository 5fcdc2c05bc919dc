//! One client type for calling another service, whatever the topology.
//!
//! In all-in-one mode a [`ServiceClient`] drives the target service's axum
//! router directly (no socket, no serialisation of the request beyond HTTP
//! semantics); in split mode it sends the same request over HTTP to the
//! service's base URL. Callers cannot tell the difference, which is the point.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bs_config::ServiceName;
use http_body_util::BodyExt;
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

/// How a [`ServiceClient`] reaches its service.
#[derive(Clone)]
enum Transport {
    InProcess(Router),
    Http {
        base_url: String,
        client: reqwest::Client,
    },
}

/// A response from another service.
#[derive(Debug)]
pub struct ServiceResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl ServiceResponse {
    /// Decodes a 2xx JSON body; any other status is an error carrying the body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        if !self.status.is_success() {
            return Err(ClientError::Status(
                self.status,
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(500)
                    .collect(),
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("service {0} is not available in this process")]
    NotRegistered(ServiceName),
    #[error("service answered {0}: {1}")]
    Status(StatusCode, String),
    #[error("transport error: {0}")]
    Transport(String),
    #[error("cannot decode the response: {0}")]
    Decode(String),
}

/// Calls one service.
#[derive(Clone)]
pub struct ServiceClient {
    service: ServiceName,
    transport: Transport,
}

impl ServiceClient {
    pub fn in_process(service: ServiceName, router: Router) -> Self {
        Self {
            service,
            transport: Transport::InProcess(router),
        }
    }

    pub fn http(service: ServiceName, base_url: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            service,
            transport: Transport::Http {
                base_url: base_url.trim_end_matches('/').to_owned(),
                client,
            },
        }
    }

    pub fn service(&self) -> ServiceName {
        self.service
    }

    /// Sends a request. `path_and_query` starts with `/`; `headers` are passed
    /// through (cookies and CSRF tokens for the authentication service).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<ServiceResponse, ClientError> {
        match &self.transport {
            Transport::InProcess(router) => {
                let mut req = Request::builder().method(method).uri(path_and_query);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                if body.is_some() && !headers.contains_key("content-type") {
                    req = req.header("content-type", "application/json");
                }
                let req = req
                    .body(Body::from(body.unwrap_or_default()))
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let res = router
                    .clone()
                    .oneshot(req)
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let status = res.status();
                let headers = res.headers().clone();
                let body = res
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?
                    .to_bytes();
                Ok(ServiceResponse {
                    status,
                    headers,
                    body,
                })
            }
            Transport::Http { base_url, client } => {
                let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let mut req = client.request(method, format!("{base_url}{path_and_query}"));
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.as_bytes());
                }
                if let Some(body) = body {
                    if !headers.contains_key("content-type") {
                        req = req.header("content-type", "application/json");
                    }
                    req = req.body(body);
                }
                let res = req
                    .send()
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                let status =
                    StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut out_headers = HeaderMap::new();
                for (k, v) in res.headers() {
                    if let (Ok(k), Ok(v)) = (
                        axum::http::HeaderName::from_bytes(k.as_str().as_bytes()),
                        axum::http::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        out_headers.append(k, v);
                    }
                }
                let body = res
                    .bytes()
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?;
                Ok(ServiceResponse {
                    status,
                    headers: out_headers,
                    body,
                })
            }
        }
    }

    /// `GET` and decode JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
    ) -> Result<T, ClientError> {
        self.send(Method::GET, path_and_query, &HeaderMap::new(), None)
            .await?
            .json()
    }

    /// `POST`/`PUT` a JSON body and decode the JSON answer.
    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.send(method, path_and_query, &HeaderMap::new(), Some(bytes))
            .await?
            .json()
    }
}

/// The services reachable from here. Filled by the binary as services start:
/// in-process routers in all-in-one mode, base URLs in split mode.
#[derive(Clone, Default)]
pub struct ServiceDirectory {
    clients: Arc<RwLock<HashMap<ServiceName, ServiceClient>>>,
}

impl ServiceDirectory {
    pub fn register(&self, client: ServiceClient) {
        self.clients.write().insert(client.service(), client);
    }

    pub fn get(&self, service: ServiceName) -> Result<ServiceClient, ClientError> {
        self.clients
            .read()
            .get(&service)
            .cloned()
            .ok_or(ClientError::NotRegistered(service))
    }

    pub fn contains(&self, service: ServiceName) -> bool {
        self.clients.read().contains_key(&service)
    }
}
