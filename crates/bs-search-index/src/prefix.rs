//! The in-memory prefix index that answers autocomplete for the tantivy backend.
//!
//! Autocomplete is dominated by short prefixes (`b`, `bla`, `Blac`) that match tens of thousands
//! of names; asking tantivy for the most active of them walks a long posting list per query.
//! This index answers the same question from sorted arrays in memory:
//!
//! * per collection ([`PrefixIndex`] holds one [`Part`] pair per type; killmails are left to
//!   tantivy: they are the largest documents, have no name of their own and are only
//!   autocompleted on request), the normalised keys of every document in three sorted arrays:
//!   the compact name (`O-IVNH` → `oivnh`), the compact ticker and every word (see
//!   [`crate::text::name_words`]);
//! * all key bytes live in **one contiguous buffer** of records (`[id len][id][flags][words
//!   separated by spaces]\n`); the arrays hold `u32` offsets into it, a document is found from an
//!   offset by binary search over the record starts. No `String` per entry;
//! * a prefix is a binary-search range of an array. Ranges of at most `scan_max` entries are
//!   scanned. For every longer range a **top list** (`top_k` documents, best first) is computed
//!   when the part is built, with the exact tier score that [`crate::text::match_quality`] gives
//!   a one-token query equal to that prefix plus the activity bonus, so `b` or `bla` costs
//!   O(k).
//!
//! Ranking semantics are those of [`crate::text::match_quality`]: tiers 100 (exact name), 90
//! (exact ticker), 70–80 (name prefix, shorter names first), 60 (ticker prefix), 40–50 (every
//! token a word or word prefix), then activity; ties by type, then id. The index returns the
//! exact best `limit` candidates for the tiers ≥ 40; the caller loads them from tantivy and
//! ranks them with the shared function, so both backends order them the same way. Typos are
//! not handled here (tantivy's fuzzy path runs when nothing matched as typed).
//!
//! **Updates.** Each type has an immutable *base* part (with top lists) and a small *delta*
//! part (scanned, no top lists). An upsert marks the document's old version dead and appends
//! the new one to the delta; a delete marks it dead. A top list stays exact under deaths: the
//! live documents of the base keep the activity they had when it was built, so the first
//! `limit` live entries of a list are still the best `limit` of its range; when fewer are left
//! the range is scanned. When the delta plus the dead documents of the base exceed
//! `clamp(base / 4, delta_min, delta_max)` the base is rebuilt from the live documents. The
//! tantivy backend applies changes when it commits, so autocomplete sees what search sees.

use std::collections::HashMap;

use crate::docs::{Collection, IndexedDoc};
use crate::text::{self, NormQuery};

/// Tuning of [`PrefixIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixConfig {
    /// Ranges of at most this many entries are scanned; longer ones get a top list.
    pub scan_max: usize,
    /// Documents kept per top list (requests with a larger limit scan the range).
    pub top_k: usize,
    /// Smallest delta (documents, plus dead documents of the base) that triggers a rebuild.
    pub delta_min: usize,
    /// Largest delta before a rebuild, whatever the base size.
    pub delta_max: usize,
}

impl Default for PrefixConfig {
    fn default() -> Self {
        PrefixConfig {
            scan_max: 1024,
            top_k: 16,
            delta_min: 4096,
            delta_max: 65_536,
        }
    }
}

/// The three key arrays of a part.
const COMPACT: usize = 0;
const ALT: usize = 1;
const WORD: usize = 2;

/// Record flag bits: the first word is the compact name / the next word is the compact ticker.
const HAS_COMPACT: u8 = 1;
const HAS_ALT: u8 = 2;

/// The collections this index covers (every one but killmails).
pub fn covers(c: Collection) -> bool {
    c != Collection::Killmails
}

/// What the index keeps of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixDoc {
    pub kind: Collection,
    pub id: String,
    pub compact: String,
    pub alt: String,
    pub words: Vec<String>,
    pub activity: i64,
}

impl PrefixDoc {
    pub fn of(d: &IndexedDoc) -> PrefixDoc {
        PrefixDoc {
            kind: d.collection,
            id: d.id.clone(),
            compact: d.compact.clone(),
            alt: d.alt.clone(),
            words: d.words.clone(),
            activity: d.activity,
        }
    }
}

/// A change, applied in order by [`PrefixIndex::apply`].
#[derive(Debug, Clone)]
pub enum PrefixOp {
    Upsert(PrefixDoc),
    Delete(Collection, String),
    Clear(Collection),
}

