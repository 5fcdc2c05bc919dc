//! `battlescope bench --soak DURATION`: the live path under a steady load, watched for leaks.
//!
//! A local R2Z2 fake ([`bs_zkb::fake::FakeZkb`]) serves the dataset as `ephemeral/{n}.json`
//! with a head that moves at a fixed rate (`--soak-rate`, killmails per second; the live
//! poller is capped at 19 requests/s, R2Z2's limit, so the rate must stay below that). The
//! services run in this process as in `bench` (embedded bus, in-process cache, the chosen
//! store), but with the R2Z2 poller on: ingestion follows the fake exactly as it follows
//! zKillboard. When the dataset is shorter than the soak, it is served again as new
//! killmails (ids and kill times shifted per lap), so every stage keeps working.
//!
//! Every `--soak-interval` the soak samples this process's RSS, the feed lag (the fake's
//! head minus ingestion's cursor), the outbox backlogs (ingestion and enrichment `/status`)
//! and the bus lag of every consumer group (records published to a topic minus records the
//! group committed, from the bus's own counters in this process's metrics registry), prints
//! them, and at the end judges the second half of the run ([`judge`]): it fails (non-zero
//! exit) when RSS keeps growing (a linear fit rising by more than the allowance) or a lag
//! keeps rising. The first half is warm-up: caches filling, SQLite growing its page cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceClient, ServiceHandle};
use bs_zkb::fake::{FakeKillmail, FakeZkb, FakeZkbOptions};
use serde_json::{Value, json};

/// RSS growth over the judged half that counts as unbounded: this much, or this share of
/// the mean RSS, whichever is larger (allocator and page-cache noise stays below it).
const RSS_ALLOWANCE_BYTES: f64 = 24.0 * 1024.0 * 1024.0;
const RSS_ALLOWANCE_SHARE: f64 = 0.10;
/// A fit explains at least this much of the variance before it counts as a trend.
const MIN_R2: f64 = 0.6;
/// A lag "keeps rising" when its fit over the judged half rises by more than this many
/// seconds of feed (rate × seconds), and at least this many records.
const LAG_ALLOWANCE_SECONDS: f64 = 3.0;
const LAG_ALLOWANCE_MIN: f64 = 20.0;

/// What the soak was asked to do.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    pub duration: Duration,
    pub rate: f64,
    pub interval: Duration,
}

/// Parses `30s`, `10m`, `1h 30m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        anyhow::ensure!(secs > 0.0 && secs.is_finite(), "duration must be positive");
        return Ok(Duration::from_secs_f64(secs));
    }
    let d = humantime::parse_duration(t).with_context(|| format!("duration `{s}`"))?;
    anyhow::ensure!(!d.is_zero(), "duration must be positive");
    Ok(d)
}

/// One sample of the soak.
#[derive(Clone, Debug, Default)]
struct Sample {
    t: f64,
    rss: u64,
    /// RSS split: anonymous (heap) and file-backed (mmapped index/database files).
    rss_anon: u64,
    rss_file: u64,
    served: i64,
    /// Ingested, enriched, in battle service, indexed.
    counts: [u64; 4],
    feed_lag: i64,
    outbox: BTreeMap<&'static str, i64>,
    /// Consumer group → records published to its topics and not yet committed by it.
    bus_lag: BTreeMap<String, i64>,
}

impl Sample {
    fn json(&self) -> Value {
        json!({
            "t": self.t,
            "rss_bytes": self.rss,
            "rss_anon_bytes": self.rss_anon,
            "rss_file_bytes": self.rss_file,
            "served": self.served,
            "ingested": self.counts[0],
            "enriched": self.counts[1],
            "in_battle": self.counts[2],
            "indexed": self.counts[3],
            "feed_lag": self.feed_lag,
            "outbox": self.outbox,
            "bus_lag": self.bus_lag,
        })
    }

