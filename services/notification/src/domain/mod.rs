//! The pure core: filters and matching ([`filter`]), the subscription index ([`Matcher`]), the
//! max-age rule, the webhook retry policy ([`retry`]) and the payloads ([`payload`]). No IO, no
//! clock: "now" and randomness are parameters.

pub mod filter;
pub mod payload;
pub mod retry;

use std::collections::HashMap;
use std::time::Duration;

use bs_events::{BattleSnapshot, KillmailEnriched};
use chrono::{DateTime, Utc};

pub use filter::{Compiled, Filter, FilterError, Geography, Key, Role, Subject, WatchlistSet};

/// Killmails (by kill time) and battles (by last kill) older than `max_age` never notify.
pub fn too_old(event_time: DateTime<Utc>, now: DateTime<Utc>, max_age: Duration) -> bool {
    let max = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    now.signed_duration_since(event_time) > max
}

/// One subscription as the matcher sees it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub subscription_id: i64,
    pub filter: Compiled,
    pub battle: bool,
}

/// Every active subscription, indexed by the keys their filters require, so a killmail is
/// checked only against the subscriptions that could match it.
#[derive(Debug, Default)]
pub struct Matcher {
    entries: Vec<Entry>,
    by_key: HashMap<Key, Vec<u32>>,
    /// Killmail subscriptions without a required key: checked against every killmail.
    unanchored: Vec<u32>,
    battles: Vec<u32>,
}

/// Reusable buffers of [`Matcher::match_killmail`] (one per worker, no allocation per call).
#[derive(Default)]
pub struct Scratch {
    keys: Vec<Key>,
    seen: Vec<u32>,
    stamp: u32,
    candidates: Vec<u32>,
}

impl Matcher {
    pub fn new(entries: Vec<Entry>) -> Self {
        let mut m = Matcher::default();
        for (i, e) in entries.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            if e.battle {
                m.battles.push(i);
                continue;
            }
            match e.filter.anchors() {
                Some(keys) => {
                    for k in keys {
                        m.by_key.entry(k).or_default().push(i);
                    }
                }
                None => m.unanchored.push(i),
            }
        }
        m.entries = entries;
        m
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The subscription ids whose filter matches `km` (ascending).
    pub fn match_killmail(&self, km: &KillmailEnriched, scratch: &mut Scratch) -> Vec<i64> {
        if scratch.seen.len() < self.entries.len() {
            scratch.seen.resize(self.entries.len(), 0);
        }
        scratch.stamp = scratch.stamp.wrapping_add(1);
        if scratch.stamp == 0 {
            scratch.seen.iter_mut().for_each(|s| *s = 0);
            scratch.stamp = 1;
        }
        let stamp = scratch.stamp;
        filter::killmail_keys(km, &mut scratch.keys);
        scratch.candidates.clear();
        for k in &scratch.keys {
            if let Some(list) = self.by_key.get(k) {
                for &i in list {
                    let slot = &mut scratch.seen[i as usize];
                    if *slot != stamp {
                        *slot = stamp;
                        scratch.candidates.push(i);
                    }
                }
            }
        }
        scratch.candidates.extend_from_slice(&self.unanchored);
        let mut out: Vec<i64> = scratch
            .candidates
            .iter()
            .map(|&i| &self.entries[i as usize])
            .filter(|e| e.filter.matches(Subject::Killmail(km)))
            .map(|e| e.subscription_id)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The battle-trigger subscription ids matching `battle` (ascending).
    pub fn match_battle(&self, battle: &BattleSnapshot) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .battles
            .iter()
            .map(|&i| &self.entries[i as usize])
            .filter(|e| e.filter.matches(Subject::Battle(battle)))
            .map(|e| e.subscription_id)
            .collect();
        out.sort_unstable();
        out
    }
}
