//! EVE Ref daily killmail archives: `killmails/YYYY/killmails-YYYY-MM-DD.tar.bz2`
//! (one ESI JSON file per killmail, no zkb) and `killmails/totals.json`.
//!
//! Inner file names are not documented, so every `*.json` member is read
//! whatever its path (eve-platform.md §5).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;

use crate::http::{FetchError, Pacer, build_client, status_error, transport};

/// The archive path of `day` under an EVE Ref base URL.
pub fn day_path(day: NaiveDate) -> String {
    format!(
        "killmails/{}/killmails-{}.tar.bz2",
        day.format("%Y"),
        day.format("%Y-%m-%d")
    )
}

/// A client for one EVE Ref base URL (`https://data.everef.net`).
#[derive(Clone, Debug)]
pub struct EverefClient {
    http: reqwest::Client,
    base: String,
    pacer: Arc<Pacer>,
}

impl EverefClient {
    pub fn new(base: &str, contact: &str) -> Result<Self, FetchError> {
        Ok(Self {
            http: build_client(contact, Duration::from_secs(600))?,
            base: base.trim_end_matches('/').to_owned(),
            pacer: Arc::new(Pacer::new(2)),
        })
    }

    /// The compressed archive of `day`; `Ok(None)` when there is none (404).
    pub async fn day_archive(&self, day: NaiveDate) -> Result<Option<bytes::Bytes>, FetchError> {
        self.pacer.wait().await;
        let resp = self
            .http
            .get(format!("{}/{}", self.base, day_path(day)))
            .send()
            .await
            .map_err(transport)?;
        match resp.status().as_u16() {
            200 => {
                let body = resp.bytes().await.map_err(transport)?;
                if body.trim_ascii_start().first() == Some(&b'<') {
                    return Err(FetchError::Html);
                }
                Ok(Some(body))
            }
            404 => Ok(None),
            _ => Err(status_error(&resp)),
        }
    }

    /// EVE Ref's per-day counts (`killmails/totals.json`); empty when absent.
    pub async fn totals(&self) -> Result<BTreeMap<NaiveDate, u64>, FetchError> {
        self.pacer.wait().await;
        let resp = self
            .http
            .get(format!("{}/killmails/totals.json", self.base))
            .send()
            .await
            .map_err(transport)?;
        match resp.status().as_u16() {
            200 => {
                let body = crate::http::json_body(resp).await?;
                crate::parse::parse_totals(&body).map_err(|e| FetchError::Body(e.to_string()))
            }
            404 => Ok(BTreeMap::new()),
            _ => Err(status_error(&resp)),
        }
    }
}

/// Calls `f(member_path, bytes)` for every `*.json` member of a tar archive,
/// bzip2-compressed when `bz2` is true. Stops at the first error of `f`.
pub fn for_each_json<R: Read, E: From<std::io::Error>>(
    reader: R,
    bz2: bool,
    mut f: impl FnMut(&str, Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let reader: Box<dyn Read> = if bz2 {
        Box::new(bzip2::read::MultiBzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        if !path.ends_with(".json") {
            continue;
        }
        let mut buf = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut buf)?;
        f(&path, buf)?;
    }
    Ok(())
}

/// Builds a `.tar.bz2` holding `members` (path, bytes), the way EVE Ref archives look.
pub fn build_archive(members: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    let mut builder = tar::Builder::new(enc);
    for (path, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, bytes.as_slice())?;
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_round_trip_reads_only_json_members() {
        let members = vec![
            ("killmails/1.json".to_owned(), b"{\"a\":1}".to_vec()),
            ("README.txt".to_owned(), b"hello".to_vec()),
            ("2021/11/2.json".to_owned(), b"{\"b\":2}".to_vec()),
        ];
        let bytes = build_archive(&members).unwrap();
        let mut seen = Vec::new();
        for_each_json::<_, std::io::Error>(bytes.as_slice(), true, |p, b| {
            seen.push((p.to_owned(), b));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, "2021/11/2.json");
        assert_eq!(
            day_path(NaiveDate::from_ymd_opt(2021, 11, 28).unwrap()),
            "killmails/2021/killmails-2021-11-28.tar.bz2"
        );
    }
}