    fn line(&self) -> String {
        let groups: Vec<String> = self
            .bus_lag
            .iter()
            .map(|(g, l)| format!("{g} {l}"))
            .collect();
        let outbox: Vec<String> = self
            .outbox
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        format!(
            "{:>6.1}s  rss {:>6.1} MB (heap {:>6.1}, files {:>5.1})  served {:>6}  ingested {:>6}  enriched {:>6}  indexed {:>6}  feed lag {:>4}  outbox [{}]  bus lag [{}]",
            self.t,
            self.rss as f64 / 1048576.0,
            self.rss_anon as f64 / 1048576.0,
            self.rss_file as f64 / 1048576.0,
            self.served,
            self.counts[0],
            self.counts[1],
            self.counts[3],
            self.feed_lag,
            outbox.join(", "),
            groups.join(", "),
        )
    }
}

/// Least-squares line through `(x, y)`: (slope, intercept, r²). `None` below three points.
pub(crate) fn fit(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy <= 0.0 {
        0.0
    } else {
        (sxy * sxy) / (sxx * syy)
    };
    Some((slope, my - slope * mx, r2))
}

/// The verdict on one series over the judged half.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Trend {
    /// Growth the fit predicts across the judged window (units of the series).
    pub rise: f64,
    pub per_minute: f64,
    pub r2: f64,
    pub allowance: f64,
    pub failed: bool,
}

impl Trend {
    fn json(&self) -> Value {
        json!({
            "rise": self.rise, "per_minute": self.per_minute, "r2": self.r2,
            "allowance": self.allowance, "rising": self.failed,
        })
    }
}

/// Judges the second half of a series: failed when the fitted line rises by more than
/// `allowance` across it and explains the data (r² ≥ [`MIN_R2`]), i.e. a steady climb,
/// not a bump.
pub(crate) fn trend(points: &[(f64, f64)], allowance: f64) -> Trend {
    let half = &points[points.len() / 2..];
    let Some((slope, _, r2)) = fit(half) else {
        return Trend {
            rise: 0.0,
            per_minute: 0.0,
            r2: 0.0,
            allowance,
            failed: false,
        };
    };
    let span = half.last().map_or(0.0, |p| p.0) - half.first().map_or(0.0, |p| p.0);
    let rise = slope * span;
    Trend {
        rise,
        per_minute: slope * 60.0,
        r2,
        allowance,
        failed: rise > allowance && r2 >= MIN_R2,
    }
}

/// The memory verdict and one lag verdict per series.
pub(crate) fn judge(
    rss: &[(f64, f64)],
    lags: &BTreeMap<String, Vec<(f64, f64)>>,
    rate: f64,
) -> (Trend, BTreeMap<String, Trend>) {
    let mean = if rss.is_empty() {
        0.0
    } else {
        rss.iter().map(|p| p.1).sum::<f64>() / rss.len() as f64
    };
    let memory = trend(rss, RSS_ALLOWANCE_BYTES.max(RSS_ALLOWANCE_SHARE * mean));
    let lag_allowance = (rate * LAG_ALLOWANCE_SECONDS).max(LAG_ALLOWANCE_MIN);
    let lags = lags
        .iter()
        .map(|(k, v)| (k.clone(), trend(v, lag_allowance)))
        .collect();
    (memory, lags)
}

/// The bus counters of this process's metrics: (topic → published), ((topic, group) → committed).
type BusCounters = (BTreeMap<String, i64>, BTreeMap<(String, String), i64>);

