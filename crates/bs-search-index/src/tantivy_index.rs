//! The embedded backend: one tantivy index for all collections.
//!
//! **One index with a `type` field, not one per collection**, because:
//! * one `IndexWriter` (tantivy allows one per index, with its own thread pool and memory budget)
//!   and one commit/reload loop, instead of one per collection competing for two cores;
//! * mixed-type autocomplete is one query on one searcher, with scores that are comparable across
//!   types;
//! * the per-collection schemas are disjoint or agree on shared field names (a unit test in
//!   `docs` checks this), so a union schema costs nothing: absent fields are simply absent.
//!
//! Documents are keyed by `key = "<collection>:<id>"`; upsert is delete-by-key plus add, so
//! replays are idempotent. A committer thread commits and reloads the reader every
//! `commit_interval` when something changed (writes visible within about a second);
//! [`SearchIndex::refresh`] does it immediately. All tantivy calls run on the blocking pool.
//!
//! Per document the index holds: the stored JSON (`doc`), raw `sCompact`/`sAlt` terms (exact
//! name / ticker), whitespace-tokenised `sText` (words) and the edge n-grams of the words
//! (`sTextPrefix`) and of the compact name (`sCompactPrefix`), plus every schema field as a raw
//! string or number, FAST for facets, sorting and range filters.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::{AggContextParams, AggregationCollector};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, Searcher,
    SegmentReader, TantivyDocument, Term,
};

use crate::docs::{Collection, FieldKind, HELPER_FIELDS, IndexedDoc};
use crate::text::{self, NormQuery};
use crate::{
    Candidate, Document, FACET_VALUES, Filter, Hit, MAX_PER_PAGE, Rejection, Result, SearchError,
    SearchIndex, SearchQuery, SearchResults, UpsertReport,
};

const WS: &str = "bs_ws";

/// Configuration of [`TantivyIndex`].
#[derive(Debug, Clone)]
pub struct TantivyConfig {
    /// Index directory (created if missing); `None` = in memory (tests).
    pub dir: Option<PathBuf>,
    /// Writer memory budget in bytes (split across writer threads).
    pub writer_memory: usize,
    /// Writer indexing threads.
    pub writer_threads: usize,
    /// How often pending writes are committed and made visible.
    pub commit_interval: Duration,
}

impl Default for TantivyConfig {
    fn default() -> Self {
        TantivyConfig {
            dir: None,
            // tantivy's own default is 128 MB; 48 MB keeps the all-in-one process small and
            // costs little indexing speed (segments are flushed a little more often).
            writer_memory: 48 << 20,
            writer_threads: 1,
            commit_interval: Duration::from_millis(500),
        }
    }
}

#[derive(Clone)]
struct Fields {
    key: Field,
    kind: Field,
    id: Field,
    doc: Field,
    name_sort: Field,
    compact: Field,
    alt: Field,
    text: Field,
    text_prefix: Field,
    compact_prefix: Field,
    activity: Field,
    /// Schema fields by name (union over collections).
    by_name: HashMap<&'static str, (Field, FieldKind)>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    /// Read lock for add/delete (tantivy takes `&self` there), write lock for commit.
    writer: RwLock<IndexWriter>,
    f: Fields,
    /// Set by every write, cleared by the commit that covers it.
    dirty: AtomicBool,
}