/// One document to write into a part (borrowed from a [`PrefixDoc`] or from another part).
struct DocIn<'a> {
    id: &'a [u8],
    compact: &'a [u8],
    alt: &'a [u8],
    words: Vec<&'a [u8]>,
    activity: u32,
}

impl<'a> DocIn<'a> {
    fn of(d: &'a PrefixDoc) -> Option<DocIn<'a>> {
        // Ids are validated upstream (≤ 128 bytes, no whitespace); the length prefix is one byte.
        if d.id.is_empty() || d.id.len() > 255 {
            return None;
        }
        Some(DocIn {
            id: d.id.as_bytes(),
            compact: d.compact.as_bytes(),
            alt: d.alt.as_bytes(),
            words: d.words.iter().map(|w| w.as_bytes()).collect(),
            activity: d.activity.clamp(0, i64::from(u32::MAX)) as u32,
        })
    }
}

fn is_key_byte_ok(w: &[u8]) -> bool {
    !w.is_empty() && !w.contains(&b' ') && !w.contains(&b'\n')
}

fn chars(b: &[u8]) -> usize {
    b.iter().filter(|&&x| (x & 0xC0) != 0x80).count()
}

/// The tier score of a key for a one-token query `p` (see [`crate::text::match_quality`]).
fn tier_score(kind: usize, p: &[u8], p_chars: usize, key: &[u8]) -> f32 {
    let exact = key == p;
    match kind {
        COMPACT if exact => 100.0,
        COMPACT => 70.0 + 10.0 * (p_chars as f32 / chars(key).max(1) as f32),
        ALT if exact => 90.0,
        ALT => 60.0,
        _ if exact => 50.0,
        _ => 40.0,
    }
}

fn bonus(activity: u32) -> f32 {
    text::activity_bonus(i64::from(activity))
}

/// Documents (best first) by prefix.
type TopLists = HashMap<Box<[u8]>, Box<[u32]>>;

/// A set of documents with sorted key arrays; see the module doc.
#[derive(Default)]
struct Part {
    buf: Vec<u8>,
    /// Record start per document (increasing).
    offs: Vec<u32>,
    activity: Vec<u32>,
    dead: Vec<u64>,
    n_dead: usize,
    /// Word offsets sorted by key bytes (ties by offset), per key kind.
    keys: [Vec<u32>; 3],
    /// Documents sorted by id (ties by document index).
    by_id: Vec<u32>,
    /// Top lists per key kind, by prefix.
    tops: [TopLists; 3],
}

impl Part {
    fn len(&self) -> usize {
        self.offs.len()
    }

    fn live(&self) -> usize {
        self.len() - self.n_dead
    }

    fn is_dead(&self, doc: u32) -> bool {
        self.dead[doc as usize / 64] & (1 << (doc % 64)) != 0
    }

    fn kill(&mut self, doc: u32) {
        if !self.is_dead(doc) {
            self.dead[doc as usize / 64] |= 1 << (doc % 64);
            self.n_dead += 1;
        }
    }

    fn id(&self, doc: u32) -> &[u8] {
        let o = self.offs[doc as usize] as usize;
        let n = self.buf[o] as usize;
        &self.buf[o + 1..o + 1 + n]
    }

    fn flags_at(&self, doc: u32) -> (u8, usize) {
        let o = self.offs[doc as usize] as usize;
        let n = self.buf[o] as usize;
        (self.buf[o + 1 + n], o + 2 + n)
    }

    fn word_at(&self, off: u32) -> &[u8] {
        let rest = &self.buf[off as usize..];
        let end = rest
            .iter()
            .position(|&b| b == b' ' || b == b'\n')
            .unwrap_or(rest.len());
        &rest[..end]
    }

    fn words(&self, doc: u32) -> impl Iterator<Item = &[u8]> {
        let (_, start) = self.flags_at(doc);
        let rest = &self.buf[start..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        rest[..end].split(|&b| b == b' ').filter(|w| !w.is_empty())
    }

    /// The document as it was written (for rebuilds).
    fn doc_in(&self, doc: u32) -> DocIn<'_> {
        let (flags, _) = self.flags_at(doc);
        let words: Vec<&[u8]> = self.words(doc).collect();
        let mut i = 0;
        let mut take = |on: bool| -> &[u8] {
            if on && i < words.len() {
                i += 1;
                words[i - 1]
            } else {
                &[]
            }
        };
        let compact = take(flags & HAS_COMPACT != 0);
        let alt = take(flags & HAS_ALT != 0);
        DocIn {
            id: self.id(doc),
            compact,
            alt,
            words: words.clone(),
            activity: self.activity[doc as usize],
        }
    }