/// Reads `battlescope_bus_{published,committed}_total` out of the Prometheus exposition.
fn bus_counters(text: &str) -> BusCounters {
    let mut published = BTreeMap::new();
    let mut committed = BTreeMap::new();
    for line in text.lines() {
        let (name, rest) = match line.split_once('{') {
            Some(x) => x,
            None => continue,
        };
        if name != "battlescope_bus_published_total" && name != "battlescope_bus_committed_total" {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |k: &str| {
            labels.split(',').find_map(|kv| {
                let (key, v) = kv.split_once('=')?;
                (key.trim() == k).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let Some(topic) = label("topic") else {
            continue;
        };
        if name == "battlescope_bus_published_total" {
            *published.entry(topic).or_insert(0) += value as i64;
        } else if let Some(group) = label("group") {
            *committed.entry((topic, group)).or_insert(0) += value as i64;
        }
    }
    (published, committed)
}

/// Consumer group → uncommitted records over the topics it has committed on.
fn bus_lags(text: &str) -> BTreeMap<String, i64> {
    let (published, committed) = bus_counters(text);
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    for ((topic, group), c) in committed {
        let p = published.get(&topic).copied().unwrap_or(0);
        *out.entry(group).or_insert(0) += (p - c).max(0);
    }
    out
}

/// Reads the killmails the soak serves: `want` of them, the dataset repeated as new
/// killmails when it is shorter (ids + lap × 10¹⁰, kill times + lap × the dataset's span
/// rounded up to whole days plus one, so laps never cluster into one battle).
fn timeline(files: &[PathBuf], want: usize) -> anyhow::Result<Vec<FakeKillmail>> {
    let mut base: Vec<FakeKillmail> = Vec::new();
    super::read_all(files, |_, raw| {
        if let Some(k) = fake_killmail(&raw) {
            base.push(k);
        }
        base.len() < want
    })?;
    anyhow::ensure!(!base.is_empty(), "the dataset has no usable killmails");
    base.sort_by_key(|k| k.killmail_time);
    let first = base.first().map(|k| k.killmail_time).unwrap_or_default();
    let last = base.last().map(|k| k.killmail_time).unwrap_or_default();
    let shift_days = (last - first).num_days() + 2;
    let mut out = Vec::with_capacity(want);
    for lap in 0.. {
        for k in &base {
            if out.len() >= want {
                return Ok(out);
            }
            if lap == 0 {
                out.push(k.clone());
                continue;
            }
            let mut k = k.clone();
            k.killmail_id += lap * 10_000_000_000;
            k.killmail_time += chrono::TimeDelta::days(lap * shift_days);
            k.esi["killmail_id"] = json!(k.killmail_id);
            k.esi["killmail_time"] = json!(
                k.killmail_time
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            out.push(k);
        }
    }
    Ok(out)
}

/// An EVE Ref record (ESI body + `killmail_hash`) or an R2Z2 entry (`esi` + `hash`).
fn fake_killmail(raw: &[u8]) -> Option<FakeKillmail> {
    let v: Value = serde_json::from_slice(raw).ok()?;
    let (mut esi, hash) = match v.get("esi") {
        Some(esi) => (esi.clone(), v.get("hash")?.as_str()?.to_owned()),
        None => {
            let hash = v.get("killmail_hash")?.as_str()?.to_owned();
            (v, hash)
        }
    };
    let obj = esi.as_object_mut()?;
    obj.remove("killmail_hash");
    obj.remove("http_last_modified");
    let killmail_id = obj.get("killmail_id")?.as_i64()?;
    let killmail_time = obj
        .get("killmail_time")?
        .as_str()?
        .parse::<chrono::DateTime<chrono::Utc>>()
        .ok()?;
    Some(FakeKillmail {
        killmail_id,
        hash,
        killmail_time,
        esi,
        // Only EVE Ref archives need the record; the soak serves R2Z2 alone.
        record: Vec::new(),
    })
}

/// What the soak returns: the JSON report and whether it passed.
pub struct SoakRun {
    pub report: Value,
    pub passed: bool,
}

/// Runs the soak; samples go to stderr as they come unless `quiet` (JSON mode).
pub async fn run(
    mut config: Config,
    files: Vec<PathBuf>,
    root: &Path,
    opts: &SoakOptions,
    pg: Option<(&str, &str)>,
    quiet: bool,
) -> anyhow::Result<SoakRun> {
    anyhow::ensure!(
        opts.rate > 0.0 && opts.rate < 19.0,
        "--soak-rate must be above 0 and below 19 killmails/s (the live poller's R2Z2 request cap)"
    );
    bs_telemetry::install_metrics();
    let rss_before_fake = super::proc_status_bytes("VmRSS");
    // Enough for the whole soak at the rate, plus a margin so the head never runs dry.
    let want = (opts.rate * opts.duration.as_secs_f64() * 1.1).ceil() as usize + 50;
    let killmails = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || timeline(&files, want))
            .await
            .context("reading the dataset")??
    };
    let served_total = killmails.len();
    let fake = FakeZkb::start_with(
        FakeZkbOptions {
            initially_published: 0,
            advance_every: Some(Duration::from_secs_f64(1.0 / opts.rate)),
            sequence_lag: 0,
            // The poller paces itself; the fake's limiter would only add noise.
            rate_limit: 10_000,
            ..FakeZkbOptions::default()
        },
        killmails,
    )
    .await
    .context("starting the local R2Z2 fake")?;
    let fake_rss = super::proc_status_bytes("VmRSS").saturating_sub(rss_before_fake);

    config.data_dir = root.join("soak");
    config.ingestion.live = true;
    config.ingestion.r2z2_url = fake.url().to_owned();
    config.ingestion.zkb_url = fake.url().to_owned();
    config.ingestion.everef_url = fake.url().to_owned();
    config.ingestion.redisq_url.clear();
    config.ingestion.r2z2_requests_per_second = 19;
    config.ingestion.r2z2_head_wait = "100ms".into();
    config.ingestion.r2z2_backoff = "1s".into();
    config.enrichment.refresh_prices = false;
    // Not offline (the live poller needs that), but nothing leaves this machine: ESI is a
    // closed loopback port, so names stay pending exactly as during an ESI outage.
    config.esi.url = format!("http://127.0.0.1:{}", closed_port());
    config.bus.kind = bs_config::BusKind::Embedded;
    config.cache.kind = bs_config::CacheKind::Memory;
    match pg {
        Some((url, prefix)) => {
            config.store.url = url.to_owned();
            config.store.database_prefix = format!("{prefix}_soak_");
        }
        None => config.store.url.clear(),
    }
    let ctx = crate::topology::context(config, false).await?;
    let mut handles: Vec<ServiceHandle> = Vec::new();
    for name in [
        ServiceName::Ingestion,
        ServiceName::Enrichment,
        ServiceName::Battle,
        ServiceName::Search,
        ServiceName::Notification,
    ] {
        let handle = crate::services::start(name, &ctx)
            .await
            .with_context(|| format!("starting {name}"))?;
        ctx.services
            .register(ServiceClient::in_process(name, handle.router.clone()));
        handles.push(handle);
    }
    let clients = super::stages::Clients {
        ingestion: ctx.services.get(ServiceName::Ingestion)?,
        enrichment: ctx.services.get(ServiceName::Enrichment)?,
        battle: ctx.services.get(ServiceName::Battle)?,
        search: ctx.services.get(ServiceName::Search)?,
        typesense: None,
    };

    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval(opts.interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = started.elapsed();
        let counts = clients.sample(t).await.counts;
        let (ingestion, enrichment) = tokio::join!(
            clients.ingestion.get_json::<Value>("/status"),
            clients.enrichment.get_json::<Value>("/status"),
        );
        let ingestion = ingestion.unwrap_or(Value::Null);
        let enrichment = enrichment.unwrap_or(Value::Null);
        let head = fake.head();
        let cursor = ingestion
            .pointer("/live/cursor")
            .and_then(Value::as_i64)
            .unwrap_or_else(|| fake.first_sequence());
        let mut outbox = BTreeMap::new();
        outbox.insert(
            "ingestion",
            ingestion["outbox_pending"].as_i64().unwrap_or(0),
        );
        outbox.insert(
            "enrichment",
            enrichment["outbox_pending"].as_i64().unwrap_or(0),
        );
        let s = Sample {
            t: t.as_secs_f64(),
            rss: super::proc_status_bytes("VmRSS"),
            rss_anon: super::proc_status_bytes("RssAnon"),
            rss_file: super::proc_status_bytes("RssFile"),
            served: head - fake.first_sequence(),
            counts,
            feed_lag: (head - cursor).max(0),
            outbox,
            bus_lag: bus_lags(&bs_telemetry::render_metrics()),
        };
        if !quiet {
            eprintln!("{}", s.line());
        }
        samples.push(s);
        if t >= opts.duration {
            break;
        }
    }

    ctx.shutdown.cancel();
    let tasks: Vec<_> = handles.into_iter().flat_map(|h| h.tasks).collect();
    let _ = tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(tasks)).await;
    drop(fake);

    let rss: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.rss as f64)).collect();
    let mut lags: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in &samples {
        lags.entry("feed".into())
            .or_default()
            .push((s.t, s.feed_lag as f64));
        for (k, v) in &s.outbox {
            lags.entry(format!("outbox:{k}"))
                .or_default()
                .push((s.t, *v as f64));
        }
        for (g, v) in &s.bus_lag {
            lags.entry(format!("bus:{g}"))
                .or_default()
                .push((s.t, *v as f64));
        }
    }
    let (memory, lag_trends) = judge(&rss, &lags, opts.rate);
    let mut reasons = Vec::new();
    if memory.failed {
        reasons.push(format!(
            "RSS keeps growing: +{:.1} MB over the second half ({:.1} MB/min, r² {:.2}; allowed {:.1} MB)",
            memory.rise / 1048576.0,
            memory.per_minute / 1048576.0,
            memory.r2,
            memory.allowance / 1048576.0
        ));
    }
    for (name, t) in &lag_trends {
        if t.failed {
            reasons.push(format!(
                "{name} lag keeps rising: +{:.0} over the second half ({:.0}/min, r² {:.2}; allowed {:.0})",
                t.rise, t.per_minute, t.r2, t.allowance
            ));
        }
    }
    let last = samples.last().cloned().unwrap_or_default();
    let peak = samples.iter().map(|s| s.rss).max().unwrap_or(0);
    let lag_json: serde_json::Map<String, Value> = lag_trends
        .iter()
        .map(|(k, t)| {
            let series = &lags[k];
            let max = series.iter().map(|p| p.1).fold(0.0, f64::max);
            let mut j = t.json();
            j["max"] = json!(max);
            j["last"] = json!(series.last().map_or(0.0, |p| p.1));
            (k.clone(), j)
        })
        .collect();
    let passed = reasons.is_empty();
    let elapsed = last.t.max(1e-9);
    let report = json!({
        "duration_seconds": opts.duration.as_secs_f64(),
        "elapsed_seconds": last.t,
        "rate": opts.rate,
        "interval_seconds": opts.interval.as_secs_f64(),
        "timeline_killmails": served_total,
        "served": last.served,
        "ingested": last.counts[0],
        "enriched": last.counts[1],
        "in_battle": last.counts[2],
        "indexed": last.counts[3],
        "ingested_per_second": last.counts[0] as f64 / elapsed,
        "rss": {
            "first_bytes": samples.first().map_or(0, |s| s.rss),
            "last_bytes": last.rss,
            "peak_bytes": peak,
            "fake_feed_bytes": fake_rss,
            "trend": memory.json(),
        },
        "lags": lag_json,
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
        "passed": passed,
        "reasons": reasons,
    });
    Ok(SoakRun { report, passed })
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(9, |a| a.port())
}

