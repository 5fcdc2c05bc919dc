//! The store conformance suite, run on SQLite and (when configured) PostgreSQL: ownership,
//! webhook identity across edits, idempotent matches, history order, the outbox life cycle.

use bs_notification::SqlNotificationStore;
use bs_notification::domain::WatchlistSet;
use bs_notification::domain::filter::{Filter, Role};
use bs_notification::store::{
    NewMatch, NewSubscription, NewWebhook, NotificationStore, WebhookKind,
};
use bs_store::Database;
use chrono::Utc;
use serde_json::json;

use crate::helpers::*;

fn sub(name: &str, hooks: &[&str]) -> NewSubscription {
    NewSubscription {
        name: name.into(),
        filter: Filter::Alliance {
            ids: vec![99],
            role: Role::Either,
        },
        websocket: true,
        enabled: true,
        webhooks: hooks
            .iter()
            .map(|u| NewWebhook {
                url: (*u).into(),
                kind: WebhookKind::Json,
            })
            .collect(),
    }
}

fn m(sub: i64, account: &str, subject: i64) -> NewMatch {
    NewMatch {
        subscription_id: sub,
        account_id: account.into(),
        kind: "killmail",
        subject_id: subject,
        summary: json!({ "killmail_id": subject }),
        discord_body: json!({ "d": subject }),
        json_body: json!({ "j": subject }),
    }
}

async fn suite(db: Database) {
    let s = SqlNotificationStore::new(db);
    let now = Utc::now();
    let a = s
        .create_subscription(
            "alice",
            &sub("one", &["https://a.example/1", "https://a.example/2"]),
            now,
        )
        .await
        .unwrap();
    assert_eq!(a.webhooks.len(), 2);
    assert_eq!(
        a.filter,
        Filter::Alliance {
            ids: vec![99],
            role: Role::Either
        }
    );
    let b = s
        .create_subscription("bob", &sub("two", &[]), now)
        .await
        .unwrap();
    // Ownership: bob cannot see, edit or delete alice's subscription.
    assert!(s.get_subscription("bob", a.id).await.unwrap().is_none());
    assert!(
        s.update_subscription("bob", a.id, &sub("x", &[]), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!s.delete_subscription("bob", a.id).await.unwrap());
    assert_eq!(s.list_subscriptions("alice").await.unwrap().len(), 1);
    assert_eq!(s.active_subscriptions().await.unwrap().len(), 2);

    // Matches are idempotent: the second record inserts nothing and enqueues nothing.
    let fresh = s
        .record_matches(&[m(a.id, "alice", 1), m(b.id, "bob", 1)], now)
        .await
        .unwrap();
    assert_eq!(fresh.len(), 2);
    let again = s.record_matches(&[m(a.id, "alice", 1)], now).await.unwrap();
    assert!(again.is_empty());
    assert_eq!(
        s.delivery_counts().await.unwrap(),
        (2, 0, 0),
        "two webhooks of alice's subscription"
    );
    let due = s.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].body, json!({ "j": 1 }).to_string());

    // Editing keeps a webhook's id (and therefore its dedupe) when its URL stays.
    let kept = a
        .webhooks
        .iter()
        .find(|w| w.url.ends_with("/1"))
        .unwrap()
        .id;
    let edited = s
        .update_subscription(
            "alice",
            a.id,
            &sub("one!", &["https://a.example/1", "https://a.example/3"]),
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.name, "one!");
    assert!(edited.webhooks.iter().any(|w| w.id == kept));
    assert!(!edited.webhooks.iter().any(|w| w.url.ends_with("/2")));
    assert_eq!(
        s.delivery_counts().await.unwrap().0,
        1,
        "the removed webhook's delivery is gone"
    );

    // Outbox life cycle: reschedule into the future hides it, delivered, dead letter, disable.
    let d = s.due_deliveries(now, 10).await.unwrap().remove(0);
    s.reschedule(d.id, now + chrono::Duration::seconds(60), 1, 0, "http 500")
        .await
        .unwrap();
    assert!(s.due_deliveries(now, 10).await.unwrap().is_empty());
    let later = now + chrono::Duration::seconds(61);
    let d = s.due_deliveries(later, 10).await.unwrap().remove(0);
    assert_eq!(d.attempts, 1);
    s.mark_delivered(d.id, 2, later).await.unwrap();
    assert_eq!(s.delivery_counts().await.unwrap(), (0, 1, 0));
    s.record_matches(&[m(a.id, "alice", 2)], now).await.unwrap();
    let due = s.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    s.dead_letter(due[0].id, 3, "http 400", now).await.unwrap();
    s.disable_webhook(due[1].webhook_id, "http 404: gone", now)
        .await
        .unwrap();
    assert_eq!(s.delivery_counts().await.unwrap(), (0, 1, 2));
    let dead = s.dead_letters("alice").await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(s.dead_letters("bob").await.unwrap().is_empty());
    let hooks = s
        .get_subscription("alice", a.id)
        .await
        .unwrap()
        .unwrap()
        .webhooks;
    let off = hooks.iter().find(|w| w.id == due[1].webhook_id).unwrap();
    assert!(!off.enabled);
    assert_eq!(off.disabled_reason.as_deref(), Some("http 404: gone"));
    // A disabled webhook gets no new deliveries.
    s.record_matches(&[m(a.id, "alice", 3)], now).await.unwrap();
    assert_eq!(s.due_deliveries(now, 10).await.unwrap().len(), 1);

    // History: unread first, then newest; read marks are per owner.
    let list = s.list_notifications("alice", 10).await.unwrap();
    assert_eq!(
        list.iter().map(|n| n.subject_id).collect::<Vec<_>>(),
        vec![3, 2, 1]
    );
    assert!(!s.mark_read("bob", list[2].id, now).await.unwrap());
    assert!(s.mark_read("alice", list[0].id, now).await.unwrap());
    let list = s.list_notifications("alice", 10).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|n| (n.subject_id, n.read))
            .collect::<Vec<_>>(),
        vec![(2, false), (1, false), (3, true)]
    );
    assert_eq!(s.mark_all_read("alice", now).await.unwrap(), 2);
    assert!(
        s.list_notifications("alice", 10)
            .await
            .unwrap()
            .iter()
            .all(|n| n.read)
    );

    // Watchlists.
    let w = s
        .create_watchlist(
            "alice",
            "hostiles",
            &WatchlistSet {
                alliances: vec![1, 2],
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(s.list_watchlists("alice").await.unwrap(), vec![w.clone()]);
    assert!(s.list_watchlists("bob").await.unwrap().is_empty());
    assert!(!s.delete_watchlist("bob", w.id).await.unwrap());
    assert!(s.delete_watchlist("alice", w.id).await.unwrap());

    // Deleting a subscription removes its history and outbox; matches for it record nothing.
    assert!(s.delete_subscription("alice", a.id).await.unwrap());
    assert!(s.list_notifications("alice", 10).await.unwrap().is_empty());
    assert!(
        s.record_matches(&[m(a.id, "alice", 9)], now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.delivery_counts().await.unwrap(), (0, 0, 0));
}

#[tokio::test]
async fn store_suite_sqlite() {
    let dir = bs_testkit::temp_dir();
    suite(sqlite(dir.path()).await).await;
}

#[tokio::test]
async fn store_suite_postgres() {
    let Some(db) = postgres().await else { return };
    suite(db).await;
}
