//! The path every document takes, whatever its source: parse → validate →
//! ruleset → a [`NewKillmail`] or a [`RejectRecord`].
//!
//! Preparation is CPU only (no IO), so bulk sources run it on blocking
//! threads; storing is the store's job.

use std::sync::Arc;

use bs_domain::{KillmailSource, Zkb};
use bs_sde::{SecurityType, StaticData};
use bs_zkb::{Document, KillmailDoc, parse_document};
use chrono::{DateTime, Utc};
use parking_lot::RwLock;

use crate::domain::{Rejection, Ruleset, validate};
use crate::store::{NewKillmail, RejectRecord};

/// Rejected inputs keep at most this much of the original text.
const MAX_RAW: usize = 16 * 1024;

/// Metric names.
pub mod metric {
    /// Counter, labels `reason`, `source`.
    pub const REJECTED: &str = "battlescope_ingest_rejected_total";
    /// Counter, label `source`: killmails stored for the first time.
    pub const INGESTED: &str = "battlescope_ingest_new_total";
    /// Counter, label `source`.
    pub const DUPLICATES: &str = "battlescope_ingest_duplicates_total";
    /// Counter: re-published killmails whose content changed.
    pub const UPDATES: &str = "battlescope_ingest_updates_total";
    /// Gauge: R2Z2 head minus cursor, in sequences.
    pub const R2Z2_LAG: &str = "battlescope_ingest_r2z2_lag_sequences";
    /// Counter: R2Z2 sequences skipped as gaps, label `kind`.
    pub const R2Z2_GAPS: &str = "battlescope_ingest_r2z2_gap_sequences_total";
}

/// The outcome of preparing one document.
#[derive(Clone, Debug)]
pub enum Prepared {
    Accept(Box<NewKillmail>),
    Reject(RejectRecord),
    /// A killmail known by id and hash only: its body must come from ESI.
    Reference {
        killmail_id: i64,
        hash: String,
        zkb: Option<Zkb>,
    },
    Empty,
}

/// Shared by every source: the active ruleset and the static data it needs.
pub struct Pipeline {
    ruleset: RwLock<Arc<Ruleset>>,
}

impl Pipeline {
    pub fn new(ruleset: Ruleset) -> Self {
        Self {
            ruleset: RwLock::new(Arc::new(ruleset)),
        }
    }

    pub fn ruleset(&self) -> Arc<Ruleset> {
        Arc::clone(&self.ruleset.read())
    }

    pub fn set_ruleset(&self, ruleset: Ruleset) {
        *self.ruleset.write() = Arc::new(ruleset);
    }

    fn security(&self, system_id: i64) -> Option<SecurityType> {
        // Decoded on first use: only rulesets with security types need the map.
        StaticData::bundled()
            .system(system_id)
            .map(|s| s.security_type)
    }

    /// Parses, validates and filters one document.
    pub fn prepare(&self, bytes: &[u8], source: KillmailSource, now: DateTime<Utc>) -> Prepared {
        match parse_document(bytes) {
            Err(e) => self.reject(bytes, None, Rejection::from(e), source),
            Ok(Document::Empty) => Prepared::Empty,
            Ok(Document::Reference {
                killmail_id,
                hash,
                zkb,
            }) => Prepared::Reference {
                killmail_id,
                hash,
                zkb,
            },
            Ok(Document::Killmail(doc)) => self.prepare_doc(bytes, *doc, source, now),
        }
    }

