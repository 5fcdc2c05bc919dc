//! Shared fixtures: real fights converted into `killmail.enriched` by the enrichment
//! service's pure function (bundled SDE and prices, no names), clocks, test accounts, databases.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bs_domain::{Killmail, KillmailSource};
use bs_enrichment::domain::{Catalog, Input, enrich};
use bs_events::KillmailEnriched;
use bs_notification::{Access, Accounts};
use bs_runtime::Clock;
use bs_sde::{MarketPrices, StaticData};
use bs_store::{Database, StoreTarget};
use chrono::{DateTime, Utc};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// `data/killmails/fight-<name>-….jsonl.gz`.
pub fn fixture(name: &str) -> PathBuf {
    let dir = repo("data/killmails");
    std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("fight-{name}-"))
        })
        .unwrap()
}

/// ESI killmails of a gzipped JSONL file, converted as the enrichment service would.
pub fn enriched(path: &Path) -> Vec<KillmailEnriched> {
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    let names: HashMap<i64, Option<String>> = HashMap::new();
    let extra_types = HashMap::new();
    let extra_systems = HashMap::new();
    let catalog = Catalog {
        sde: StaticData::bundled(),
        extra_types: &extra_types,
        extra_systems: &extra_systems,
        names: &names,
        prices: MarketPrices::bundled(),
    };
    reader
        .lines()
        .map(Result::unwrap)
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            let hash = v["killmail_hash"].as_str().unwrap_or("0000").to_owned();
            let km: Killmail = serde_json::from_value(v).ok()?;
            Some(
                enrich(
                    Input {
                        killmail: &km,
                        hash: &hash,
                        zkb: None,
                        source: KillmailSource::Everef,
                    },
                    &catalog,
                )
                .event,
            )
        })
        .collect()
}

pub fn fight(name: &str) -> Vec<KillmailEnriched> {
    enriched(&fixture(name))
}

/// Real time shifted back so that "now" is `at` when the clock is made: the fights of 2021
/// are fresh, and time still moves (the webhook sender schedules retries on it).
pub struct ShiftedClock(chrono::Duration);

impl ShiftedClock {
    pub fn at(at: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self(Utc::now() - at))
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() - self.0
    }
}

/// `Cookie: session=<account>` is that account; `session=norole` has no notifications role.
pub struct TestAccounts;

#[async_trait]
impl Accounts for TestAccounts {
    async fn resolve(&self, cookie: Option<&str>) -> Result<Access, String> {
        let Some(c) = cookie.and_then(|c| c.strip_prefix("session=")) else {
            return Ok(Access::Unauthenticated);
        };
        Ok(if c == "norole" {
            Access::Denied("no_role".into())
        } else {
            Access::Allowed(c.to_owned())
        })
    }
}

pub async fn sqlite(dir: &Path) -> Database {
    let db = Database::open(&StoreTarget::Sqlite(dir.join("notification.db")), 4)
        .await
        .unwrap();
    db.migrate(bs_notification::MIGRATIONS).await.unwrap();
    db
}

/// A fresh, migrated PostgreSQL database, or `None` (skipped locally) without a server.
pub async fn postgres() -> Option<Database> {
    let url = bs_testkit::engine(bs_testkit::POSTGRES)?;
    let target = StoreTarget::Postgres {
        server_url: url,
        database: bs_testkit::unique_name("bs_notification_test"),
    };
    let db = Database::open(&target, 4).await.unwrap();
    db.migrate(bs_notification::MIGRATIONS).await.unwrap();
    Some(db)
}

/// Fails the test instead of hanging forever.
pub async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), f)
        .await
        .expect("timed out")
}

/// Polls `cond` every 20 ms until it holds (bounded by [`guard`] at the call site).
pub async fn eventually<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    guard(async {
        while !cond().await {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