/// The human summary of a soak report.
pub fn table(r: &Value) -> String {
    use std::fmt::Write as _;
    let mb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1048576.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak · {:.0}s at {} killmails/s · served {} · ingested {} · enriched {} · indexed {}",
        r["elapsed_seconds"].as_f64().unwrap_or(0.0),
        r["rate"],
        r["served"],
        r["ingested"],
        r["enriched"],
        r["indexed"],
    );
    let t = &r["rss"]["trend"];
    let _ = writeln!(
        out,
        "RSS {:.0} → {:.0} MB (peak {:.0}; the fake feed holds {:.0}) · second half {:+.1} MB ({:+.1} MB/min, r² {:.2}, allowed {:.0} MB)",
        mb(&r["rss"]["first_bytes"]),
        mb(&r["rss"]["last_bytes"]),
        mb(&r["rss"]["peak_bytes"]),
        mb(&r["rss"]["fake_feed_bytes"]),
        mb(&t["rise"]),
        mb(&t["per_minute"]),
        t["r2"].as_f64().unwrap_or(0.0),
        mb(&t["allowance"]),
    );
    if let Some(lags) = r["lags"].as_object() {
        for (name, l) in lags {
            let _ = writeln!(
                out,
                "{name:<28} max {:>7.0}  last {:>7.0}  second half {:+7.0} (r² {:.2}){}",
                l["max"].as_f64().unwrap_or(0.0),
                l["last"].as_f64().unwrap_or(0.0),
                l["rise"].as_f64().unwrap_or(0.0),
                l["r2"].as_f64().unwrap_or(0.0),
                if l["rising"] == true { "  RISING" } else { "" },
            );
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if r["passed"] == true {
            "soak passed: memory and lags bounded".to_owned()
        } else {
            format!("soak FAILED: {}", r["reasons"])
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..40).map(|i| (i as f64, f(i as f64))).collect()
    }

    #[test]
    fn a_steady_climb_fails_and_a_plateau_passes() {
        let mb = 1048576.0;
        let leak = series(|t| 200.0 * mb + t * 2.0 * mb);
        assert!(trend(&leak, 24.0 * mb).failed);
        let plateau = series(|t| 200.0 * mb + (t.min(15.0)) * 3.0 * mb + (t * 7.0).sin() * mb);
        assert!(!trend(&plateau, 24.0 * mb).failed);
        // A saw-tooth (a cache filled and evicted) is not a trend.
        let saw = series(|t| 200.0 * mb + (t % 5.0) * 8.0 * mb);
        assert!(!trend(&saw, 24.0 * mb).failed);
    }

    #[test]
    fn lags_are_judged_against_seconds_of_feed() {
        let mut lags = BTreeMap::new();
        lags.insert("bus:battle".to_owned(), series(|t| t * 10.0));
        lags.insert("feed".to_owned(), series(|t| (t * 3.0) % 7.0));
        let (_, t) = judge(&series(|_| 1.0), &lags, 15.0);
        assert!(t["bus:battle"].failed);
        assert!(!t["feed"].failed);
    }

    #[test]
    fn bus_lag_is_published_minus_committed_per_group() {
        let text = "\
# TYPE battlescope_bus_published_total counter
battlescope_bus_published_total{bus=\"embedded\",topic=\"killmail.enriched\"} 100
battlescope_bus_published_total{bus=\"embedded\",topic=\"battle.updated\"} 7
battlescope_bus_committed_total{bus=\"embedded\",topic=\"killmail.enriched\",group=\"battle\"} 90
battlescope_bus_committed_total{bus=\"embedded\",topic=\"killmail.enriched\",group=\"search\"} 100
battlescope_bus_committed_total{bus=\"embedded\",topic=\"battle.updated\",group=\"search\"} 5
";
        let lags = bus_lags(text);
        assert_eq!(lags["battle"], 10);
        assert_eq!(lags["search"], 2);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("0s").is_err() && parse_duration("soon").is_err());
    }

    #[test]
    fn laps_are_new_killmails_days_apart() {
        let dir = std::env::temp_dir().join(format!("bs-soak-{}", std::process::id()));
        let files = crate::sample::materialise(&dir).unwrap();
        // One fight of 268 killmails, served 1,000 times over: four laps.
        let one = timeline(&files[2..3], 1_000).unwrap();
        assert_eq!(one.len(), 1_000);
        let ids: std::collections::HashSet<i64> = one.iter().map(|k| k.killmail_id).collect();
        assert_eq!(ids.len(), 1_000, "every served killmail is new");
        let lap1 = one.iter().find(|k| k.killmail_id > 10_000_000_000).unwrap();
        assert_eq!(lap1.esi["killmail_id"].as_i64(), Some(lap1.killmail_id));
        assert!(lap1.killmail_time > one[0].killmail_time + chrono::TimeDelta::days(1));
        let _ = std::fs::remove_dir_all(dir);
    }
}
