//! [`Notifier`]: the service core. Consumes `killmail.enriched` and `battle.created/updated`,
//! matches them against every active subscription (the in-memory [`Matcher`], rebuilt from
//! the store whenever a subscription or watchlist changes), records the matches idempotently
//! (history + webhook outbox in one transaction) and pushes the new ones to WebSockets.
//!
//! Order of effects: the transaction commits first, then the WebSocket push and the sender
//! wake-up, so a redelivered batch (handler error, restart before commit) pushes nothing
//! twice — `record_matches` returns only rows it inserted.
//! A killmail's later revisions (names resolved) do not notify again: the key is the killmail.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bs_bus::Delivery;
use bs_events::{BattleCreated, BattleSnapshot, BattleUpdated, Envelope, KillmailEnriched, topics};
use bs_runtime::Clock;
use parking_lot::RwLock;
use tokio::sync::Notify;

use crate::delivery::ws::{Hub, Message};
use crate::domain::filter::{self, Geography};
use crate::domain::payload::{self, KIND_BATTLE, KIND_KILLMAIL};
use crate::domain::{Entry, Matcher, Scratch, WatchlistSet, too_old};
use crate::store::{NewMatch, NotificationStore, Subscription};

/// What the notifier needs besides the store.
#[derive(Clone, Debug)]
pub struct NotifierSettings {
    pub max_age: Duration,
    pub public_url: String,
    pub public_feed: bool,
}

#[derive(Default)]
struct State {
    matcher: Matcher,
    /// Subscription id → (account, push to WebSocket).
    subs: HashMap<i64, (String, bool)>,
}

/// Counters of one consumer, for tests and `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub rejected: AtomicU64,
    pub too_old: AtomicU64,
    pub matched: AtomicU64,
    pub invalid_filters: AtomicU64,
}

pub struct Notifier {
    pub store: Arc<dyn NotificationStore>,
    pub clock: Arc<dyn Clock>,
    pub hub: Arc<Hub>,
    pub geo: Arc<dyn Geography + Send + Sync>,
    pub settings: NotifierSettings,
    /// Wakes the webhook sender after deliveries were enqueued.
    pub wake: Arc<Notify>,
    pub stats: Stats,
    state: RwLock<Arc<State>>,
    /// Serialises reloads, so a slower reload that read older rows cannot overwrite a newer one.
    reloading: tokio::sync::Mutex<()>,
}

impl Notifier {
    pub async fn open(
        store: Arc<dyn NotificationStore>,
        clock: Arc<dyn Clock>,
        hub: Arc<Hub>,
        geo: Arc<dyn Geography + Send + Sync>,
        settings: NotifierSettings,
    ) -> anyhow::Result<Arc<Self>> {
        let n = Arc::new(Self {
            store,
            clock,
            hub,
            geo,
            settings,
            wake: Arc::new(Notify::new()),
            stats: Stats::default(),
            state: RwLock::new(Arc::new(State::default())),
            reloading: tokio::sync::Mutex::new(()),
        });
        n.reload().await?;
        Ok(n)
    }

