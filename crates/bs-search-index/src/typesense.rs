//! The Typesense backend: a thin typed client over plain reqwest, kept to the API surface that
//! is stable back to Typesense 0.24.1 (collections, JSONL import, search, `multi_search`,
//! delete-by-filter, `/health`).
//!
//! Each [`Collection`] is one Typesense collection named `<prefix><collection>`. The schema is
//! generated from [`Collection::fields`]: strings that may be filtered or faceted are
//! `facet: true`, string sort fields get `sort: true` (0.24 cannot sort strings otherwise), and
//! `sActivity` is the default sorting field. Text matching uses only the helper field `sText`
//! (the words from [`crate::text`]), with prefix search on, one typo from 4 characters and two
//! from 8, and `drop_tokens_threshold = 0` so every typed word must match. The final order is
//! computed by the crate's shared ranking, like the tantivy backend.
//!
//! Caveats handled here: import answers 200 even when lines fail, so every line is parsed
//! (a failed line is a [`Rejection`]); `per_page` is capped at 250 by the server, so mixed-type
//! searches page through at most 250 merged results (single-collection searches page natively).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::docs::{Collection, FieldKind, FieldSpec, HELPER_FIELDS, IndexedDoc};
use crate::text::NormQuery;
use crate::{
    Candidate, Document, FACET_VALUES, Filter, Hit, MAX_PER_PAGE, Rejection, Result, SearchError,
    SearchIndex, SearchQuery, SearchResults, UpsertReport,
};

/// Typesense's largest `per_page`.
const TS_MAX_PER_PAGE: usize = 250;
/// Documents per import request.
const IMPORT_CHUNK: usize = 5_000;