    fn doc_of(&self, off: u32) -> u32 {
        (self.offs.partition_point(|&o| o <= off) - 1) as u32
    }

    /// Entries of `kind` whose key starts with `p`.
    fn range(&self, kind: usize, p: &[u8]) -> (usize, usize) {
        let keys = &self.keys[kind];
        let lo = keys.partition_point(|&o| self.word_at(o) < p);
        let n = keys[lo..].partition_point(|&o| self.word_at(o).starts_with(p));
        (lo, lo + n)
    }

    /// Documents (live or dead) with this id.
    fn find_id(&self, id: &[u8]) -> Vec<u32> {
        let lo = self.by_id.partition_point(|&d| self.id(d) < id);
        self.by_id[lo..]
            .iter()
            .take_while(|&&d| self.id(d) == id)
            .copied()
            .collect()
    }

    /// Appends documents: writes their records and merges their keys into the sorted arrays.
    fn add(&mut self, docs: &[DocIn<'_>]) {
        let mut new: [Vec<u32>; 3] = Default::default();
        let mut new_ids: Vec<u32> = Vec::with_capacity(docs.len());
        for d in docs {
            if d.id.len() > 255 || self.buf.len() > (u32::MAX as usize) - 4096 {
                continue;
            }
            let doc = self.offs.len() as u32;
            self.offs.push(self.buf.len() as u32);
            self.activity.push(d.activity);
            if self.dead.len() * 64 <= doc as usize {
                self.dead.push(0);
            }
            self.buf.push(d.id.len() as u8);
            self.buf.extend_from_slice(d.id);
            let has_c = is_key_byte_ok(d.compact);
            let has_a = is_key_byte_ok(d.alt);
            let flags =
                b'0' | if has_c { HAS_COMPACT } else { 0 } | if has_a { HAS_ALT } else { 0 };
            self.buf.push(flags);
            let mut first = true;
            let mut write = |buf: &mut Vec<u8>, w: &[u8]| -> u32 {
                if !first {
                    buf.push(b' ');
                }
                first = false;
                let off = buf.len() as u32;
                buf.extend_from_slice(w);
                off
            };
            if has_c {
                let off = write(&mut self.buf, d.compact);
                new[COMPACT].push(off);
                new[WORD].push(off);
            }
            if has_a {
                let off = write(&mut self.buf, d.alt);
                new[ALT].push(off);
                if d.alt != d.compact {
                    new[WORD].push(off);
                }
            }
            for w in &d.words {
                if !is_key_byte_ok(w) || (has_c && *w == d.compact) || (has_a && *w == d.alt) {
                    continue;
                }
                let off = write(&mut self.buf, w);
                new[WORD].push(off);
            }
            self.buf.push(b'\n');
            new_ids.push(doc);
        }
        for (kind, mut add) in new.into_iter().enumerate() {
            add.sort_unstable_by(|&a, &b| self.word_at(a).cmp(self.word_at(b)).then(a.cmp(&b)));
            let old = std::mem::take(&mut self.keys[kind]);
            self.keys[kind] = merge_sorted(old, add, |&a, &b| {
                self.word_at(a).cmp(self.word_at(b)).then(a.cmp(&b))
            });
        }
        new_ids.sort_unstable_by(|&a, &b| self.id(a).cmp(self.id(b)).then(a.cmp(&b)));
        let old = std::mem::take(&mut self.by_id);
        self.by_id = merge_sorted(old, new_ids, |&a, &b| {
            self.id(a).cmp(self.id(b)).then(a.cmp(&b))
        });
    }

    /// Computes the top lists of every range longer than `scan_max` (see the module doc).
    fn build_tops(&mut self, cfg: &PrefixConfig) {
        for kind in [COMPACT, ALT, WORD] {
            let mut tops = HashMap::new();
            let n = self.keys[kind].len();
            self.visit(kind, 0, n, 0, cfg, &mut tops);
            self.tops[kind] = tops;
        }
    }

    fn visit(
        &self,
        kind: usize,
        lo: usize,
        hi: usize,
        depth: usize,
        cfg: &PrefixConfig,
        tops: &mut TopLists,
    ) {
        let keys = &self.keys[kind];
        let mut i = lo;
        // Keys equal to the parent prefix sort first and extend no further.
        while i < hi && self.word_at(keys[i]).len() <= depth {
            i += 1;
        }
        while i < hi {
            let key = self.word_at(keys[i]);
            let step = utf8_len(key[depth]).min(key.len() - depth);
            let prefix = &key[..depth + step];
            let n = keys[i..hi].partition_point(|&o| self.word_at(o).starts_with(prefix));
            let j = i + n;
            if n > cfg.scan_max {
                let p_chars = chars(prefix);
                let mut top = TopDocs::new(cfg.top_k);
                for &off in &keys[i..j] {
                    let doc = self.doc_of(off);
                    let s = tier_score(kind, prefix, p_chars, self.word_at(off))
                        + bonus(self.activity[doc as usize]);
                    top.offer(s, doc, self);
                }
                tops.insert(prefix.into(), top.into_docs(self).into_boxed_slice());
                self.visit(kind, i, j, depth + step, cfg, tops);
            }
            i = j;
        }
    }

    /// Approximate heap bytes.
    fn heap_bytes(&self) -> usize {
        let tops: usize = self
            .tops
            .iter()
            .flat_map(|m| m.iter())
            .map(|(k, v)| k.len() + v.len() * 4 + 48)
            .sum();
        self.buf.capacity()
            + self.offs.capacity() * 4
            + self.activity.capacity() * 4
            + self.dead.capacity() * 8
            + self.keys.iter().map(|k| k.capacity() * 4).sum::<usize>()
            + self.by_id.capacity() * 4
            + tops
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        _ => 1,
    }
}

fn merge_sorted<T: Copy>(
    a: Vec<T>,
    b: Vec<T>,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Vec<T> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if cmp(&b[j], &a[i]).is_lt() {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Best `k` documents of one part by (score desc, id asc), one entry per document.
struct TopDocs {
    k: usize,
    items: Vec<(f32, u32)>,
    worst: usize,
}

impl TopDocs {
    fn new(k: usize) -> TopDocs {
        TopDocs {
            k: k.max(1),
            items: Vec::new(),
            worst: 0,
        }
    }

    fn better(a: (f32, u32), b: (f32, u32), part: &Part) -> bool {
        a.0 > b.0 || (a.0 == b.0 && part.id(a.1) < part.id(b.1))
    }

    fn offer(&mut self, score: f32, doc: u32, part: &Part) {
        let item = (score, doc);
        if self.items.len() == self.k && !Self::better(item, self.items[self.worst], part) {
            return;
        }
        if let Some(pos) = self.items.iter().position(|x| x.1 == doc) {
            if Self::better(item, self.items[pos], part) {
                self.items[pos] = item;
            }
        } else if self.items.len() < self.k {
            self.items.push(item);
        } else {
            self.items[self.worst] = item;
        }
        self.worst = (0..self.items.len())
            .reduce(|w, i| {
                if Self::better(self.items[w], self.items[i], part) {
                    i
                } else {
                    w
                }
            })
            .unwrap_or(0);
    }

    fn into_docs(mut self, part: &Part) -> Vec<u32> {
        self.items.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| part.id(a.1).cmp(part.id(b.1)))
        });
        self.items.into_iter().map(|(_, d)| d).collect()
    }
}

/// A candidate of a query: (score, type rank, id).
struct Cand<'a> {
    score: f32,
    rank: usize,
    kind: Collection,
    id: &'a [u8],
}

