//! zKillboard history: `history/YYYYMMDD.json` (id → hash for a UTC day of
//! kill time) and `history/totals.json` (per-day counts), served next to R2Z2.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;

use crate::http::{FetchError, Pacer, build_client, json_body, status_error, transport};

/// A client for the history endpoints under one base URL.
#[derive(Clone, Debug)]
pub struct HistoryClient {
    http: reqwest::Client,
    base: String,
    pacer: Arc<Pacer>,
}

impl HistoryClient {
    /// `base` like `https://r2z2.zkillboard.com`.
    pub fn new(base: &str, contact: &str, rps: u32) -> Result<Self, FetchError> {
        Ok(Self {
            http: build_client(contact, Duration::from_secs(120))?,
            base: base.trim_end_matches('/').to_owned(),
            pacer: Arc::new(Pacer::new(rps)),
        })
    }

    /// The id → hash pairs of `day`, sorted by id. `Ok(None)`: no file for that day (404).
    pub async fn day(&self, day: NaiveDate) -> Result<Option<Vec<(i64, String)>>, FetchError> {
        let url = format!("{}/history/{}.json", self.base, day.format("%Y%m%d"));
        match self.get(&url).await? {
            None => Ok(None),
            Some(body) => crate::parse::parse_history_day(&body)
                .map(Some)
                .map_err(|e| FetchError::Body(e.to_string())),
        }
    }

    /// Per-day counts of every day zKillboard knows.
    pub async fn totals(&self) -> Result<BTreeMap<NaiveDate, u64>, FetchError> {
        let url = format!("{}/history/totals.json", self.base);
        match self.get(&url).await? {
            None => Ok(BTreeMap::new()),
            Some(body) => {
                crate::parse::parse_totals(&body).map_err(|e| FetchError::Body(e.to_string()))
            }
        }
    }

    async fn get(&self, url: &str) -> Result<Option<bytes::Bytes>, FetchError> {
        self.pacer.wait().await;
        let resp = self.http.get(url).send().await.map_err(transport)?;
        match resp.status().as_u16() {
            200 => Ok(Some(json_body(resp).await?)),
            404 => Ok(None),
            _ => Err(status_error(&resp)),
        }
    }
}
