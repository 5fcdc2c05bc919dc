//! [`NotificationStore`]: subscriptions, webhooks, watchlists, the history and the webhook
//! outbox; [`SqlNotificationStore`] implements it on SQLite and PostgreSQL with one SQL text.
//!
//! Exactly-once per channel: a match is keyed `(subscription, kind, subject)` in
//! `notifications` and `(webhook, kind, subject)` in `deliveries`, both unique, and both rows
//! are written in one transaction ([`NotificationStore::record_matches`]); a redelivered event
//! or a replay after a restart inserts nothing and therefore pushes and sends nothing.

use async_trait::async_trait;
use bs_store::{Database, StoreResult, from_millis, sqlx};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row as _;
use sqlx::any::AnyRow;

use crate::domain::{Filter, WatchlistSet};

/// The body formats a webhook can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    Discord,
    Json,
}

impl WebhookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discord => "discord",
            Self::Json => "json",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "discord" {
            Self::Discord
        } else {
            Self::Json
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    pub kind: WebhookKind,
    pub enabled: bool,
    /// Why the service disabled it (401/403/404), for its owner.
    pub disabled_reason: Option<String>,
    /// Delivery status for its owner (filled by the owner's reads, zero in the matcher).
    #[serde(default)]
    pub status: WebhookStatus,
}

/// How a webhook's deliveries went: counts by state and the most recent error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookStatus {
    pub delivered: u64,
    pub pending: u64,
    /// Dead-lettered after the final failure (see `GET /dead-letters`).
    pub failed: u64,
    /// The error of the latest delivery that had one (it may have succeeded since).
    pub last_error: Option<String>,
    /// When the latest delivery finished (sent or dead-lettered).
    pub last_done_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewWebhook {
    pub url: String,
    pub kind: WebhookKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: i64,
    pub account_id: String,
    pub name: String,
    pub filter: Filter,
    pub websocket: bool,
    pub enabled: bool,
    pub webhooks: Vec<Webhook>,
    pub created_at: DateTime<Utc>,
}

/// A subscription as written by its owner (POST and PUT).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewSubscription {
    pub name: String,
    pub filter: Filter,
    #[serde(default = "yes")]
    pub websocket: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub webhooks: Vec<NewWebhook>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Watchlist {
    pub id: i64,
    pub account_id: String,
    pub name: String,
    #[serde(flatten)]
    pub members: WatchlistSet,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub account_id: String,
    pub subscription_id: i64,
    pub kind: String,
    pub subject_id: i64,
    pub summary: Value,
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

/// One match to record: the history row and the bodies of its webhook deliveries.
#[derive(Clone, Debug)]
pub struct NewMatch {
    pub subscription_id: i64,
    pub account_id: String,
    pub kind: &'static str,
    pub subject_id: i64,
    pub summary: Value,
    pub discord_body: Value,
    pub json_body: Value,
}

/// A pending webhook delivery, with what the sender needs.
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    pub id: i64,
    pub webhook_id: i64,
    pub url: String,
    pub body: String,
    pub attempts: u32,
    pub rate_limited: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub delivery_id: i64,
    pub webhook_id: i64,
    pub subscription_id: i64,
    pub kind: String,
    pub subject_id: i64,
    pub attempts: u32,
    pub reason: Option<String>,
}

