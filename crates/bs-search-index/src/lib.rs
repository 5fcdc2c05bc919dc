//! Search backends behind one trait, for the search service.
//!
//! [`SearchIndex`] is implemented by [`TantivyIndex`] (embedded, the all-in-one default) and
//! [`TypesenseIndex`] (a Typesense 0.24.1 server over plain HTTP). Both pass one conformance suite
//! (`tests/main.rs`).
//!
//! Nine collections ([`Collection`]) hold small documents ([`docs`]) with string ids. Names are
//! normalised by [`text`] into words, a compact form and edge n-grams so that EVE's awkward names
//! (`O-IVNH`, `J105951`, `Hel'ls`, `[GSF]`) are found by whatever a user types. Engines retrieve
//! candidates; the final autocomplete order is computed here, from [`text::match_quality`] (tier)
//! plus [`text::activity_bonus`] (tie-break), identically for both backends.
//!
//! Bad input is a counted rejection ([`UpsertReport::rejected`], [`SearchError::InvalidQuery`]),
//! never a panic. Nothing here reads the clock.

pub mod docs;
pub mod tantivy_index;
pub mod text;
pub mod typesense;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use docs::{
    AllianceDoc, BattleDoc, CharacterDoc, Collection, ConstellationDoc, CorporationDoc, Document,
    FieldKind, FieldSpec, KillmailDoc, RegionDoc, ShipTypeDoc, SystemDoc, activity_score,
    battle_score,
};
pub use tantivy_index::{TantivyConfig, TantivyIndex};
pub use typesense::{TypesenseConfig, TypesenseIndex};

/// Largest page / autocomplete size either backend accepts.
pub const MAX_PER_PAGE: usize = 100;
/// Facet values returned per facet field.
pub const FACET_VALUES: usize = 20;

/// Errors of a search backend.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query names an unknown field, sorts by a non-sortable field, etc. (HTTP 400).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The backend cannot be reached (HTTP 503: search is down, BattleScope is not).
    #[error("search backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported.
    #[error("search backend error: {0}")]
    Backend(String),
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;

/// One result of autocomplete or search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    #[serde(rename = "type")]
    pub kind: Collection,
    pub id: String,
    pub name: String,
    /// Match tier plus activity bonus (see [`text::match_quality`]); for sorted searches without
    /// a query, the activity bonus only.
    pub score: f32,
    /// The stored document (its own fields, helper fields removed).
    pub extra: serde_json::Value,
}

/// A filter on one field. Several filters are AND-ed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Filter {
    /// String field (or any element of a string-array field) equals one of the values.
    AnyOf { field: String, values: Vec<String> },
    /// Numeric field within inclusive bounds.
    Range {
        field: String,
        min: Option<f64>,
        max: Option<f64>,
    },
}

impl Filter {
    /// `field` equals `value`.
    pub fn eq(field: &str, value: impl Into<String>) -> Filter {
        Filter::AnyOf {
            field: field.into(),
            values: vec![value.into()],
        }
    }

    /// The field this filter tests.
    pub fn field(&self) -> &str {
        match self {
            Filter::AnyOf { field, .. } | Filter::Range { field, .. } => field,
        }
    }
}

/// Sort order of [`SearchQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SortBy {
    pub field: String,
    pub desc: bool,
}

/// A universal search request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Free text; empty or `*` matches everything (then sort decides).
    pub q: String,
    /// Collections to search; empty = all.
    pub types: Vec<Collection>,
    pub filters: Vec<Filter>,
    /// Fields to count values of (must be facet fields of at least one searched collection).
    pub facets: Vec<String>,
    /// `None` = relevance (match tier, then activity).
    pub sort: Option<SortBy>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            q: String::new(),
            types: Vec::new(),
            filters: Vec::new(),
            facets: Vec::new(),
            sort: None,
            page: 1,
            per_page: 20,
        }
    }
}

/// One facet value and how many matching documents carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

/// Result of [`SearchIndex::search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SearchResults {
    pub hits: Vec<Hit>,
    /// Per requested facet field: the top [`FACET_VALUES`] values by count (ties by value).
    pub facets: BTreeMap<String, Vec<FacetCount>>,
    /// Number of matching documents.
    pub total: u64,
}