/// Configuration of [`TypesenseIndex`].
#[derive(Debug, Clone)]
pub struct TypesenseConfig {
    /// Base URL, e.g. `http://127.0.0.1:8108`.
    pub url: String,
    pub api_key: String,
    /// Prepended to every collection name (tests use a unique prefix per run).
    pub collection_prefix: String,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl TypesenseConfig {
    /// A config with no prefix and a 10 s timeout.
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> TypesenseConfig {
        TypesenseConfig {
            url: url.into(),
            api_key: api_key.into(),
            collection_prefix: String::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The Typesense-backed search index.
#[derive(Clone)]
pub struct TypesenseIndex {
    http: reqwest::Client,
    cfg: TypesenseConfig,
}

fn unavailable(e: reqwest::Error) -> SearchError {
    if e.is_connect() || e.is_timeout() || e.is_request() {
        SearchError::Unavailable(e.to_string())
    } else {
        SearchError::Backend(e.to_string())
    }
}

/// Wraps a filter value in backticks (0.24 syntax for values with commas or spaces).
fn quote(v: &str) -> String {
    format!("`{}`", v.replace('`', ""))
}

fn num(v: f64, kind: FieldKind) -> String {
    match kind {
        FieldKind::I64 => format!("{}", v as i64),
        _ => format!("{v}"),
    }
}

/// `filter_by` for filters on one collection; `None` if a filter field is not in it (then the
/// collection cannot match, as in the tantivy backend).
fn filter_by(c: Collection, filters: &[Filter]) -> Option<String> {
    let mut parts = Vec::new();
    for flt in filters {
        let spec = c.field(flt.field())?;
        match flt {
            Filter::AnyOf { values, .. } => {
                let vs: Vec<String> = values.iter().map(|v| quote(v)).collect();
                parts.push(format!("{}:=[{}]", spec.name, vs.join(",")));
            }
            Filter::Range { min, max, .. } => {
                // Integer bounds are rounded inwards, as in the tantivy backend.
                if let Some(v) = min {
                    let v = if spec.kind == FieldKind::I64 {
                        v.ceil()
                    } else {
                        *v
                    };
                    parts.push(format!("{}:>={}", spec.name, num(v, spec.kind)));
                }
                if let Some(v) = max {
                    let v = if spec.kind == FieldKind::I64 {
                        v.floor()
                    } else {
                        *v
                    };
                    parts.push(format!("{}:<={}", spec.name, num(v, spec.kind)));
                }
            }
        }
    }
    Some(parts.join(" && "))
}

fn field_schema(spec: &FieldSpec) -> Value {
    let ty = match spec.kind {
        FieldKind::Str => "string",
        FieldKind::Strs => "string[]",
        FieldKind::I64 => "int64",
        FieldKind::F64 => "float",
    };
    let is_helper = HELPER_FIELDS.iter().any(|h| h.name == spec.name);
    // Strings are filtered with `:=`, which needs the facet index; names and the helper text
    // are only matched as text.
    let facet = matches!(spec.kind, FieldKind::Str | FieldKind::Strs)
        && !is_helper
        && !matches!(
            spec.name,
            "name" | "ticker" | "characterNames" | "victimCharacterName"
        );
    let mut v = json!({"name": spec.name, "type": ty, "facet": facet || spec.facet,
        "optional": spec.name != "sActivity"});
    if spec.sort && matches!(spec.kind, FieldKind::Str) {
        v["sort"] = json!(true);
    }
    v
}

impl TypesenseIndex {
    /// Builds the client (no request is made).
    pub fn new(cfg: TypesenseConfig) -> Result<TypesenseIndex> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| SearchError::Backend(e.to_string()))?;
        Ok(TypesenseIndex { http, cfg })
    }

    /// The server-side name of a collection.
    pub fn collection_name(&self, c: Collection) -> String {
        format!("{}{}", self.cfg.collection_prefix, c.as_str())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.cfg.url.trim_end_matches('/'))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<(StatusCode, String)> {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-TYPESENSE-API-KEY", &self.cfg.api_key)
            .query(query);
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Text(t)) => req.header("Content-Type", "text/plain").body(t),
            None => req,
        };
        let resp = req.send().await.map_err(unavailable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unavailable)?;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(SearchError::Unavailable(text));
        }
        Ok((status, text))
    }

    async fn send_ok(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Value> {
        let (status, text) = self.send(method, path, query, body).await?;
        if !status.is_success() {
            return Err(SearchError::Backend(format!(
                "typesense {path}: {status}: {text}"
            )));
        }
        serde_json::from_str(&text).map_err(|e| SearchError::Backend(format!("bad json: {e}")))
    }

    fn schema(&self, c: Collection) -> Value {
        let fields: Vec<Value> = c
            .fields()
            .iter()
            .chain(HELPER_FIELDS)
            .map(field_schema)
            .collect();
        json!({"name": self.collection_name(c), "fields": fields,
            "default_sorting_field": "sActivity"})
    }

    async fn create(&self, c: Collection) -> Result<()> {
        let (status, text) = self
            .send(
                Method::POST,
                "/collections",
                &[],
                Some(Body::Json(self.schema(c))),
            )
            .await?;
        // 409: created concurrently by another instance — fine.
        if status.is_success() || status == StatusCode::CONFLICT {
            Ok(())
        } else {
            Err(SearchError::Backend(format!(
                "create {c}: {status}: {text}"
            )))
        }
    }

    /// Drops this index's collections (tests and full reindex).
    pub async fn drop_collections(&self) -> Result<()> {
        for c in Collection::ALL {
            let path = format!("/collections/{}", self.collection_name(c));
            let (status, text) = self.send(Method::DELETE, &path, &[], None).await?;
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                return Err(SearchError::Backend(format!("drop {c}: {status}: {text}")));
            }
        }
        Ok(())
    }

    async fn import(
        &self,
        c: Collection,
        docs: &[IndexedDoc],
        report: &mut UpsertReport,
    ) -> Result<()> {
        let mut body = String::new();
        for d in docs {
            body.push_str(&Value::Object(d.to_json()).to_string());
            body.push('\n');
        }
        let path = format!("/collections/{}/documents/import", self.collection_name(c));
        let q = [
            ("action", "upsert".to_string()),
            ("batch_size", "500".to_string()),
        ];
        let (status, text) = self
            .send(Method::POST, &path, &q, Some(Body::Text(body)))
            .await?;
        if !status.is_success() {
            return Err(SearchError::Backend(format!(
                "import {c}: {status}: {text}"
            )));
        }
        let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        parse_import_result(c, &ids, &text, report);
        Ok(())
    }

    fn text_params(&self, c: Collection, q: &NormQuery, per_page: usize) -> Value {
        json!({
            "collection": self.collection_name(c),
            "q": q.tokens.join(" "),
            "query_by": "sText",
            "prefix": "true",
            "num_typos": 2,
            "min_len_1typo": 4,
            "min_len_2typo": 8,
            "drop_tokens_threshold": 0,
            // Typos only when nothing matches as typed, like the tantivy backend.
            "typo_tokens_threshold": 1,
            "per_page": per_page,
            "sort_by": "_text_match:desc,sActivity:desc",
            "highlight_fields": "none",
        })
    }

    async fn multi_search(&self, searches: Vec<Value>) -> Result<Vec<Value>> {
        let v = self
            .send_ok(
                Method::POST,
                "/multi_search",
                &[],
                Some(Body::Json(json!({"searches": searches}))),
            )
            .await?;
        let results = v
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| SearchError::Backend("multi_search without results".into()))?;
        for r in &results {
            if let Some(err) = r.get("error") {
                return Err(SearchError::Backend(format!("typesense search: {err}")));
            }
        }
        Ok(results)
    }
}