/// Best `limit` candidates across parts and types, ordered like [`crate::sort_hits`].
struct Collector<'a> {
    limit: usize,
    items: Vec<Cand<'a>>,
}

impl<'a> Collector<'a> {
    fn better(a: &Cand<'_>, b: &Cand<'_>) -> bool {
        a.score > b.score
            || (a.score == b.score && (a.rank < b.rank || (a.rank == b.rank && a.id < b.id)))
    }

    /// Holds `limit` candidates.
    fn full(&self) -> bool {
        self.items.len() >= self.limit
    }

    fn offer(&mut self, c: Cand<'a>) {
        if let Some(pos) = self
            .items
            .iter()
            .position(|x| x.rank == c.rank && x.id == c.id)
        {
            if Self::better(&c, &self.items[pos]) {
                self.items[pos] = c;
            }
            return;
        }
        if !self.full() {
            self.items.push(c);
            return;
        }
        let worst = (0..self.items.len())
            .reduce(|w, i| {
                if Self::better(&self.items[w], &self.items[i]) {
                    i
                } else {
                    w
                }
            })
            .unwrap_or(0);
        if Self::better(&c, &self.items[worst]) {
            self.items[worst] = c;
        }
    }
}

/// One type's base and delta.
#[derive(Default)]
struct TypeIndex {
    base: Part,
    delta: Part,
}

