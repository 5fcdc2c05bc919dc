//! The legacy RedisQ long-poll client (`listen.php?queueID=…&ttw=…`), for
//! relays that still speak it. Redirects are followed (the 2025 `object.php`
//! indirection); packages without a body come back as
//! [`crate::Document::Reference`] so the caller fetches ESI.

use std::time::Duration;

use crate::http::{FetchError, build_client, json_body, status_error, transport};
use crate::parse::{Document, parse_document};

/// A RedisQ client with a stable queue id.
#[derive(Clone, Debug)]
pub struct RedisqClient {
    http: reqwest::Client,
    url: String,
    queue_id: String,
    ttw: u32,
}

impl RedisqClient {
    /// `url` is the `listen.php` URL (or a relay's equivalent).
    pub fn new(url: &str, contact: &str, queue_id: &str, ttw: u32) -> Result<Self, FetchError> {
        let ttw = ttw.clamp(1, 10);
        Ok(Self {
            // The server holds the request up to `ttw` seconds; wait longer than that.
            http: build_client(contact, Duration::from_secs(u64::from(ttw) + 15))?,
            url: url.to_owned(),
            queue_id: queue_id.to_owned(),
            ttw,
        })
    }

    /// One long poll: a killmail, a reference, or `Empty`.
    pub async fn listen(&self) -> Result<Document, FetchError> {
        let resp = self
            .http
            .get(&self.url)
            .query(&[
                ("queueID", self.queue_id.as_str()),
                ("ttw", &self.ttw.to_string()),
            ])
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error(&resp));
        }
        let body = json_body(resp).await?;
        parse_document(&body).map_err(|e| FetchError::Body(e.to_string()))
    }
}