/// A document the backend refused (bad id, unsearchable name, backend-side validation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub collection: Collection,
    pub id: String,
    pub reason: String,
}

/// Result of [`SearchIndex::upsert`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpsertReport {
    pub indexed: usize,
    pub rejected: Vec<Rejection>,
}

/// A search backend. All methods are idempotent; writes become visible within about a second,
/// or immediately after [`SearchIndex::refresh`].
#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// `"tantivy"` or `"typesense"`.
    fn backend(&self) -> &'static str;
    /// Creates missing collections (no-op when they exist).
    async fn ensure_collections(&self) -> Result<()>;
    /// Inserts or replaces documents by (collection, id).
    async fn upsert(&self, docs: &[Document]) -> Result<UpsertReport>;
    /// Deletes documents by id; unknown ids are ignored.
    async fn delete(&self, collection: Collection, ids: &[String]) -> Result<()>;
    /// Deletes every document of `collection` matching all `filters` (at least one).
    async fn delete_by_filter(&self, collection: Collection, filters: &[Filter]) -> Result<()>;
    /// Deletes every document of `collection` (used by reindex).
    async fn clear(&self, collection: Collection) -> Result<()>;
    /// As-you-type search across `types` (empty = all), best first.
    async fn autocomplete(&self, q: &str, types: &[Collection], limit: usize) -> Result<Vec<Hit>>;
    /// Universal search with filters, facets, sorting and paging.
    async fn search(&self, query: &SearchQuery) -> Result<SearchResults>;
    /// Makes every acknowledged write visible to searches now.
    async fn refresh(&self) -> Result<()>;
    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;
    /// Number of documents in `collection` (after the last refresh).
    async fn count(&self, collection: Collection) -> Result<u64>;
}

/// The collections a request covers (empty = all), deduplicated in [`Collection::ALL`] order.
pub(crate) fn resolve_types(types: &[Collection]) -> Vec<Collection> {
    Collection::ALL
        .into_iter()
        .filter(|c| types.is_empty() || types.contains(c))
        .collect()
}

/// Checks a search request against the schemas; returns the collections to search.
pub(crate) fn validate_query(q: &SearchQuery) -> Result<Vec<Collection>> {
    let cols = resolve_types(&q.types);
    if q.per_page == 0 || q.per_page > MAX_PER_PAGE {
        return Err(SearchError::InvalidQuery(format!(
            "per_page must be 1..={MAX_PER_PAGE}"
        )));
    }
    if q.page == 0 || q.page > 1_000 {
        return Err(SearchError::InvalidQuery("page must be 1..=1000".into()));
    }
    for flt in &q.filters {
        validate_filter(&cols, flt)?;
    }
    for facet in &q.facets {
        if !cols.iter().any(|c| c.field(facet).is_some_and(|s| s.facet)) {
            return Err(SearchError::InvalidQuery(format!(
                "{facet:?} is not a facet field"
            )));
        }
    }
    if let Some(sort) = &q.sort
        && !cols
            .iter()
            .any(|c| c.field(&sort.field).is_some_and(|s| s.sort))
    {
        return Err(SearchError::InvalidQuery(format!(
            "cannot sort by {:?}",
            sort.field
        )));
    }
    Ok(cols)
}

pub(crate) fn validate_filter(cols: &[Collection], flt: &Filter) -> Result<()> {
    let spec = cols
        .iter()
        .find_map(|c| c.field(flt.field()))
        .ok_or_else(|| SearchError::InvalidQuery(format!("unknown field {:?}", flt.field())))?;
    match (flt, spec.kind) {
        (Filter::AnyOf { values, .. }, FieldKind::Str | FieldKind::Strs) => {
            if values.is_empty() {
                return Err(SearchError::InvalidQuery(format!(
                    "filter on {:?} has no values",
                    spec.name
                )));
            }
            Ok(())
        }
        (Filter::Range { min, max, .. }, FieldKind::I64 | FieldKind::F64) => {
            if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                return Err(SearchError::InvalidQuery(
                    "range bounds must be finite".into(),
                ));
            }
            Ok(())
        }
        _ => Err(SearchError::InvalidQuery(format!(
            "filter kind does not fit field {:?}",
            spec.name
        ))),
    }
}