impl TypeIndex {
    fn parts(&self) -> [&Part; 2] {
        [&self.base, &self.delta]
    }

    fn needs_rebuild(&self, cfg: &PrefixConfig) -> bool {
        let pending = self.delta.len() + self.base.n_dead;
        pending > 0 && pending > (self.base.live() / 4).clamp(cfg.delta_min, cfg.delta_max)
    }

    /// A new base from every live document.
    fn rebuilt(&self, cfg: &PrefixConfig) -> TypeIndex {
        let mut docs: Vec<DocIn<'_>> = Vec::with_capacity(self.base.live() + self.delta.live());
        for p in self.parts() {
            for doc in 0..p.len() as u32 {
                if !p.is_dead(doc) {
                    docs.push(p.doc_in(doc));
                }
            }
        }
        let mut base = Part::default();
        base.add(&docs);
        base.build_tops(cfg);
        TypeIndex {
            base,
            delta: Part::default(),
        }
    }
}

/// Size and shape of the index (for diagnostics and the benchmark).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixStats {
    pub docs: usize,
    pub keys: usize,
    pub top_lists: usize,
    pub heap_bytes: usize,
}

/// The autocomplete prefix index of every covered collection; see the module doc.
pub struct PrefixIndex {
    cfg: PrefixConfig,
    types: Vec<(Collection, TypeIndex)>,
}

fn type_rank(c: Collection) -> usize {
    Collection::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(usize::MAX)
}

impl PrefixIndex {
    /// An empty index.
    pub fn new(cfg: PrefixConfig) -> PrefixIndex {
        PrefixIndex {
            cfg,
            types: Collection::ALL
                .into_iter()
                .filter(|c| covers(*c))
                .map(|c| (c, TypeIndex::default()))
                .collect(),
        }
    }

    /// An index of `docs` (documents of uncovered collections are ignored), built in one go.
    pub fn build(cfg: PrefixConfig, docs: &[PrefixDoc]) -> PrefixIndex {
        let mut ix = PrefixIndex::new(cfg);
        for (c, t) in &mut ix.types {
            let ins: Vec<DocIn<'_>> = docs
                .iter()
                .filter(|d| d.kind == *c)
                .filter_map(DocIn::of)
                .collect();
            t.base.add(&ins);
            t.base.build_tops(&cfg);
        }
        ix
    }

    fn type_mut(&mut self, c: Collection) -> Option<&mut TypeIndex> {
        self.types.iter_mut().find(|(k, _)| *k == c).map(|(_, t)| t)
    }

    /// Applies changes in order (documents become visible to [`PrefixIndex::query`] at once).
    /// Returns the collections whose delta has outgrown their base (see
    /// [`PrefixIndex::rebuild`]).
    pub fn apply(&mut self, ops: Vec<PrefixOp>) -> Vec<Collection> {
        // Upserts are appended per type at the end; a later op on the same id supersedes them.
        let mut pending: HashMap<Collection, Vec<Option<PrefixDoc>>> = HashMap::new();
        let mut at: HashMap<(Collection, String), usize> = HashMap::new();
        for op in ops {
            let (c, id) = match &op {
                PrefixOp::Upsert(d) => (d.kind, Some(d.id.clone())),
                PrefixOp::Delete(c, id) => (*c, Some(id.clone())),
                PrefixOp::Clear(c) => (*c, None),
            };
            let Some(t) = self.type_mut(c) else { continue };
            match id {
                None => {
                    *t = TypeIndex::default();
                    pending.remove(&c);
                    at.retain(|(k, _), _| *k != c);
                }
                Some(id) => {
                    for p in [&mut t.base, &mut t.delta] {
                        for d in p.find_id(id.as_bytes()) {
                            p.kill(d);
                        }
                    }
                    if let Some(i) = at.remove(&(c, id.clone()))
                        && let Some(v) = pending.get_mut(&c)
                    {
                        v[i] = None;
                    }
                    if let PrefixOp::Upsert(d) = op {
                        let v = pending.entry(c).or_default();
                        at.insert((c, id), v.len());
                        v.push(Some(d));
                    }
                }
            }
        }
        for (c, docs) in pending {
            let docs: Vec<PrefixDoc> = docs.into_iter().flatten().collect();
            let ins: Vec<DocIn<'_>> = docs.iter().filter_map(DocIn::of).collect();
            if let Some(t) = self.type_mut(c) {
                t.delta.add(&ins);
            }
        }
        let cfg = self.cfg;
        self.types
            .iter()
            .filter(|(_, t)| t.needs_rebuild(&cfg))
            .map(|(c, _)| *c)
            .collect()
    }