    /// Validates and filters a parsed document (`bytes` is only kept if it is rejected).
    pub fn prepare_doc(
        &self,
        bytes: &[u8],
        doc: KillmailDoc,
        source: KillmailSource,
        now: DateTime<Utc>,
    ) -> Prepared {
        let id = Some(doc.killmail.killmail_id);
        let hash = match validate(&doc, now) {
            Ok(h) => h,
            Err(r) => return self.reject(bytes, id, r, source),
        };
        let ruleset = self.ruleset();
        let security = if ruleset.needs_security() {
            self.security(doc.killmail.solar_system_id)
        } else {
            None
        };
        if let Err(r) = ruleset.evaluate(&doc.killmail, security) {
            return self.reject(bytes, id, r, source);
        }
        let raw_data = serde_json::to_string(&doc.killmail).unwrap_or_default();
        let zkb_json = doc
            .zkb
            .as_ref()
            .map(|z| serde_json::to_string(z).unwrap_or_default());
        let content_hash = content_hash(&raw_data, zkb_json.as_deref());
        let attacker_alliance_ids =
            serde_json::to_string(&crate::store::attacker_alliances(&doc.killmail))
                .unwrap_or_else(|_| "[]".into());
        let raw_zstd = bs_store::outbox::Payload::compress(&raw_data);
        Prepared::Accept(Box::new(NewKillmail {
            attacker_alliance_ids,
            raw_zstd,
            r2z2_sequence: doc.sequence_id,
            killmail: doc.killmail,
            hash,
            zkb: doc.zkb,
            source,
            raw_data,
            zkb_json,
            content_hash,
            backfill_job_id: None,
        }))
    }

    fn reject(
        &self,
        bytes: &[u8],
        killmail_id: Option<i64>,
        r: Rejection,
        source: KillmailSource,
    ) -> Prepared {
        metrics::counter!(metric::REJECTED, "reason" => r.reason.as_str(), "source" => source.as_str()).increment(1);
        Prepared::Reject(reject_record(bytes, killmail_id, &r, source))
    }
}

/// A reject row; the fingerprint is over the input and the reason.
pub fn reject_record(
    bytes: &[u8],
    killmail_id: Option<i64>,
    r: &Rejection,
    source: KillmailSource,
) -> RejectRecord {
    let text = String::from_utf8_lossy(bytes);
    RejectRecord {
        fingerprint: format!("{}:{}", r.reason.as_str(), fnv(&[bytes])),
        killmail_id,
        reason: r.reason.as_str().to_owned(),
        detail: r.detail.clone(),
        source: source.as_str().to_owned(),
        raw: crate::domain::validate::truncate(&text, MAX_RAW).to_owned(),
    }
}

/// Tells a re-published killmail's content apart from what is stored: `x3` and the XXH3-64 of
/// the canonical body and zkb block, as hex. (Until 2026-12 it was [`fnv`] without a prefix,
/// byte by byte, 5 % of the import; [`same_content`] still reads those.)
pub fn content_hash(raw_data: &str, zkb_json: Option<&str>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(raw_data.as_bytes());
    // Separates the parts, as `fnv` does, so moving bytes between them changes the hash.
    h.update(&[0xff]);
    h.update(zkb_json.unwrap_or("").as_bytes());
    format!("x3{:016x}", h.digest())
}

/// Whether a stored content hash (either format) describes this content.
pub fn same_content(stored: &str, raw_data: &str, zkb_json: Option<&str>, hash: &str) -> bool {
    if stored.starts_with("x3") {
        stored == hash
    } else {
        stored == fnv(&[raw_data.as_bytes(), zkb_json.unwrap_or("").as_bytes()])
    }
}

/// FNV-1a 64 as hex: stable, cheap, enough to tell contents apart.
pub fn fnv(parts: &[&[u8]]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate parts so ("ab","c") differs from ("a","bc").
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashes_of_both_formats_are_compared_with_the_content() {
        let (raw, zkb) = (r#"{"killmail_id":1}"#, Some(r#"{"hash":"ab"}"#));
        let now = content_hash(raw, zkb);
        assert!(now.starts_with("x3") && now.len() == 18, "{now}");
        assert!(same_content(&now, raw, zkb, &now));
        assert_ne!(content_hash(raw, None), now);
        assert_ne!(
            content_hash(r#"{"killmail_id":1}{"#, Some(r#""hash":"ab"}"#)),
            now
        );
        // A row stored before the change keeps its FNV hash: same content, no update.
        let legacy = fnv(&[raw.as_bytes(), zkb.unwrap().as_bytes()]);
        assert!(same_content(&legacy, raw, zkb, &now));
        assert!(!same_content(&legacy, raw, None, &content_hash(raw, None)));
    }
}
