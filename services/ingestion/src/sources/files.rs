//! Local file import (`battlescope import PATH…`).
//!
//! Accepted: JSONL (`.jsonl`, `.ndjson`, plain, `.gz` or `.zst`) of ESI
//! killmails with or without `zkb`, EVE Ref records, R2Z2 entries or RedisQ
//! packages; single-document `.json` files (an R2Z2 entry file, a RedisQ
//! package) or JSON arrays of documents (zKillboard API responses); EVE Ref
//! tarballs (`.tar.bz2`, `.tar`); and folders of any of these, recursively.
//!
//! A reader thread decompresses and splits documents into chunks of 1000;
//! preparing threads (one per core: parse, validate, ruleset, serialise and
//! compress the event) take the chunks in turn, and the async side stores them,
//! in input order, one transaction each. Parsing was the import's bottleneck
//! once the writes got cheap, so it runs on every core while SQLite writes.
//! Every write is deduplicated, so importing the same file twice adds nothing,
//! and a killed import loses at most the chunk in flight (re-run it).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bs_domain::KillmailSource;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::pipeline::{Pipeline, Prepared};
use crate::store::{Batch, IngestionStore, SqlIngestionStore};

/// Documents per transaction.
pub const CHUNK: usize = 1000;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ImportSummary {
    pub files: u64,
    /// Documents read (lines, archive members, array items).
    pub read: u64,
    pub new: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Empty RedisQ polls and blank documents.
    pub empty: u64,
    pub seconds: f64,
}

impl ImportSummary {
    pub fn killmails_per_second(&self) -> f64 {
        self.read as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files, {} read, {} new, {} duplicate, {} rejected",
            self.files, self.read, self.new, self.duplicate, self.rejected
        )?;
        if !self.rejected_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .rejected_by_reason
                .iter()
                .map(|(r, n)| format!("{r}: {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        write!(
            f,
            " in {:.1} s ({:.0} killmails/s)",
            self.seconds,
            self.killmails_per_second()
        )
    }
}

/// Expands folders into the files an import reads, sorted.
pub fn expand(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect();
            entries.sort();
            for e in entries {
                if e.is_dir() {
                    out.extend(expand(&[e])?);
                } else if is_importable(&e) {
                    out.push(e);
                }
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", p.display()),
            ));
        }
    }
    Ok(out)
}

fn is_importable(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    [
        ".jsonl", ".ndjson", ".json", ".gz", ".zst", ".tar", ".tar.bz2", ".tbz2",
    ]
    .iter()
    .any(|s| name.ends_with(s))
}

/// Counts compressed bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A chunk of prepared documents and how many documents it came from.
struct Chunk {
    prepared: Vec<Prepared>,
}

/// Documents as read, before preparing.
type RawChunk = Vec<Vec<u8>>;

struct Reader<'a> {
    /// One channel per preparing thread; chunk `n` goes to `workers[n % len]`.
    workers: &'a [std::sync::mpsc::SyncSender<RawChunk>],
    sent: usize,
    buf: RawChunk,
}

impl Reader<'_> {
    fn push(&mut self, doc: &[u8]) -> std::io::Result<()> {
        if doc.trim_ascii().is_empty() {
            return Ok(());
        }
        self.buf.push(doc.to_vec());
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let worker = &self.workers[self.sent % self.workers.len()];
        self.sent += 1;
        worker
            .send(chunk)
            .map_err(|_| std::io::Error::other("import writer stopped"))
    }

    fn file(&mut self, path: &Path, counter: &Arc<AtomicU64>) -> std::io::Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let raw = Counting {
            inner: std::fs::File::open(path)?,
            counter: Arc::clone(counter),
        };
        if name.ends_with(".tar.bz2") || name.ends_with(".tbz2") || name.ends_with(".tar") {
            let bz2 = !name.ends_with(".tar");
            return bs_zkb::everef::for_each_json::<_, std::io::Error>(raw, bz2, |_, body| {
                self.push(&body)
            });
        }
        let (reader, stem): (Box<dyn Read>, &str) = if let Some(stem) = name.strip_suffix(".gz") {
            (Box::new(flate2::read::MultiGzDecoder::new(raw)), stem)
        } else if let Some(stem) = name.strip_suffix(".zst") {
            (Box::new(zstd::stream::read::Decoder::new(raw)?), stem)
        } else {
            (Box::new(raw), name.as_str())
        };
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        if stem.ends_with(".json") {
            // One document, or an array of documents.
            let mut all = Vec::new();
            reader.read_to_end(&mut all)?;
            if all.trim_ascii_start().first() == Some(&b'[') {
                match serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(&all) {
                    Ok(items) => {
                        for item in items {
                            self.push(item.get().as_bytes())?;
                        }
                        return Ok(());
                    }
                    // Not an array of objects: let the parser reject it with a reason.
                    Err(_) => return self.push(&all),
                }
            }
            return self.push(&all);
        }
        // JSONL: one document per line.
        let mut line = Vec::with_capacity(8192);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            self.push(&line)?;
        }
    }
}