    /// Rebuilds the matcher from the store (after any subscription or watchlist change).
    /// A filter that no longer compiles (deleted watchlist) is skipped and counted.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let subs = self.store.active_subscriptions().await?;
        let mut lists: HashMap<String, HashMap<i64, WatchlistSet>> = HashMap::new();
        for w in self.store.all_watchlists().await? {
            lists
                .entry(w.account_id.clone())
                .or_default()
                .insert(w.id, w.members);
        }
        let state = build_state(&subs, &lists, &*self.geo, &self.stats);
        *self.state.write() = Arc::new(state);
        Ok(())
    }

    /// Active subscriptions in the matcher.
    pub fn active(&self) -> usize {
        self.state.read().matcher.len()
    }

    /// The consumer handler: decodes, counts bad records and goes on.
    pub async fn handle_deliveries(&self, batch: Vec<Delivery>) -> anyhow::Result<()> {
        let mut kills = Vec::new();
        let mut battles = Vec::new();
        for d in &batch {
            let env = match Envelope::from_bytes(&d.payload) {
                Ok(e) => e,
                Err(e) => {
                    self.reject(&d.topic, &e.to_string());
                    continue;
                }
            };
            let decoded = match d.topic.as_str() {
                topics::KILLMAIL_ENRICHED => {
                    env.decode::<KillmailEnriched>().map(|k| kills.push(k))
                }
                topics::BATTLE_CREATED => env.decode::<BattleCreated>().map(|b| battles.push(b.0)),
                topics::BATTLE_UPDATED => env.decode::<BattleUpdated>().map(|b| battles.push(b.0)),
                _ => Ok(()),
            };
            if let Err(e) = decoded {
                self.reject(&d.topic, &e.to_string());
            }
        }
        self.handle_killmails(&kills).await?;
        self.handle_battles(&battles).await
    }

    fn reject(&self, topic: &str, error: &str) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("battlescope_notification_rejected_total").increment(1);
        tracing::warn!(topic, error, "rejected record");
    }

    /// Matches, records and pushes a batch of killmails.
    pub async fn handle_killmails(&self, kills: &[KillmailEnriched]) -> anyhow::Result<()> {
        let now = self.clock.now();
        let state = Arc::clone(&self.state.read());
        let mut scratch = Scratch::default();
        let mut matches = Vec::new();
        for km in kills {
            if too_old(km.killmail_time, now, self.settings.max_age) {
                self.stats.too_old.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.settings.public_feed {
                let msg: Message =
                    serde_json::json!({ "type": "killmail", "killmail": payload::killmail_summary(km) })
                        .to_string()
                        .into();
                self.hub
                    .publish_public(&msg, |f| f.matches(filter::Subject::Killmail(km)));
            }
            let ids = state.matcher.match_killmail(km, &mut scratch);
            if ids.is_empty() {
                continue;
            }
            let summary = payload::killmail_summary(km);
            for id in ids {
                let Some((account, _)) = state.subs.get(&id) else {
                    continue;
                };
                let key = format!("{id}/{KIND_KILLMAIL}/{}", km.killmail_id);
                matches.push(NewMatch {
                    subscription_id: id,
                    account_id: account.clone(),
                    kind: KIND_KILLMAIL,
                    subject_id: km.killmail_id,
                    summary: summary.clone(),
                    discord_body: payload::discord_killmail(km, &self.settings.public_url, &key),
                    json_body: payload::generic(&summary, id, &key),
                });
            }
        }
        self.commit(&state, &matches).await
    }

    /// Matches battle triggers; each battle notifies a subscription once.
    pub async fn handle_battles(&self, battles: &[BattleSnapshot]) -> anyhow::Result<()> {
        let now = self.clock.now();
        let state = Arc::clone(&self.state.read());
        let mut matches = Vec::new();
        for b in battles {
            if too_old(b.end_time, now, self.settings.max_age) {
                self.stats.too_old.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let summary = payload::battle_summary(b);
            for id in state.matcher.match_battle(b) {
                let Some((account, _)) = state.subs.get(&id) else {
                    continue;
                };
                let key = format!("{id}/{KIND_BATTLE}/{}", b.battle_id);
                matches.push(NewMatch {
                    subscription_id: id,
                    account_id: account.clone(),
                    kind: KIND_BATTLE,
                    subject_id: b.battle_id,
                    summary: summary.clone(),
                    discord_body: payload::discord_battle(b, &self.settings.public_url, &key),
                    json_body: payload::generic(&summary, id, &key),
                });
            }
        }
        self.commit(&state, &matches).await
    }

    async fn commit(&self, state: &State, matches: &[NewMatch]) -> anyhow::Result<()> {
        if matches.is_empty() {
            return Ok(());
        }
        let fresh = self.store.record_matches(matches, self.clock.now()).await?;
        self.stats
            .matched
            .fetch_add(fresh.len() as u64, Ordering::Relaxed);
        metrics::counter!("battlescope_notification_matches_total").increment(fresh.len() as u64);
        for n in &fresh {
            if state
                .subs
                .get(&n.subscription_id)
                .is_some_and(|(_, ws)| *ws)
            {
                let msg: Message = serde_json::json!({ "type": "notification", "notification": n })
                    .to_string()
                    .into();
                self.hub.publish(&n.account_id, &msg);
            }
        }
        if !fresh.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

fn build_state(
    subs: &[Subscription],
    lists: &HashMap<String, HashMap<i64, WatchlistSet>>,
    geo: &dyn Geography,
    stats: &Stats,
) -> State {
    let empty = HashMap::new();
    let mut entries = Vec::with_capacity(subs.len());
    let mut meta = HashMap::with_capacity(subs.len());
    for s in subs {
        let owned = lists.get(&s.account_id).unwrap_or(&empty);
        match filter::compile(&s.filter, geo, owned) {
            Ok(c) => {
                entries.push(Entry {
                    subscription_id: s.id,
                    filter: c,
                    battle: filter::is_battle_trigger(&s.filter),
                });
                meta.insert(s.id, (s.account_id.clone(), s.websocket));
            }
            Err(e) => {
                stats.invalid_filters.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(subscription = s.id, error = %e, "subscription filter does not compile; skipped");
            }
        }
    }
    State {
        matcher: Matcher::new(entries),
        subs: meta,
    }
}