    /// A rebuilt index part for `c` (to be swapped in with [`PrefixIndex::install`]); built
    /// under a read lock, so queries go on meanwhile.
    pub fn rebuild(&self, c: Collection) -> Option<RebuiltType> {
        let t = self.types.iter().find(|(k, _)| *k == c)?;
        Some(RebuiltType {
            kind: c,
            index: t.1.rebuilt(&self.cfg),
        })
    }

    /// Swaps in a rebuilt type. The caller must not have applied changes to `c` since
    /// [`PrefixIndex::rebuild`] (the tantivy backend holds its commit lock across both).
    pub fn install(&mut self, r: RebuiltType) {
        if let Some(t) = self.type_mut(r.kind) {
            *t = r.index;
        }
    }

    /// Size and shape.
    pub fn stats(&self) -> PrefixStats {
        let mut s = PrefixStats::default();
        for (_, t) in &self.types {
            for p in t.parts() {
                s.docs += p.live();
                s.keys += p.keys.iter().map(Vec::len).sum::<usize>();
                s.top_lists += p.tops.iter().map(HashMap::len).sum::<usize>();
                s.heap_bytes += p.heap_bytes();
            }
        }
        s
    }

    /// The best `limit` documents of `cols` (uncovered collections are skipped) for the tiers
    /// ≥ 40 of [`crate::text::match_quality`], best first, as (collection, id); and whether
    /// `limit` of them matched by name or ticker (tiers ≥ 60), so that no word match of any
    /// collection can enter the top `limit`.
    pub fn query(
        &self,
        q: &NormQuery,
        cols: &[Collection],
        limit: usize,
    ) -> (Vec<(Collection, String)>, bool) {
        let limit = limit.max(1);
        let mut out = Collector {
            limit,
            items: Vec::new(),
        };
        let types: Vec<(Collection, &TypeIndex)> = self
            .types
            .iter()
            .filter(|(c, _)| cols.contains(c))
            .map(|(c, t)| (*c, t))
            .collect();
        let c = q.compact.as_bytes();
        for (kind, t) in &types {
            for p in t.parts() {
                self.source(p, *kind, COMPACT, c, limit, &mut out);
                self.source(p, *kind, ALT, c, limit, &mut out);
            }
        }
        // Word matches score at most 51: only needed when the name tiers left room.
        let names_full = out.full();
        if !names_full {
            for (kind, t) in &types {
                for p in t.parts() {
                    if q.tokens.len() == 1 {
                        self.source(p, *kind, WORD, q.tokens[0].as_bytes(), limit, &mut out);
                    } else {
                        words_all(p, *kind, q, &mut out);
                    }
                }
            }
        }
        let mut items = out.items;
        items.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.rank.cmp(&b.rank))
                .then_with(|| a.id.cmp(b.id))
        });
        let hits = items
            .into_iter()
            .map(|c| (c.kind, String::from_utf8_lossy(c.id).into_owned()))
            .collect();
        (hits, names_full)
    }

    /// Offers the best `limit` documents of `p` whose `kind` key starts with `prefix`.
    fn source<'a>(
        &self,
        p: &'a Part,
        c: Collection,
        kind: usize,
        prefix: &[u8],
        limit: usize,
        out: &mut Collector<'a>,
    ) {
        if prefix.is_empty() {
            return;
        }
        let rank = type_rank(c);
        let (lo, hi) = p.range(kind, prefix);
        if lo == hi {
            return;
        }
        if hi - lo > self.cfg.scan_max
            && limit <= self.cfg.top_k
            && let Some(list) = p.tops[kind].get(prefix)
        {
            let p_chars = chars(prefix);
            let mut taken = 0;
            let mut offered: Vec<Cand<'a>> = Vec::with_capacity(limit);
            for &doc in list.iter() {
                if p.is_dead(doc) {
                    continue;
                }
                // The list holds each document once, at its best key in the range; recompute
                // that score from the document's keys.
                let best = best_key_score(p, doc, kind, prefix, p_chars);
                offered.push(Cand {
                    score: best + bonus(p.activity[doc as usize]),
                    rank,
                    kind: c,
                    id: p.id(doc),
                });
                taken += 1;
                if taken == limit {
                    break;
                }
            }
            if taken == limit {
                for cand in offered {
                    out.offer(cand);
                }
                return;
            }
        }
        let p_chars = chars(prefix);
        for &off in &p.keys[kind][lo..hi] {
            let doc = p.doc_of(off);
            if p.is_dead(doc) {
                continue;
            }
            let s =
                tier_score(kind, prefix, p_chars, p.word_at(off)) + bonus(p.activity[doc as usize]);
            out.offer(Cand {
                score: s,
                rank,
                kind: c,
                id: p.id(doc),
            });
        }
    }
}