/// The embedded search index. Cheap to clone (shared inner state).
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(WS)
            .set_index_option(IndexRecordOption::Basic),
    );
    let key = b.add_text_field("key", STRING);
    let kind = b.add_text_field("type", STRING | STORED | FAST);
    let id = b.add_text_field("id", STRING | STORED);
    let doc = b.add_text_field("doc", STORED);
    let name_sort = b.add_text_field("sName", STRING | FAST);
    let compact = b.add_text_field("sCompact", STRING);
    let alt = b.add_text_field("sAlt", STRING);
    let text = b.add_text_field("sText", words.clone());
    let text_prefix = b.add_text_field("sTextPrefix", words.clone());
    let compact_prefix = b.add_text_field("sCompactPrefix", words);
    let activity = b.add_i64_field("sActivity", FAST);
    let mut by_name = HashMap::new();
    // A stable creation order: the schema of an index on disk must not change.
    for c in Collection::SCHEMA_ORDER {
        for spec in c.fields() {
            if by_name.contains_key(spec.name) {
                continue;
            }
            let field = match spec.kind {
                FieldKind::Str | FieldKind::Strs => b.add_text_field(spec.name, STRING | FAST),
                FieldKind::I64 => b.add_i64_field(spec.name, INDEXED | FAST),
                FieldKind::F64 => b.add_f64_field(spec.name, INDEXED | FAST),
            };
            by_name.insert(spec.name, (field, spec.kind));
        }
    }
    for h in HELPER_FIELDS {
        let field = match h.name {
            "sName" => name_sort,
            "sCompact" => compact,
            "sAlt" => alt,
            "sText" => text,
            _ => activity,
        };
        by_name.insert(h.name, (field, h.kind));
    }
    let fields = Fields {
        key,
        kind,
        id,
        doc,
        name_sort,
        compact,
        alt,
        text,
        text_prefix,
        compact_prefix,
        activity,
        by_name,
    };
    (b.build(), fields)
}

fn backend_err(e: impl std::fmt::Display) -> SearchError {
    SearchError::Backend(e.to_string())
}

impl TantivyIndex {
    /// Opens (or creates) the index and starts the committer thread.
    pub fn open(cfg: TantivyConfig) -> Result<TantivyIndex> {
        let (schema, f) = build_schema();
        let index = match &cfg.dir {
            None => Index::create_in_ram(schema),
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(backend_err)?;
                let mmap = tantivy::directory::MmapDirectory::open(dir).map_err(backend_err)?;
                Index::open_or_create(mmap, schema).map_err(backend_err)?
            }
        };
        index.tokenizers().register(
            WS,
            TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        );
        let writer = index
            .writer_with_num_threads(cfg.writer_threads.max(1), cfg.writer_memory.max(15 << 20))
            .map_err(backend_err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(backend_err)?;
        let inner = Arc::new(Inner {
            index,
            reader,
            writer: RwLock::new(writer),
            f,
            dirty: AtomicBool::new(false),
        });
        spawn_committer(Arc::downgrade(&inner), cfg.commit_interval);
        Ok(TantivyIndex { inner })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| SearchError::Backend(format!("search task failed: {e}")))?
    }
}