/// Imports `paths` into `store`. `bar` shows progress (bytes of input read).
pub async fn import_into(
    store: &SqlIngestionStore,
    pipeline: Arc<Pipeline>,
    files: Vec<PathBuf>,
    now: DateTime<Utc>,
    bar: Option<indicatif::ProgressBar>,
    mut resolve: impl AsyncFnMut(Vec<Prepared>) -> Vec<Prepared>,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if let Some(b) = &bar {
        b.set_length(total);
    }
    // Reader → preparing threads (round robin) → writer, which takes their outputs in
    // the same round robin, so chunks are stored in input order.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
    let mut to_workers = Vec::with_capacity(threads);
    let mut from_workers = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    // One chunk queued on each side of a preparing thread: enough to keep the writer fed
    // (it takes chunks in turn from every thread), while every chunk in flight is ~1000
    // killmails held three times (raw line, parsed, compressed body). With two
    // queued per side, the import's in-flight chunks were ~70 MB of the week's peak heap.
    for _ in 0..threads {
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<RawChunk>(1);
        let (tx, rx) = mpsc::channel::<Chunk>(1);
        to_workers.push(raw_tx);
        from_workers.push(rx);
        let pipeline = Arc::clone(&pipeline);
        workers.push(tokio::task::spawn_blocking(move || {
            for raw in raw_rx {
                let prepared = raw
                    .iter()
                    .map(|doc| pipeline.prepare(doc, KillmailSource::File, now))
                    .collect();
                if tx.blocking_send(Chunk { prepared }).is_err() {
                    return;
                }
            }
        }));
    }
    let reader_counter = Arc::clone(&counter);
    let reader_files = files.clone();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut r = Reader {
            workers: &to_workers,
            sent: 0,
            buf: Vec::with_capacity(CHUNK),
        };
        for f in &reader_files {
            r.file(f, &reader_counter)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        }
        r.flush()
    });
    // PostgreSQL takes several writers at once (the primary key still decides every
    // duplicate); SQLite has one writer, so more would only queue on its lock.
    let parallel = match store.database().backend() {
        bs_store::Backend::Postgres => 3,
        bs_store::Backend::Sqlite => 1,
    };
    let mut inflight: tokio::task::JoinSet<bs_store::StoreResult<crate::store::BatchOutcome>> =
        tokio::task::JoinSet::new();
    let mut summary = ImportSummary {
        files: files.len() as u64,
        ..ImportSummary::default()
    };
    let mut next = 0;
    while let Some(chunk) = from_workers[next % threads].recv().await {
        next += 1;
        summary.read += chunk.prepared.len() as u64;
        let mut prepared = chunk.prepared;
        if prepared
            .iter()
            .any(|p| matches!(p, Prepared::Reference { .. }))
        {
            prepared = resolve(prepared).await;
        }
        let mut batch = Batch::default();
        for p in prepared {
            match p {
                Prepared::Accept(k) => batch.killmails.push(*k),
                Prepared::Reject(r) => {
                    summary.rejected += 1;
                    *summary
                        .rejected_by_reason
                        .entry(r.reason.clone())
                        .or_default() += 1;
                    batch.rejects.push(r);
                }
                Prepared::Reference { .. } | Prepared::Empty => summary.empty += 1,
            }
        }
        if inflight.len() >= parallel
            && let Some(done) = inflight.join_next().await
        {
            tally(&mut summary, done??);
        }
        let store = store.clone();
        inflight.spawn(async move { store.apply(batch, now).await });
        if let Some(b) = &bar {
            b.set_position(counter.load(Ordering::Relaxed));
            b.set_message(format!(
                "{} read, {} new, {:.0}/s",
                summary.read,
                summary.new,
                summary.read as f64 / started.elapsed().as_secs_f64().max(0.001)
            ));
        }
    }
    while let Some(done) = inflight.join_next().await {
        tally(&mut summary, done??);
    }
    reader.await??;
    for w in workers {
        w.await?;
    }
    if let Some(b) = &bar {
        b.finish_with_message(format!("{} read, {} new", summary.read, summary.new));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn tally(summary: &mut ImportSummary, outcome: crate::store::BatchOutcome) {
    summary.new += outcome.inserted.len() as u64;
    summary.duplicate += outcome.duplicates;
    if outcome.conflicts > 0 {
        summary.rejected += outcome.conflicts;
        *summary
            .rejected_by_reason
            .entry("hash_conflict".into())
            .or_default() += outcome.conflicts;
    }
}

/// A terminal progress bar over input bytes.
pub fn progress_bar(hidden: bool) -> indicatif::ProgressBar {
    if hidden {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}