/// Sorts merged facet counts (count desc, value asc) and keeps the top [`FACET_VALUES`].
pub(crate) fn finish_facets(
    raw: BTreeMap<String, BTreeMap<String, u64>>,
) -> BTreeMap<String, Vec<FacetCount>> {
    raw.into_iter()
        .map(|(field, counts)| {
            let mut v: Vec<FacetCount> = counts
                .into_iter()
                .map(|(value, count)| FacetCount { value, count })
                .collect();
            v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
            v.truncate(FACET_VALUES);
            (field, v)
        })
        .collect()
}

/// Candidate hit fields both backends extract before the shared final ranking.
pub(crate) struct Candidate {
    pub kind: Collection,
    pub id: String,
    pub doc: serde_json::Map<String, serde_json::Value>,
}

/// Scores one candidate: (match tier or 0 without a query, hit with tier + activity bonus).
fn score_candidate(q: Option<&text::NormQuery>, c: Candidate) -> (f32, Hit) {
    let s = |k: &str| {
        c.doc
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let quality = match q {
        None => 0.0,
        Some(q) => {
            let compact = s("sCompact");
            let alt = s("sAlt");
            let text_field = s("sText");
            let words: Vec<&str> = text_field.split(' ').filter(|w| !w.is_empty()).collect();
            text::match_quality(
                q,
                text::MatchFields {
                    compact: &compact,
                    alt: &alt,
                    words: &words,
                },
            )
        }
    };
    let activity = c.doc.get("sActivity").and_then(|v| v.as_i64()).unwrap_or(0);
    let name = s("sName");
    let hit = Hit {
        kind: c.kind,
        id: c.id,
        name,
        score: quality + text::activity_bonus(activity),
        extra: docs::strip_helpers(c.doc),
    };
    (quality, hit)
}

/// Scores candidates with [`text::match_quality`] + activity, drops non-matches, orders
/// best-first (ties: collection order, then id) and truncates to `limit`.
pub(crate) fn rank_candidates(
    q: &text::NormQuery,
    cands: Vec<Candidate>,
    limit: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = cands
        .into_iter()
        .map(|c| score_candidate(Some(q), c))
        .filter(|(quality, _)| *quality > 0.0)
        .map(|(_, h)| h)
        .collect();
    sort_hits(&mut hits);
    hits.dedup_by(|a, b| a.kind == b.kind && a.id == b.id);
    hits.truncate(limit);
    hits
}

/// Scores every candidate of a search (engine matches are kept even if the tier is 0).
pub(crate) fn score_all(q: Option<&text::NormQuery>, cands: Vec<Candidate>) -> Vec<Hit> {
    cands.into_iter().map(|c| score_candidate(q, c).1).collect()
}

fn type_rank(c: Collection) -> usize {
    Collection::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(usize::MAX)
}

pub(crate) fn sort_hits(hits: &mut [Hit]) {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| type_rank(a.kind).cmp(&type_rank(b.kind)))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Numeric value of a sort field in a stored document (missing = lowest).
pub(crate) fn sort_value(doc: &serde_json::Value, field: &str) -> Option<f64> {
    doc.get(field).and_then(|v| v.as_f64())
}

/// Orders hits by a sort field (missing values last), ties by relevance then id.
pub(crate) fn sort_hits_by_field(hits: &mut [Hit], sort: &SortBy) {
    hits.sort_by(|a, b| {
        let (va, vb) = (hit_sort_key(a, &sort.field), hit_sort_key(b, &sort.field));
        let ord = match (va, vb) {
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                if sort.desc { o.reverse() } else { o }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        ord.then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| type_rank(a.kind).cmp(&type_rank(b.kind)))
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[derive(PartialEq, PartialOrd)]
enum SortKey {
    Num(f64),
    Text(String),
}

fn hit_sort_key(h: &Hit, field: &str) -> Option<SortKey> {
    if field == "sName" {
        return Some(SortKey::Text(h.name.to_lowercase()));
    }
    match h.extra.get(field) {
        Some(serde_json::Value::String(s)) => Some(SortKey::Text(s.to_lowercase())),
        Some(v) => sort_value(&h.extra, field)
            .or_else(|| v.as_bool().map(f64::from))
            .map(SortKey::Num),
        None => None,
    }
}
