//! Measures the hot paths on an embedded SQLite database and prints numbers (no
//! assertions): session validation, `/authorize` decisions, session creation (dev
//! login) and audit appends. Run: `cargo run -p bs-authentication --example bench`
//! (add `--release` for production-like numbers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bs_authentication::service::RequestMeta;
use bs_authentication::{Deps, Settings, SqlAuthStore, StaticAffiliations};
use bs_store::{Database, StoreTarget};

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    format!(
        "p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = Database::open(&StoreTarget::Sqlite(dir.path().join("auth.db")), 4).await?;
    db.migrate(&[bs_authentication::MIGRATIONS]).await?;
    let mut config = bs_config::Config::default();
    config.auth.dev_login = true;
    let settings = Settings::from_config(&config)?;
    let affiliations = Arc::new(StaticAffiliations::new());
    let service = bs_authentication::build(Deps {
        store: Arc::new(SqlAuthStore::new(db)),
        sso: None,
        settings,
        clock: Arc::new(bs_runtime::SystemClock),
        cache: Arc::new(bs_cache::MemoryCache::new(10_000)),
        affiliations: affiliations.clone(),
    })
    .await?;
    let meta = RequestMeta {
        ip: "127.0.0.1".into(),
        user_agent: "bench".into(),
    };

    let n = 500;
    let mut sessions = Vec::new();
    let started = Instant::now();
    let mut login_samples = Vec::new();
    for i in 0..n {
        affiliations.set(2_000_000_000 + i, 98_000_000, Some(99_000_000));
        let t = Instant::now();
        sessions.push(
            service
                .dev_login(2_000_000_000 + i, "Bench Pilot", &meta)
                .await?,
        );
        login_samples.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    println!(
        "dev logins (account + character + roles + session + 2 audit entries): {n} in {elapsed:?} ({:.0}/s); {}",
        n as f64 / elapsed.as_secs_f64(),
        percentiles(login_samples)
    );

    let mut auth_samples = Vec::new();
    for round in 0..4 {
        for s in &sessions {
            let t = Instant::now();
            let a = service.authenticate(s.session_id.expose()).await?;
            if round == 0 && a.account.id != s.account_id {
                anyhow::bail!("wrong account");
            }
            auth_samples.push(t.elapsed());
        }
    }
    println!(
        "session validation ({} calls): {}",
        auth_samples.len(),
        percentiles(auth_samples)
    );

    let mut authz_samples = Vec::new();
    for s in sessions.iter().cycle().take(2000) {
        let t = Instant::now();
        let d = service
            .authorize_account(&s.account_id, "battle-reports", "view")
            .await?;
        if !d.allow {
            anyhow::bail!("denied");
        }
        authz_samples.push(t.elapsed());
    }
    println!(
        "authorize by account (2000 calls): {}",
        percentiles(authz_samples)
    );

    let started = Instant::now();
    for i in 0..1000 {
        service
            .audit(
                None,
                "bench.event",
                ("bench", &i.to_string()),
                &meta,
                serde_json::json!({"i": i}),
            )
            .await?;
    }
    let elapsed = started.elapsed();
    println!(
        "audit appends (hash-chained, serialised): 1000 in {elapsed:?} ({:.0}/s)",
        1000.0 / elapsed.as_secs_f64()
    );
    let t = Instant::now();
    let verified = service.store().verify_audit_chain().await?;
    println!(
        "audit chain verification: {verified:?} in {:?}",
        t.elapsed()
    );
    Ok(())
}
