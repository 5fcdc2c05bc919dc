//! The R2Z2 live-feed client (`ephemeral/sequence.json`, `ephemeral/{n}.json`).
//!
//! One request per call, paced; the caller walks the sequence and applies the
//! cursor rules (eve-platform.md §1.3).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::http::{FetchError, Pacer, build_client, json_body, status_error, transport};

/// The outcome of fetching one sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum EntryFetch {
    /// The raw entry body (parse it with [`crate::parse_document`]).
    Found(Bytes),
    /// 404: not published yet, a historical hole, or expired.
    NotFound,
}

/// A client for one R2Z2 base URL.
#[derive(Clone, Debug)]
pub struct R2z2Client {
    http: reqwest::Client,
    base: String,
    pacer: Arc<Pacer>,
}

impl R2z2Client {
    /// `base` like `https://r2z2.zkillboard.com`; `rps` stays under R2Z2's 20/s.
    pub fn new(base: &str, contact: &str, rps: u32) -> Result<Self, FetchError> {
        Ok(Self {
            http: build_client(contact, Duration::from_secs(20))?,
            base: base.trim_end_matches('/').to_owned(),
            pacer: Arc::new(Pacer::new(rps)),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET ephemeral/sequence.json`: a recent sequence, possibly ~51 behind the head.
    pub async fn sequence(&self) -> Result<i64, FetchError> {
        self.pacer.wait().await;
        let resp = self
            .http
            .get(format!("{}/ephemeral/sequence.json", self.base))
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(status_error(&resp));
        }
        let body = json_body(resp).await?;
        crate::parse::parse_sequence(&body).map_err(|e| FetchError::Body(e.to_string()))
    }

    /// `GET ephemeral/{n}.json`.
    pub async fn entry(&self, sequence: i64) -> Result<EntryFetch, FetchError> {
        self.pacer.wait().await;
        let resp = self
            .http
            .get(format!("{}/ephemeral/{sequence}.json", self.base))
            .send()
            .await
            .map_err(transport)?;
        match resp.status().as_u16() {
            200 => Ok(EntryFetch::Found(json_body(resp).await?)),
            404 => Ok(EntryFetch::NotFound),
            _ => Err(status_error(&resp)),
        }
    }
}