/// Commits pending writes every `interval`; exits when the index is dropped.
fn spawn_committer(inner: Weak<Inner>, interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("bs-search-commit".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(inner) = inner.upgrade() else { return };
                if let Err(e) = inner.commit_if_dirty() {
                    tracing::warn!(error = %e, "tantivy commit failed");
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread writes still become visible through refresh(); log and go on.
        tracing::error!(error = %e, "cannot start tantivy committer thread");
    }
}

impl Inner {
    fn commit_if_dirty(&self) -> Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let res = self.writer.write().commit();
        if let Err(e) = res {
            self.dirty.store(true, Ordering::Release);
            return Err(backend_err(e));
        }
        self.reader.reload().map_err(backend_err)
    }

    fn key_term(&self, c: Collection, id: &str) -> Term {
        Term::from_field_text(self.f.key, &format!("{}:{id}", c.as_str()))
    }

    fn to_tantivy(&self, d: &IndexedDoc) -> TantivyDocument {
        let f = &self.f;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, format!("{}:{}", d.collection.as_str(), d.id));
        doc.add_text(f.kind, d.collection.as_str());
        doc.add_text(f.id, &d.id);
        doc.add_text(f.doc, serde_json::Value::Object(d.to_json()).to_string());
        doc.add_text(f.name_sort, d.name.to_lowercase());
        if !d.compact.is_empty() {
            doc.add_text(f.compact, &d.compact);
        }
        if !d.alt.is_empty() {
            doc.add_text(f.alt, &d.alt);
        }
        doc.add_text(f.text, d.words.join(" "));
        let mut prefixes: Vec<&str> = d.words.iter().flat_map(|w| text::edge_ngrams(w)).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        doc.add_text(f.text_prefix, prefixes.join(" "));
        let cp: Vec<&str> = text::edge_ngrams(&d.compact).collect();
        doc.add_text(f.compact_prefix, cp.join(" "));
        doc.add_i64(f.activity, d.activity);
        for spec in d.collection.fields() {
            let Some((field, _)) = f.by_name.get(spec.name) else {
                continue;
            };
            let Some(v) = d.fields.get(spec.name) else {
                continue;
            };
            match (spec.kind, v) {
                (FieldKind::Str, serde_json::Value::String(s)) => doc.add_text(*field, s),
                (FieldKind::Strs, serde_json::Value::Array(items)) => {
                    for s in items.iter().filter_map(|i| i.as_str()) {
                        doc.add_text(*field, s);
                    }
                }
                (FieldKind::I64, v) => {
                    if let Some(n) = v.as_i64() {
                        doc.add_i64(*field, n);
                    }
                }
                (FieldKind::F64, v) => {
                    if let Some(n) = v.as_f64() {
                        doc.add_f64(*field, n);
                    }
                }
                _ => {}
            }
        }
        doc
    }

    fn type_query(&self, cols: &[Collection]) -> Box<dyn Query> {
        Box::new(TermSetQuery::new(
            cols.iter()
                .map(|c| Term::from_field_text(self.f.kind, c.as_str())),
        ))
    }

    fn filter_query(&self, flt: &Filter) -> Result<Box<dyn Query>> {
        let (field, kind) =
            self.f.by_name.get(flt.field()).copied().ok_or_else(|| {
                SearchError::InvalidQuery(format!("unknown field {:?}", flt.field()))
            })?;
        Ok(match (flt, kind) {
            (Filter::AnyOf { values, .. }, FieldKind::Str | FieldKind::Strs) => Box::new(
                TermSetQuery::new(values.iter().map(|v| Term::from_field_text(field, v))),
            ),
            (Filter::Range { min, max, .. }, FieldKind::I64) => {
                let lo = min.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_i64(field, v.ceil() as i64))
                });
                let hi = max.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_i64(field, v.floor() as i64))
                });
                Box::new(RangeQuery::new(lo, hi))
            }
            (Filter::Range { min, max, .. }, FieldKind::F64) => {
                let lo = min.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_f64(field, v))
                });
                let hi = max.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_f64(field, v))
                });
                Box::new(RangeQuery::new(lo, hi))
            }
            _ => {
                return Err(SearchError::InvalidQuery(format!(
                    "filter kind does not fit field {:?}",
                    flt.field()
                )));
            }
        })
    }

    /// Retrieval query for free text: exact name/ticker, name prefix, or every token as a word,
    /// word prefix or typo. Const scores approximate [`text::match_quality`] so the best
    /// candidates are in the fetched window; the final order is computed from the stored fields.
    ///
    /// `prefix_typos` adds a typo match on the edge n-grams of the last token (a typo in a word
    /// still being typed); it is the most expensive clause, so autocomplete only uses it when
    /// nothing else matched.
    /// `max_typos` caps the per-token typo budget (a distance-2 automaton over a large word
    /// dictionary costs several times a distance-1 one).
    fn text_query(&self, q: &NormQuery, max_typos: u8, prefix_typos: bool) -> Box<dyn Query> {
        let f = &self.f;
        let term = |field: Field, s: &str| Term::from_field_text(field, s);
        let tq =
            |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
        let cs = |q: Box<dyn Query>, s: Score| -> (Occur, Box<dyn Query>) {
            (Occur::Should, Box::new(ConstScoreQuery::new(q, s)))
        };
        let mut clauses = vec![
            cs(tq(term(f.compact, &q.compact)), 100.0),
            cs(tq(term(f.alt, &q.compact)), 90.0),
            cs(
                tq(term(f.compact_prefix, text::prefix_key(&q.compact))),
                70.0,
            ),
        ];
        let n = q.tokens.len() as Score;
        let last = q.tokens.len() - 1;
        let mut per_token: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (i, t) in q.tokens.iter().enumerate() {
            let mut alts = vec![
                cs(tq(term(f.text, t)), 50.0 / n),
                cs(tq(term(f.text_prefix, text::prefix_key(t))), 40.0 / n),
            ];
            let len = t.chars().count();
            let budget = text::typo_budget(len).min(max_typos);
            if budget > 0 {
                alts.push(cs(
                    Box::new(FuzzyTermQuery::new(term(f.text, t), budget, true)),
                    20.0 / n,
                ));
                if prefix_typos && i == last && len >= 5 {
                    // A typo in a word still being typed: match the edge n-grams within one
                    // edit. Much cheaper than a prefix automaton over the word dictionary,
                    // which expands to every word sharing the fuzzy prefix.
                    alts.push(cs(
                        Box::new(FuzzyTermQuery::new(
                            term(f.text_prefix, text::prefix_key(t)),
                            1,
                            true,
                        )),
                        15.0 / n,
                    ));
                }
            }
            per_token.push((Occur::Must, Box::new(BooleanQuery::new(alts))));
        }
        clauses.push((Occur::Should, Box::new(BooleanQuery::new(per_token))));
        Box::new(BooleanQuery::new(clauses))
    }

    fn load(&self, searcher: &Searcher, addr: DocAddress) -> Result<Candidate> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(backend_err)?;
        let get = |field: Field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let kind: Collection = get(self.f.kind).parse().map_err(SearchError::Backend)?;
        let json: serde_json::Value =
            serde_json::from_str(&get(self.f.doc)).map_err(backend_err)?;
        let serde_json::Value::Object(doc_map) = json else {
            return Err(SearchError::Backend(
                "stored document is not an object".into(),
            ));
        };
        Ok(Candidate {
            kind,
            id: get(self.f.id),
            doc: doc_map,
        })
    }

    /// Top `limit` documents by engine score + activity bonus.
    fn top_by_relevance(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        limit: usize,
    ) -> Result<Vec<DocAddress>> {
        let top = TopDocs::with_limit(limit.max(1)).tweak_score(move |seg: &SegmentReader| {
            let col = seg
                .fast_fields()
                .i64("sActivity")
                .ok()
                .map(|c| c.first_or_default_col(0));
            move |doc: DocId, score: Score| {
                let a = col.as_ref().map_or(0, |c| c.get_val(doc));
                score + text::activity_bonus(a)
            }
        });
        let found = searcher.search(query, &top).map_err(backend_err)?;
        Ok(found.into_iter().map(|(_, a)| a).collect())
    }

    /// Autocomplete retrieval runs cheap single-purpose queries tier by tier, best tier first
    /// (exact name/ticker, name prefix, all words exact, the last word as a prefix, all words as
    /// prefixes), each ordered by the `sActivity` fast field, and stops once `limit` distinct
    /// candidates are found: a lower tier can never outrank a full set from a higher one. Only
    /// when nothing matched does it run the combined query with typo tolerance (fuzzy automata
    /// are the expensive part).
    fn autocomplete_sync(&self, q: &str, types: &[Collection], limit: usize) -> Result<Vec<Hit>> {
        let limit = limit.clamp(1, MAX_PER_PAGE);
        let Some(nq) = NormQuery::parse(q) else {
            return Ok(Vec::new());
        };
        let cols = crate::resolve_types(types);
        let restrict = cols.len() < Collection::ALL.len();
        let with_types = |q: Box<dyn Query>| -> Box<dyn Query> {
            if restrict {
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, self.type_query(&cols)),
                    (Occur::Must, q),
                ]))
            } else {
                q
            }
        };
        let f = &self.f;
        let term = |field: Field, s: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, s),
                IndexRecordOption::Basic,
            ))
        };
        // Every token as a word (`Prefix::None`), the last one as a prefix (the word being
        // typed), or every one as a prefix.
        #[derive(PartialEq)]
        enum Prefix {
            None,
            Last,
            All,
        }
        let last = nq.tokens.len() - 1;
        let all_of = |prefix: Prefix| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(
                nq.tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        if prefix == Prefix::All || (prefix == Prefix::Last && i == last) {
                            (Occur::Must, term(f.text_prefix, text::prefix_key(t)))
                        } else {
                            (Occur::Must, term(f.text, t))
                        }
                    })
                    .collect(),
            ))
        };
        // One-letter prefixes match a large share of the index each, and intersecting several
        // of them (`V.L.A.S`, `M O V A`) cost 130–160 ms at 1.36 M documents, for candidates that
        // match little more than initials. Such a query keeps its word-prefix tier only while
        // the tiers before it found nothing.
        let short_words = nq.tokens[..last].iter().all(|t| t.chars().count() < 2);
        let mut tiers: Vec<(Box<dyn Query>, bool)> = vec![
            (
                Box::new(BooleanQuery::new(vec![
                    (Occur::Should, term(f.compact, &nq.compact)),
                    (Occur::Should, term(f.alt, &nq.compact)),
                ])),
                false,
            ),
            (term(f.compact_prefix, text::prefix_key(&nq.compact)), false),
            (all_of(Prefix::None), false),
        ];
        if last > 0 {
            tiers.push((all_of(Prefix::Last), false));
        }
        tiers.push((all_of(Prefix::All), last > 0 && short_words));
        let searcher = self.reader.searcher();
        let per_tier = (limit * 2).max(10);
        let mut seen: std::collections::HashSet<DocAddress> = std::collections::HashSet::new();
        let mut addrs: Vec<DocAddress> = Vec::new();
        for (tier, only_if_empty) in tiers {
            if seen.len() >= limit || (only_if_empty && !seen.is_empty()) {
                break;
            }
            let top =
                TopDocs::with_limit(per_tier).order_by_fast_field::<i64>("sActivity", Order::Desc);
            for (_, a) in searcher
                .search(&*with_types(tier), &top)
                .map_err(backend_err)?
            {
                if seen.insert(a) {
                    addrs.push(a);
                }
            }
        }
        // Typos only when nothing matched as typed (Typesense's `typo_tokens_threshold = 1`),
        // cheapest and likeliest first: one typo per word, then one typo in the word still
        // being typed, and only then two typos per long word. The distance-2 automaton over
        // the word dictionary is by far the most expensive stage (≈ 5 ms at 1.36 M documents
        // against ≈ 1 ms for the other two), and a prefix with one slip — the commonest typo
        // while typing — is found by the stage before it, so it runs last.
        for (max_typos, prefix_typos) in [(1, false), (1, true), (2, false)] {
            if !seen.is_empty() {
                break;
            }
            // Skip stages that would add no typo clause: the tiers already ran everything else.
            let useful = if prefix_typos {
                nq.tokens.last().is_some_and(|t| t.chars().count() >= 5)
            } else {
                nq.tokens
                    .iter()
                    .any(|t| text::typo_budget(t.chars().count()) >= max_typos)
            };
            if !useful {
                continue;
            }
            let query = with_types(self.text_query(&nq, max_typos, prefix_typos));
            for a in self.top_by_relevance(&searcher, &*query, (limit * 4).max(20))? {
                if seen.insert(a) {
                    addrs.push(a);
                }
            }
        }
        let cands = addrs
            .into_iter()
            .map(|a| self.load(&searcher, a))
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::rank_candidates(&nq, cands, limit))
    }

    fn search_sync(&self, sq: &SearchQuery) -> Result<SearchResults> {
        let cols = crate::validate_query(sq)?;
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, self.type_query(&cols))];
        for flt in &sq.filters {
            must.push((Occur::Must, self.filter_query(flt)?));
        }
        let nq = match sq.q.trim() {
            "" | "*" => None,
            q => NormQuery::parse(q),
        };
        if let Some(nq) = &nq {
            must.push((Occur::Must, self.text_query(nq, 2, true)));
        }
        let query: Box<dyn Query> = if must.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(must))
        };
        let searcher = self.reader.searcher();
        let total = searcher.search(&*query, &Count).map_err(backend_err)? as u64;
        let window = sq.page * sq.per_page;
        let addrs: Vec<DocAddress> = match &sq.sort {
            None => self.top_by_relevance(&searcher, &*query, window)?,
            Some(sort) => {
                let order = if sort.desc { Order::Desc } else { Order::Asc };
                let kind = self.f.by_name.get(sort.field.as_str()).map(|(_, k)| *k);
                let top = TopDocs::with_limit(window);
                match kind {
                    Some(FieldKind::I64) => searcher
                        .search(&*query, &top.order_by_fast_field::<i64>(&sort.field, order))
                        .map_err(backend_err)?
                        .into_iter()
                        .map(|(_, a)| a)
                        .collect(),
                    Some(FieldKind::F64) => searcher
                        .search(&*query, &top.order_by_fast_field::<f64>(&sort.field, order))
                        .map_err(backend_err)?
                        .into_iter()
                        .map(|(_, a)| a)
                        .collect(),
                    _ => searcher
                        .search(&*query, &top.order_by_string_fast_field(&sort.field, order))
                        .map_err(backend_err)?
                        .into_iter()
                        .map(|(_, a)| a)
                        .collect(),
                }
            }
        };
        let cands = addrs
            .into_iter()
            .map(|a| self.load(&searcher, a))
            .collect::<Result<Vec<_>>>()?;
        let mut hits = crate::score_all(nq.as_ref(), cands);
        match &sq.sort {
            None => crate::sort_hits(&mut hits),
            Some(sort) => crate::sort_hits_by_field(&mut hits, sort),
        }
        let hits: Vec<Hit> = hits
            .into_iter()
            .skip((sq.page - 1) * sq.per_page)
            .take(sq.per_page)
            .collect();
        let facets = self.facets(&searcher, &*query, &sq.facets)?;
        Ok(SearchResults {
            hits,
            facets,
            total,
        })
    }

    fn facets(
        &self,
        searcher: &Searcher,
        query: &dyn Query,
        fields: &[String],
    ) -> Result<BTreeMap<String, Vec<crate::FacetCount>>> {
        if fields.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut req = serde_json::Map::new();
        for (i, field) in fields.iter().enumerate() {
            req.insert(
                format!("f{i}"),
                serde_json::json!({"terms": {"field": field, "size": FACET_VALUES * 5,
                    "segment_size": FACET_VALUES * 20}}),
            );
        }
        let aggs: Aggregations =
            serde_json::from_value(serde_json::Value::Object(req)).map_err(backend_err)?;
        let collector = AggregationCollector::from_aggs(aggs, AggContextParams::default());
        let res = searcher.search(query, &collector).map_err(backend_err)?;
        let json = serde_json::to_value(&res).map_err(backend_err)?;
        let mut raw: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (i, field) in fields.iter().enumerate() {
            let counts = raw.entry(field.clone()).or_default();
            let buckets = json
                .get(format!("f{i}"))
                .and_then(|a| a.get("buckets"))
                .and_then(|b| b.as_array());
            for b in buckets.into_iter().flatten() {
                let key = match b.get("key") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => continue,
                };
                let n = b.get("doc_count").and_then(|c| c.as_u64()).unwrap_or(0);
                *counts.entry(key).or_default() += n;
            }
        }
        Ok(crate::finish_facets(raw))
    }
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    fn backend(&self) -> &'static str {
        "tantivy"
    }

    async fn ensure_collections(&self) -> Result<()> {
        // The union schema is fixed when the index is opened.
        Ok(())
    }

    async fn upsert(&self, docs: &[Document]) -> Result<UpsertReport> {
        let mut report = UpsertReport::default();
        let mut ready = Vec::with_capacity(docs.len());
        for d in docs {
            match d.to_indexed() {
                Ok(ix) => ready.push(ix),
                Err(reason) => report.rejected.push(Rejection {
                    collection: d.collection(),
                    id: d.id().to_string(),
                    reason,
                }),
            }
        }
        let indexed = self
            .blocking(move |inner| {
                let tdocs: Vec<(Term, TantivyDocument)> = ready
                    .iter()
                    .map(|d| (inner.key_term(d.collection, &d.id), inner.to_tantivy(d)))
                    .collect();
                let writer = inner.writer.read();
                for (key, doc) in tdocs {
                    writer.delete_term(key);
                    writer.add_document(doc).map_err(backend_err)?;
                }
                inner.dirty.store(true, Ordering::Release);
                Ok(ready.len())
            })
            .await?;
        report.indexed = indexed;
        Ok(report)
    }

    async fn delete(&self, collection: Collection, ids: &[String]) -> Result<()> {
        let ids = ids.to_vec();
        self.blocking(move |inner| {
            let writer = inner.writer.read();
            for id in &ids {
                writer.delete_term(inner.key_term(collection, id));
            }
            inner.dirty.store(true, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn delete_by_filter(&self, collection: Collection, filters: &[Filter]) -> Result<()> {
        if filters.is_empty() {
            return Err(SearchError::InvalidQuery(
                "delete_by_filter needs at least one filter".into(),
            ));
        }
        for flt in filters {
            crate::validate_filter(&[collection], flt)?;
        }
        let filters = filters.to_vec();
        self.blocking(move |inner| {
            let mut must = vec![(Occur::Must, inner.type_query(&[collection]))];
            for flt in &filters {
                must.push((Occur::Must, inner.filter_query(flt)?));
            }
            inner
                .writer
                .read()
                .delete_query(Box::new(BooleanQuery::new(must)))
                .map_err(backend_err)?;
            inner.dirty.store(true, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn clear(&self, collection: Collection) -> Result<()> {
        self.blocking(move |inner| {
            inner
                .writer
                .read()
                .delete_term(Term::from_field_text(inner.f.kind, collection.as_str()));
            inner.dirty.store(true, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn autocomplete(&self, q: &str, types: &[Collection], limit: usize) -> Result<Vec<Hit>> {
        let q = q.to_string();
        let types = types.to_vec();
        self.blocking(move |inner| inner.autocomplete_sync(&q, &types, limit))
            .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let query = query.clone();
        self.blocking(move |inner| inner.search_sync(&query)).await
    }

    async fn refresh(&self) -> Result<()> {
        self.blocking(|inner| {
            inner.dirty.store(true, Ordering::Release);
            inner.commit_if_dirty()
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn count(&self, collection: Collection) -> Result<u64> {
        self.blocking(move |inner| {
            let q = TermQuery::new(
                Term::from_field_text(inner.f.kind, collection.as_str()),
                IndexRecordOption::Basic,
            );
            let n = inner
                .reader
                .searcher()
                .search(&q, &Count)
                .map_err(backend_err)?;
            Ok(n as u64)
        })
        .await
    }
}

impl TantivyIndex {
    /// The index schema (for diagnostics).
    pub fn schema(&self) -> Schema {
        self.inner.index.schema()
    }
}

impl TantivyIndex {
    /// Number of searchable segments (diagnostics: query cost grows with it).
    pub fn segment_count(&self) -> usize {
        self.inner.reader.searcher().segment_readers().len()
    }
}

impl TantivyIndex {
    /// Commits, then merges every segment into one and waits for it. Fuzzy (typo) queries cost
    /// per segment, so `search reindex` calls this after a bulk load; steady-state indexing
    /// leaves merging to tantivy's merge policy.
    pub async fn compact(&self) -> Result<()> {
        self.blocking(|inner| {
            inner.dirty.store(true, Ordering::Release);
            inner.commit_if_dirty()?;
            // A background merge may hold some segments; retry until it has finished.
            let mut last_err = None;
            for _ in 0..300 {
                let ids = inner.index.searchable_segment_ids().map_err(backend_err)?;
                if ids.len() <= 1 {
                    last_err = None;
                    break;
                }
                // Take the write lock only to start the merge, not while it runs.
                let merge = inner.writer.write().merge(&ids);
                match merge.wait() {
                    Ok(_) => {
                        last_err = None;
                        break;
                    }
                    Err(e) => {
                        last_err = Some(e);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            if let Some(e) = last_err {
                return Err(backend_err(e));
            }
            inner.reader.reload().map_err(backend_err)
        })
        .await
    }
}