/// Reads an import response: one JSON line per document, in order (HTTP 200 even when lines
/// fail). A failed or missing line is a rejection of that document.
fn parse_import_result(c: Collection, ids: &[&str], text: &str, report: &mut UpsertReport) {
    let mut lines = text.lines();
    for id in ids {
        let line: Value = lines
            .next()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| json!({"success": false, "error": "missing import result"}));
        if line.get("success").and_then(Value::as_bool) == Some(true) {
            report.indexed += 1;
        } else {
            let reason = line
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("import failed")
                .to_string();
            report.rejected.push(Rejection {
                collection: c,
                id: id.to_string(),
                reason,
            });
        }
    }
}

enum Body {
    Json(Value),
    Text(String),
}

fn candidates(c: Collection, result: &Value) -> Vec<Candidate> {
    result
        .get("hits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|h| match h.get("document") {
            Some(Value::Object(doc)) => Some(Candidate {
                kind: c,
                id: doc
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                doc: doc.clone(),
            }),
            _ => None,
        })
        .collect()
}

#[async_trait]
impl SearchIndex for TypesenseIndex {
    fn backend(&self) -> &'static str {
        "typesense"
    }

    async fn ensure_collections(&self) -> Result<()> {
        for c in Collection::ALL {
            let path = format!("/collections/{}", self.collection_name(c));
            let (status, text) = self.send(Method::GET, &path, &[], None).await?;
            if status == StatusCode::NOT_FOUND {
                self.create(c).await?;
            } else if !status.is_success() {
                return Err(SearchError::Backend(format!("get {c}: {status}: {text}")));
            }
        }
        Ok(())
    }

    async fn upsert(&self, docs: &[Document]) -> Result<UpsertReport> {
        let mut report = UpsertReport::default();
        let mut by_col: BTreeMap<Collection, Vec<IndexedDoc>> = BTreeMap::new();
        for d in docs {
            match d.to_indexed() {
                Ok(ix) => by_col.entry(ix.collection).or_default().push(ix),
                Err(reason) => report.rejected.push(Rejection {
                    collection: d.collection(),
                    id: d.id().to_string(),
                    reason,
                }),
            }
        }
        for (c, docs) in by_col {
            for chunk in docs.chunks(IMPORT_CHUNK) {
                self.import(c, chunk, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn delete(&self, collection: Collection, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(100) {
            let vs: Vec<String> = chunk.iter().map(|v| quote(v)).collect();
            let path = format!(
                "/collections/{}/documents",
                self.collection_name(collection)
            );
            let q = [("filter_by", format!("id:[{}]", vs.join(",")))];
            self.send_ok(Method::DELETE, &path, &q, None).await?;
        }
        Ok(())
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
        let fb = filter_by(collection, filters)
            .ok_or_else(|| SearchError::InvalidQuery("filter field not in collection".into()))?;
        let path = format!(
            "/collections/{}/documents",
            self.collection_name(collection)
        );
        self.send_ok(Method::DELETE, &path, &[("filter_by", fb)], None)
            .await?;
        Ok(())
    }

    async fn clear(&self, collection: Collection) -> Result<()> {
        let path = format!("/collections/{}", self.collection_name(collection));
        let (status, text) = self.send(Method::DELETE, &path, &[], None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            return Err(SearchError::Backend(format!(
                "drop {collection}: {status}: {text}"
            )));
        }
        self.create(collection).await
    }

    async fn autocomplete(&self, q: &str, types: &[Collection], limit: usize) -> Result<Vec<Hit>> {
        let limit = limit.clamp(1, MAX_PER_PAGE);
        let Some(nq) = NormQuery::parse(q) else {
            return Ok(Vec::new());
        };
        let cols = crate::resolve_types(types);
        let window = (limit * 4).clamp(20, TS_MAX_PER_PAGE);
        let searches = cols
            .iter()
            .map(|c| self.text_params(*c, &nq, window))
            .collect();
        let results = self.multi_search(searches).await?;
        let cands = cols
            .iter()
            .zip(&results)
            .flat_map(|(c, r)| candidates(*c, r))
            .collect();
        Ok(crate::rank_candidates(&nq, cands, limit))
    }

    async fn search(&self, sq: &SearchQuery) -> Result<SearchResults> {
        let cols = crate::validate_query(sq)?;
        let nq = match sq.q.trim() {
            "" | "*" => None,
            q => NormQuery::parse(q),
        };
        let mut searched = Vec::new();
        let mut searches = Vec::new();
        let single = cols.len() == 1;
        let (page, per_page) = if single {
            (sq.page, sq.per_page)
        } else {
            (1, (sq.page * sq.per_page).min(TS_MAX_PER_PAGE))
        };
        for c in &cols {
            let Some(fb) = filter_by(*c, &sq.filters) else {
                continue;
            };
            let mut p = match &nq {
                Some(nq) => self.text_params(*c, nq, per_page),
                None => json!({"collection": self.collection_name(*c), "q": "*",
                    "query_by": "sText", "sort_by": "sActivity:desc"}),
            };
            p["page"] = json!(page);
            p["per_page"] = json!(per_page);
            if !fb.is_empty() {
                p["filter_by"] = json!(fb);
            }
            let facets: Vec<&str> = sq
                .facets
                .iter()
                .filter(|f| c.field(f).is_some_and(|s| s.facet))
                .map(String::as_str)
                .collect();
            if !facets.is_empty() {
                p["facet_by"] = json!(facets.join(","));
                p["max_facet_values"] = json!(FACET_VALUES * 5);
            }
            if let Some(sort) = &sq.sort
                && c.field(&sort.field).is_some_and(|s| s.sort)
            {
                let dir = if sort.desc { "desc" } else { "asc" };
                let tie = if nq.is_some() {
                    "_text_match:desc"
                } else {
                    "sActivity:desc"
                };
                p["sort_by"] = json!(format!("{}:{dir},{tie}", sort.field));
            }
            searched.push(*c);
            searches.push(p);
        }
        if searches.is_empty() {
            return Ok(SearchResults::default());
        }
        let results = self.multi_search(searches).await?;
        let mut total = 0u64;
        let mut raw: BTreeMap<String, BTreeMap<String, u64>> = sq
            .facets
            .iter()
            .map(|f| (f.clone(), BTreeMap::new()))
            .collect();
        let mut cands = Vec::new();
        for (c, r) in searched.iter().zip(&results) {
            total += r.get("found").and_then(Value::as_u64).unwrap_or(0);
            cands.extend(candidates(*c, r));
            for fc in r
                .get("facet_counts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(field) = fc.get("field_name").and_then(Value::as_str) else {
                    continue;
                };
                let entry = raw.entry(field.to_string()).or_default();
                for cnt in fc
                    .get("counts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let value = match cnt.get("value") {
                        Some(Value::String(s)) => s.clone(),
                        Some(v) => v.to_string(),
                        None => continue,
                    };
                    *entry.entry(value).or_default() +=
                        cnt.get("count").and_then(Value::as_u64).unwrap_or(0);
                }
            }
        }
        let mut hits = crate::score_all(nq.as_ref(), cands);
        match &sq.sort {
            None => crate::sort_hits(&mut hits),
            Some(sort) => crate::sort_hits_by_field(&mut hits, sort),
        }
        let hits = if single {
            hits
        } else {
            hits.into_iter()
                .skip((sq.page - 1) * sq.per_page)
                .take(sq.per_page)
                .collect()
        };
        Ok(SearchResults {
            hits,
            facets: crate::finish_facets(raw),
            total,
        })
    }

    async fn refresh(&self) -> Result<()> {
        // Typesense acknowledges a write once it is searchable.
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let v = self.send_ok(Method::GET, "/health", &[], None).await?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(SearchError::Unavailable(format!("typesense health: {v}")))
        }
    }

    async fn count(&self, collection: Collection) -> Result<u64> {
        let path = format!("/collections/{}", self.collection_name(collection));
        let v = self.send_ok(Method::GET, &path, &[], None).await?;
        Ok(v.get("num_documents").and_then(Value::as_u64).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text;

    #[test]
    fn filters_render_in_typesense_syntax() {
        let f = vec![
            Filter::AnyOf {
                field: "regionName".into(),
                values: vec!["Cloud Ring".into(), "a`b".into()],
            },
            Filter::Range {
                field: "totalKills".into(),
                min: Some(10.5),
                max: Some(100.0),
            },
        ];
        assert_eq!(
            filter_by(Collection::Battles, &f).unwrap(),
            "regionName:=[`Cloud Ring`,`ab`] && totalKills:>=11 && totalKills:<=100"
        );
        assert_eq!(filter_by(Collection::Alliances, &f), None);
    }

    #[test]
    fn import_lines_are_parsed_one_by_one() {
        // The shape Typesense 0.24.1 returns for a mixed batch.
        let body = concat!(
            "{\"success\":true}\n",
            "{\"code\":400,\"document\":\"{}\",\"error\":\"Field `totalKills` must be an int64.\",\"success\":false}\n",
            "not json\n"
        );
        let mut report = UpsertReport::default();
        parse_import_result(
            Collection::Battles,
            &["a", "b", "c", "d"],
            body,
            &mut report,
        );
        assert_eq!(report.indexed, 1);
        let reasons: Vec<(&str, &str)> = report
            .rejected
            .iter()
            .map(|r| (r.id.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("b", "Field `totalKills` must be an int64."),
                ("c", "missing import result"),
                ("d", "missing import result"),
            ]
        );
    }

    #[test]
    fn schema_marks_string_sorts_and_default_sort() {
        let ts = TypesenseIndex::new(TypesenseConfig::new("http://x", "k")).unwrap();
        let s = ts.schema(Collection::Characters);
        let fields = s["fields"].as_array().unwrap();
        let name = fields.iter().find(|f| f["name"] == "name").unwrap();
        assert_eq!(name["sort"], json!(true));
        let act = fields.iter().find(|f| f["name"] == "sActivity").unwrap();
        assert_eq!(act["optional"], json!(false));
        assert_eq!(s["default_sorting_field"], "sActivity");
    }

    #[test]
    fn typo_budget_matches_server_settings() {
        // text_params sends min_len_1typo 4 / min_len_2typo 8: keep them equal to the shared budget.
        assert_eq!(text::typo_budget(3), 0);
        assert_eq!(text::typo_budget(4), 1);
        assert_eq!(text::typo_budget(8), 2);
    }
}