#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    async fn create_subscription(
        &self,
        account: &str,
        new: &NewSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Subscription>;
    async fn list_subscriptions(&self, account: &str) -> StoreResult<Vec<Subscription>>;
    async fn get_subscription(&self, account: &str, id: i64) -> StoreResult<Option<Subscription>>;
    /// Replaces name, filter, channels; webhooks keep their id (and dedupe history) by URL.
    async fn update_subscription(
        &self,
        account: &str,
        id: i64,
        new: &NewSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Subscription>>;
    async fn delete_subscription(&self, account: &str, id: i64) -> StoreResult<bool>;
    /// Every enabled subscription of every account, for the matcher.
    async fn active_subscriptions(&self) -> StoreResult<Vec<Subscription>>;

    async fn create_watchlist(
        &self,
        account: &str,
        name: &str,
        members: &WatchlistSet,
        now: DateTime<Utc>,
    ) -> StoreResult<Watchlist>;
    async fn list_watchlists(&self, account: &str) -> StoreResult<Vec<Watchlist>>;
    async fn all_watchlists(&self) -> StoreResult<Vec<Watchlist>>;
    async fn delete_watchlist(&self, account: &str, id: i64) -> StoreResult<bool>;

    /// Records matches idempotently; returns the notifications that are new.
    async fn record_matches(
        &self,
        matches: &[NewMatch],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Notification>>;
    /// Unread first, then newest first.
    async fn list_notifications(&self, account: &str, limit: u32)
    -> StoreResult<Vec<Notification>>;
    async fn mark_read(&self, account: &str, id: i64, now: DateTime<Utc>) -> StoreResult<bool>;
    async fn mark_all_read(&self, account: &str, now: DateTime<Utc>) -> StoreResult<u64>;

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: u32)
    -> StoreResult<Vec<DueDelivery>>;
    async fn mark_delivered(&self, id: i64, attempts: u32, now: DateTime<Utc>) -> StoreResult<()>;
    async fn reschedule(
        &self,
        id: i64,
        next: DateTime<Utc>,
        attempts: u32,
        rate_limited: u32,
        error: &str,
    ) -> StoreResult<()>;
    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Disables a webhook and dead-letters its pending deliveries with `reason`.
    async fn disable_webhook(
        &self,
        webhook_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn dead_letters(&self, account: &str) -> StoreResult<Vec<DeadLetter>>;
    /// Delivery states by count, for tests and metrics: (pending, sent, dead).
    async fn delivery_counts(&self) -> StoreResult<(u64, u64, u64)>;
}

/// The SQL implementation (both backends).
#[derive(Clone, Debug)]
pub struct SqlNotificationStore {
    db: Database,
}

impl SqlNotificationStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn bad_row(e: serde_json::Error) -> bs_store::StoreError {
    bs_store::StoreError::Other(format!("undecodable row: {e}"))
}

const SUB_COLS: &str = "id, account_id, name, filter, websocket, enabled, created_ms";

impl SqlNotificationStore {
    async fn hydrate(&self, rows: Vec<AnyRow>) -> StoreResult<Vec<Subscription>> {
        let mut subs = Vec::with_capacity(rows.len());
        for r in rows {
            let filter: String = r.try_get(3)?;
            subs.push(Subscription {
                id: r.try_get(0)?,
                account_id: r.try_get(1)?,
                name: r.try_get(2)?,
                filter: serde_json::from_str(&filter).map_err(bad_row)?,
                websocket: r.try_get::<i64, _>(4)? != 0,
                enabled: r.try_get::<i64, _>(5)? != 0,
                webhooks: Vec::new(),
                created_at: from_millis(r.try_get(6)?),
            });
        }
        if subs.is_empty() {
            return Ok(subs);
        }
        // One query for all webhooks; small lists, so filtering in memory is fine.
        let hooks = sqlx::query(
            "SELECT id, subscription_id, url, kind, enabled, disabled_reason FROM webhooks ORDER BY id",
        )
        .fetch_all(self.db.pool())
        .await?;
        let index: std::collections::HashMap<i64, usize> =
            subs.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        for h in hooks {
            let sub: i64 = h.try_get(1)?;
            if let Some(&i) = index.get(&sub) {
                subs[i].webhooks.push(Webhook {
                    id: h.try_get(0)?,
                    url: h.try_get(2)?,
                    kind: WebhookKind::parse(&h.try_get::<String, _>(3)?),
                    enabled: h.try_get::<i64, _>(4)? != 0,
                    disabled_reason: h.try_get(5)?,
                    status: WebhookStatus::default(),
                });
            }
        }
        Ok(subs)
    }

    /// Fills each webhook's [`WebhookStatus`] (the owner's reads only: the matcher's reload
    /// does not need it).
    async fn with_status(&self, mut subs: Vec<Subscription>) -> StoreResult<Vec<Subscription>> {
        let ids: Vec<i64> = subs
            .iter()
            .flat_map(|s| s.webhooks.iter().map(|w| w.id))
            .collect();
        if ids.is_empty() {
            return Ok(subs);
        }
        // The ids are our own integers, so inlining them is safe and keeps one SQL text for
        // both engines (no array binds).
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let counts = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT webhook_id, state, CAST(COUNT(*) AS BIGINT), CAST(MAX(COALESCE(done_ms, 0)) AS BIGINT) \
             FROM deliveries WHERE webhook_id IN ({list}) GROUP BY webhook_id, state"
        )))
        .fetch_all(self.db.pool())
        .await?;
        let errors = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT webhook_id, last_error FROM deliveries WHERE id IN \
             (SELECT MAX(id) FROM deliveries WHERE webhook_id IN ({list}) AND last_error IS NOT NULL GROUP BY webhook_id)"
        )))
        .fetch_all(self.db.pool())
        .await?;
        let mut status: std::collections::HashMap<i64, WebhookStatus> =
            std::collections::HashMap::new();
        for r in counts {
            let st = status.entry(r.try_get(0)?).or_default();
            let state: String = r.try_get(1)?;
            let n = u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0);
            let done: i64 = r.try_get(3)?;
            match state.as_str() {
                "pending" => st.pending = n,
                "sent" => st.delivered = n,
                _ => st.failed = n,
            }
            if done > 0 && st.last_done_at.is_none_or(|t| ms(t) < done) {
                st.last_done_at = Some(from_millis(done));
            }
        }
        for r in errors {
            status.entry(r.try_get(0)?).or_default().last_error = r.try_get(1)?;
        }
        for s in &mut subs {
            for w in &mut s.webhooks {
                if let Some(st) = status.remove(&w.id) {
                    w.status = st;
                }
            }
        }
        Ok(subs)
    }

    async fn put_webhooks(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        sub: i64,
        hooks: &[NewWebhook],
    ) -> StoreResult<()> {
        let existing = sqlx::query("SELECT id, url FROM webhooks WHERE subscription_id = $1")
            .bind(sub)
            .fetch_all(&mut **tx)
            .await?;
        for r in existing {
            let url: String = r.try_get(1)?;
            if !hooks.iter().any(|h| h.url == url) {
                let id: i64 = r.try_get(0)?;
                sqlx::query("DELETE FROM deliveries WHERE webhook_id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM webhooks WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        for h in hooks {
            // An edited kind applies; a re-submitted URL keeps its id and its state.
            sqlx::query(
                "INSERT INTO webhooks (subscription_id, url, kind, enabled, disabled_reason) \
                 VALUES ($1, $2, $3, 1, NULL) \
                 ON CONFLICT (subscription_id, url) DO UPDATE SET kind = excluded.kind",
            )
            .bind(sub)
            .bind(h.url.clone())
            .bind(h.kind.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

fn notification(r: &AnyRow) -> StoreResult<Notification> {
    let summary: String = r.try_get(5)?;
    Ok(Notification {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        subscription_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        subject_id: r.try_get(4)?,
        summary: serde_json::from_str(&summary).map_err(bad_row)?,
        created_at: from_millis(r.try_get(6)?),
        read: r.try_get::<Option<i64>, _>(7)?.is_some(),
    })
}

const NOTE_COLS: &str =
    "id, account_id, subscription_id, kind, subject_id, summary, created_ms, read_ms";

#[async_trait]
impl NotificationStore for SqlNotificationStore {
    async fn create_subscription(
        &self,
        account: &str,
        new: &NewSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Subscription> {
        let mut tx = self.db.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO subscriptions (account_id, name, filter, websocket, enabled, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(account.to_owned())
        .bind(new.name.clone())
        .bind(to_json(&new.filter))
        .bind(i64::from(new.websocket))
        .bind(i64::from(new.enabled))
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        Self::put_webhooks(&mut tx, id, &new.webhooks).await?;
        tx.commit().await?;
        self.get_subscription(account, id)
            .await?
            .ok_or_else(|| bs_store::StoreError::Other("subscription vanished".into()))
    }

    async fn list_subscriptions(&self, account: &str) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE account_id = $1 ORDER BY id"
        )))
        .bind(account.to_owned())
        .fetch_all(self.db.pool())
        .await?;
        let subs = self.hydrate(rows).await?;
        self.with_status(subs).await
    }

    async fn get_subscription(&self, account: &str, id: i64) -> StoreResult<Option<Subscription>> {
        let rows = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE account_id = $1 AND id = $2"
        )))
        .bind(account.to_owned())
        .bind(id)
        .fetch_all(self.db.pool())
        .await?;
        let subs = self.hydrate(rows).await?;
        Ok(self.with_status(subs).await?.into_iter().next())
    }

    async fn update_subscription(
        &self,
        account: &str,
        id: i64,
        new: &NewSubscription,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Subscription>> {
        let mut tx = self.db.begin().await?;
        let n = sqlx::query(
            "UPDATE subscriptions SET name = $1, filter = $2, websocket = $3, enabled = $4, updated_ms = $5 \
             WHERE account_id = $6 AND id = $7",
        )
        .bind(new.name.clone())
        .bind(to_json(&new.filter))
        .bind(i64::from(new.websocket))
        .bind(i64::from(new.enabled))
        .bind(ms(now))
        .bind(account.to_owned())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(None);
        }
        Self::put_webhooks(&mut tx, id, &new.webhooks).await?;
        tx.commit().await?;
        self.get_subscription(account, id).await
    }

    async fn delete_subscription(&self, account: &str, id: i64) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let owned = sqlx::query("SELECT id FROM subscriptions WHERE account_id = $1 AND id = $2")
            .bind(account.to_owned())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !owned {
            return Ok(false);
        }
        // Explicit child deletes: the Any driver does not promise foreign_keys on every pool.
        for sql in [
            "DELETE FROM deliveries WHERE webhook_id IN (SELECT id FROM webhooks WHERE subscription_id = $1)",
            "DELETE FROM webhooks WHERE subscription_id = $1",
            "DELETE FROM notifications WHERE subscription_id = $1",
            "DELETE FROM subscriptions WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn active_subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        let rows = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT {SUB_COLS} FROM subscriptions WHERE enabled = 1 ORDER BY id"
        )))
        .fetch_all(self.db.pool())
        .await?;
        self.hydrate(rows).await
    }

    async fn create_watchlist(
        &self,
        account: &str,
        name: &str,
        members: &WatchlistSet,
        now: DateTime<Utc>,
    ) -> StoreResult<Watchlist> {
        let id: i64 = sqlx::query(
            "INSERT INTO watchlists (account_id, name, members, created_ms) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(account.to_owned())
        .bind(name.to_owned())
        .bind(to_json(members))
        .bind(ms(now))
        .fetch_one(self.db.pool())
        .await?
        .try_get(0)?;
        Ok(Watchlist {
            id,
            account_id: account.to_owned(),
            name: name.to_owned(),
            members: members.clone(),
        })
    }

    async fn list_watchlists(&self, account: &str) -> StoreResult<Vec<Watchlist>> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, members FROM watchlists WHERE account_id = $1 ORDER BY id",
        )
        .bind(account.to_owned())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(watchlist).collect()
    }

    async fn all_watchlists(&self) -> StoreResult<Vec<Watchlist>> {
        let rows = sqlx::query("SELECT id, account_id, name, members FROM watchlists ORDER BY id")
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(watchlist).collect()
    }

    async fn delete_watchlist(&self, account: &str, id: i64) -> StoreResult<bool> {
        let n = sqlx::query("DELETE FROM watchlists WHERE account_id = $1 AND id = $2")
            .bind(account.to_owned())
            .bind(id)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn record_matches(
        &self,
        matches: &[NewMatch],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Notification>> {
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin().await?;
        let mut fresh = Vec::new();
        for m in matches {
            let summary = to_json(&m.summary);
            let row = sqlx::query(
                "INSERT INTO notifications (account_id, subscription_id, kind, subject_id, summary, created_ms, read_ms) \
                 SELECT $1, $2, $3, $4, $5, $6, NULL WHERE EXISTS (SELECT 1 FROM subscriptions WHERE id = $2) \
                 ON CONFLICT (subscription_id, kind, subject_id) DO NOTHING RETURNING id",
            )
            .bind(m.account_id.clone())
            .bind(m.subscription_id)
            .bind(m.kind)
            .bind(m.subject_id)
            .bind(summary)
            .bind(ms(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { continue };
            sqlx::query(
                "INSERT INTO deliveries (webhook_id, kind, subject_id, body, state, attempts, rate_limited, next_ms, last_error, created_ms, done_ms) \
                 SELECT id, $2, $3, CASE WHEN kind = 'discord' THEN $4 ELSE $5 END, 'pending', 0, 0, $6, NULL, $6, NULL \
                 FROM webhooks WHERE subscription_id = $1 AND enabled = 1 \
                 ON CONFLICT (webhook_id, kind, subject_id) DO NOTHING",
            )
            .bind(m.subscription_id)
            .bind(m.kind)
            .bind(m.subject_id)
            .bind(to_json(&m.discord_body))
            .bind(to_json(&m.json_body))
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
            fresh.push(Notification {
                id: row.try_get(0)?,
                account_id: m.account_id.clone(),
                subscription_id: m.subscription_id,
                kind: m.kind.to_owned(),
                subject_id: m.subject_id,
                summary: m.summary.clone(),
                created_at: from_millis(ms(now)),
                read: false,
            });
        }
        tx.commit().await?;
        Ok(fresh)
    }

    async fn list_notifications(
        &self,
        account: &str,
        limit: u32,
    ) -> StoreResult<Vec<Notification>> {
        let rows = sqlx::query(bs_store::dynamic_sql(format!(
            "SELECT {NOTE_COLS} FROM notifications WHERE account_id = $1 \
             ORDER BY CASE WHEN read_ms IS NULL THEN 0 ELSE 1 END, id DESC LIMIT $2"
        )))
        .bind(account.to_owned())
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(notification).collect()
    }

    async fn mark_read(&self, account: &str, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE notifications SET read_ms = COALESCE(read_ms, $1) WHERE account_id = $2 AND id = $3",
        )
        .bind(ms(now))
        .bind(account.to_owned())
        .bind(id)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn mark_all_read(&self, account: &str, now: DateTime<Utc>) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE notifications SET read_ms = $1 WHERE account_id = $2 AND read_ms IS NULL",
        )
        .bind(ms(now))
        .bind(account.to_owned())
        .execute(self.db.pool())
        .await?
        .rows_affected())
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<DueDelivery>> {
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, w.url, d.body, d.attempts, d.rate_limited FROM deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.state = 'pending' AND d.next_ms <= $1 AND w.enabled = 1 ORDER BY d.next_ms, d.id LIMIT $2",
        )
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get(0)?,
                    webhook_id: r.try_get(1)?,
                    url: r.try_get(2)?,
                    body: r.try_get(3)?,
                    attempts: u32_of(r.try_get(4)?),
                    rate_limited: u32_of(r.try_get(5)?),
                })
            })
            .collect()
    }

    async fn mark_delivered(&self, id: i64, attempts: u32, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE deliveries SET state = 'sent', attempts = $1, done_ms = $2, last_error = NULL WHERE id = $3")
            .bind(i64::from(attempts))
            .bind(ms(now))
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn reschedule(
        &self,
        id: i64,
        next: DateTime<Utc>,
        attempts: u32,
        rate_limited: u32,
        error: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE deliveries SET next_ms = $1, attempts = $2, rate_limited = $3, last_error = $4 WHERE id = $5 AND state = 'pending'",
        )
        .bind(ms(next))
        .bind(i64::from(attempts))
        .bind(i64::from(rate_limited))
        .bind(error.to_owned())
        .bind(id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        id: i64,
        attempts: u32,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE deliveries SET state = 'dead', attempts = $1, last_error = $2, done_ms = $3 WHERE id = $4")
            .bind(i64::from(attempts))
            .bind(reason.to_owned())
            .bind(ms(now))
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    async fn disable_webhook(
        &self,
        webhook_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = $1 WHERE id = $2")
            .bind(reason.to_owned())
            .bind(webhook_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE deliveries SET state = 'dead', last_error = $1, done_ms = $2 WHERE webhook_id = $3 AND state = 'pending'",
        )
        .bind(reason.to_owned())
        .bind(ms(now))
        .bind(webhook_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dead_letters(&self, account: &str) -> StoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, w.subscription_id, d.kind, d.subject_id, d.attempts, d.last_error \
             FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN subscriptions s ON s.id = w.subscription_id \
             WHERE s.account_id = $1 AND d.state = 'dead' ORDER BY d.id",
        )
        .bind(account.to_owned())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    delivery_id: r.try_get(0)?,
                    webhook_id: r.try_get(1)?,
                    subscription_id: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    subject_id: r.try_get(4)?,
                    attempts: u32_of(r.try_get(5)?),
                    reason: r.try_get(6)?,
                })
            })
            .collect()
    }

    async fn delivery_counts(&self) -> StoreResult<(u64, u64, u64)> {
        let rows =
            sqlx::query("SELECT state, CAST(COUNT(*) AS BIGINT) FROM deliveries GROUP BY state")
                .fetch_all(self.db.pool())
                .await?;
        let mut out = (0, 0, 0);
        for r in rows {
            let state: String = r.try_get(0)?;
            let n = u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0);
            match state.as_str() {
                "pending" => out.0 = n,
                "sent" => out.1 = n,
                _ => out.2 = n,
            }
        }
        Ok(out)
    }
}

fn watchlist(r: &AnyRow) -> StoreResult<Watchlist> {
    let members: String = r.try_get(3)?;
    Ok(Watchlist {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        name: r.try_get(2)?,
        members: serde_json::from_str(&members).map_err(bad_row)?,
    })
}