/// The best tier score of a document's `kind` keys for the one-token query `prefix`.
fn best_key_score(p: &Part, doc: u32, kind: usize, prefix: &[u8], p_chars: usize) -> f32 {
    let (flags, _) = p.flags_at(doc);
    let mut words = p.words(doc);
    let keys: Vec<&[u8]> = match kind {
        COMPACT => words
            .next()
            .filter(|_| flags & HAS_COMPACT != 0)
            .into_iter()
            .collect(),
        ALT => {
            if flags & HAS_COMPACT != 0 {
                words.next();
            }
            words
                .next()
                .filter(|_| flags & HAS_ALT != 0)
                .into_iter()
                .collect()
        }
        _ => words.collect(),
    };
    keys.into_iter()
        .filter(|k| k.starts_with(prefix))
        .map(|k| tier_score(kind, prefix, p_chars, k))
        .fold(0.0, f32::max)
}

/// Word tier of a multi-token query: scans the smallest token range of `p` and checks every
/// token against the document's words (tier 40–50 of [`crate::text::match_quality`]).
fn words_all<'a>(p: &'a Part, c: Collection, q: &NormQuery, out: &mut Collector<'a>) {
    let ranges: Vec<(usize, usize)> = q
        .tokens
        .iter()
        .map(|t| p.range(WORD, t.as_bytes()))
        .collect();
    let Some(&(lo, hi)) = ranges.iter().min_by_key(|(lo, hi)| hi - lo) else {
        return;
    };
    let n = q.tokens.len() as f32;
    let rank = type_rank(c);
    let mut last_doc = u32::MAX;
    for &off in &p.keys[WORD][lo..hi] {
        let doc = p.doc_of(off);
        if doc == last_doc || p.is_dead(doc) {
            continue;
        }
        last_doc = doc;
        let mut exact = 0usize;
        let mut all = true;
        for t in &q.tokens {
            let t = t.as_bytes();
            let mut pre = false;
            let mut ex = false;
            for w in p.words(doc) {
                if w == t {
                    ex = true;
                    break;
                }
                pre |= w.starts_with(t);
            }
            if ex {
                exact += 1;
            } else if !pre {
                all = false;
                break;
            }
        }
        if !all {
            continue;
        }
        out.offer(Cand {
            score: 40.0 + 10.0 * exact as f32 / n + bonus(p.activity[doc as usize]),
            rank,
            kind: c,
            id: p.id(doc),
        });
    }
}

/// A rebuilt type, ready for [`PrefixIndex::install`].
pub struct RebuiltType {
    kind: Collection,
    index: TypeIndex,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: Collection, id: &str, name: &str, ticker: &str, activity: i64) -> PrefixDoc {
        let mut words = text::name_words(name);
        for w in text::name_words(ticker) {
            if !words.contains(&w) {
                words.push(w);
            }
        }
        PrefixDoc {
            kind,
            id: id.into(),
            compact: text::compact(name),
            alt: text::compact(ticker),
            words,
            activity,
        }
    }

    fn ids(ix: &PrefixIndex, q: &str, limit: usize) -> Vec<String> {
        ix.query(&NormQuery::parse(q).unwrap(), &Collection::ALL, limit)
            .0
            .into_iter()
            .map(|(_, id)| id)
            .collect()
    }

    fn small() -> PrefixConfig {
        PrefixConfig {
            scan_max: 2,
            top_k: 4,
            delta_min: 3,
            delta_max: 3,
        }
    }

    /// Many names sharing prefixes, with distinct activities.
    fn corpus() -> Vec<PrefixDoc> {
        let mut v = Vec::new();
        for i in 0..40 {
            v.push(doc(
                Collection::Characters,
                &format!("c{i:02}"),
                &format!("Black{} Widow", ["", "a", "bird", "smith"][i % 4]),
                "",
                i as i64 * 7 % 41,
            ));
        }
        v.push(doc(Collection::Alliances, "a1", "Black Legion.", "BL", 5));
        v.push(doc(Collection::Systems, "s1", "O-IVNH", "", 0));
        v
    }

    /// The answer computed by brute force over every document with the shared scoring.
    fn brute(docs: &[PrefixDoc], q: &str, limit: usize) -> Vec<String> {
        let q = NormQuery::parse(q).unwrap();
        let mut scored: Vec<(f32, usize, String)> = docs
            .iter()
            .filter_map(|d| {
                let words: Vec<&str> = d.words.iter().map(String::as_str).collect();
                let m = text::match_quality(
                    &q,
                    text::MatchFields {
                        compact: &d.compact,
                        alt: &d.alt,
                        words: &words,
                    },
                );
                (m >= 40.0).then(|| {
                    (
                        m + text::activity_bonus(d.activity),
                        type_rank(d.kind),
                        d.id.clone(),
                    )
                })
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        scored.into_iter().take(limit).map(|x| x.2).collect()
    }

    #[test]
    fn top_lists_agree_with_brute_force() {
        let docs = corpus();
        for cfg in [small(), PrefixConfig::default()] {
            let ix = PrefixIndex::build(cfg, &docs);
            for q in [
                "b", "bl", "black", "blackb", "w", "wid", "o-iv", "bl widow", "black l",
            ] {
                for limit in [1, 3, 4, 10] {
                    assert_eq!(
                        ids(&ix, q, limit),
                        brute(&docs, q, limit),
                        "{q} {limit} {cfg:?}"
                    );
                }
            }
        }
        assert!(PrefixIndex::build(small(), &docs).stats().top_lists > 0);
    }

    #[test]
    fn updates_deletes_and_rebuilds_stay_exact() {
        let mut docs = corpus();
        let mut ix = PrefixIndex::build(small(), &docs);
        // Raise the activity of a low-ranked document, delete the best, rename one.
        let mut ops = Vec::new();
        let i = docs.iter().position(|d| d.id == "c03").unwrap();
        docs[i].activity = 10_000;
        ops.push(PrefixOp::Upsert(docs[i].clone()));
        let best = brute(&docs, "black", 1)[0].clone();
        docs.retain(|d| d.id != best);
        ops.push(PrefixOp::Delete(Collection::Characters, best));
        let j = docs.iter().position(|d| d.id == "c10").unwrap();
        docs[j] = doc(Collection::Characters, "c10", "Zebra Crossing", "", 3);
        ops.push(PrefixOp::Upsert(docs[j].clone()));
        let rebuild = ix.apply(ops);
        for q in ["black", "b", "zebra", "bl widow"] {
            assert_eq!(ids(&ix, q, 4), brute(&docs, q, 4), "{q} before rebuild");
        }
        assert_eq!(rebuild, vec![Collection::Characters]);
        let r = ix.rebuild(Collection::Characters).unwrap();
        ix.install(r);
        for q in ["black", "b", "zebra", "bl widow", "c"] {
            assert_eq!(ids(&ix, q, 4), brute(&docs, q, 4), "{q} after rebuild");
        }
        assert!(ids(&ix, "black", 40).iter().all(|id| id != "c10"));
        // Clearing a type empties it.
        ix.apply(vec![PrefixOp::Clear(Collection::Characters)]);
        assert_eq!(ids(&ix, "black", 4), vec!["a1".to_string()]);
    }

    #[test]
    fn unicode_prefixes_split_on_char_boundaries() {
        let docs: Vec<PrefixDoc> = (0..10)
            .map(|i| {
                doc(
                    Collection::Characters,
                    &format!("u{i}"),
                    &format!("Äbc{i} Ölm"),
                    "",
                    i,
                )
            })
            .collect();
        let ix = PrefixIndex::build(small(), &docs);
        assert_eq!(ids(&ix, "ä", 3), brute(&docs, "ä", 3));
        assert_eq!(ids(&ix, "öl", 3), brute(&docs, "öl", 3));
    }
}
