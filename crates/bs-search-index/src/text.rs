//! Name normalisation and match-quality scoring shared by both backends.
//!
//! EVE names mix dashes, dots, apostrophes, brackets and digits (`O-IVNH`, `J105951`, `Hel'ls`,
//! `[GSF]`, `PILS.`). Users type what they see, or leave the punctuation out, so every name is
//! indexed as a set of plain lowercase *words*:
//!
//! * each alphanumeric run (`O-IVNH` → `o`, `ivnh`),
//! * each whitespace-separated chunk with its punctuation removed (`O-IVNH` → `oivnh`,
//!   `Hell's` → `hells`),
//! * the whole name compacted (`Hell's Echo` → `hellsecho`), and the same for the ticker.
//!
//! A query is normalised the same way ([`NormQuery`]). Both backends use their engine only to
//! *retrieve* candidates; the final order comes from [`match_quality`] plus a bounded activity
//! bonus ([`activity_bonus`]), so tantivy and Typesense rank the same candidates identically.
//! All functions here are pure.

/// Longest prefix (in characters) indexed as an edge n-gram; longer query prefixes are truncated.
pub const MAX_PREFIX_CHARS: usize = 20;

/// Lowercases and splits on every non-alphanumeric character.
pub fn alnum_runs(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Lowercase alphanumeric characters only: `O-IVNH` → `oivnh`, `[GSF]` → `gsf`.
pub fn compact(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The words a name is findable by (see the module doc), deduplicated, in first-seen order.
pub fn name_words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |w: String| {
        if !w.is_empty() && !out.contains(&w) {
            out.push(w);
        }
    };
    for chunk in s.split_whitespace() {
        for run in alnum_runs(chunk) {
            push(run);
        }
        push(compact(chunk));
    }
    push(compact(s));
    out
}

/// Edge n-grams (1..=[`MAX_PREFIX_CHARS`] characters) of one word.
pub fn edge_ngrams(word: &str) -> impl Iterator<Item = &str> {
    word.char_indices()
        .skip(1)
        .map(|(i, _)| i)
        .chain(std::iter::once(word.len()))
        .take(MAX_PREFIX_CHARS)
        .map(move |end| &word[..end])
}

/// Truncates a word to the longest indexed prefix.
pub fn prefix_key(word: &str) -> &str {
    match word.char_indices().nth(MAX_PREFIX_CHARS) {
        Some((i, _)) => &word[..i],
        None => word,
    }
}

/// Typo budget for a query token of this many characters: none below 4, one from 4, two from 8.
pub fn typo_budget(chars: usize) -> u8 {
    match chars {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// A normalised query: its words and its compact form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormQuery {
    /// Alphanumeric runs of the query, lowercased (`o-iv` → `o`, `iv`).
    pub tokens: Vec<String>,
    /// The whole query compacted (`o-iv` → `oiv`).
    pub compact: String,
}

impl NormQuery {
    /// Normalises user input; `None` when nothing searchable is left (empty, only punctuation).
    pub fn parse(q: &str) -> Option<NormQuery> {
        let tokens = alnum_runs(q);
        if tokens.is_empty() {
            return None;
        }
        Some(NormQuery {
            compact: tokens.concat(),
            tokens,
        })
    }
}

/// The fields of an indexed document that [`match_quality`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct MatchFields<'a> {
    /// Compacted display name.
    pub compact: &'a str,
    /// Compacted ticker (empty when the entity has none).
    pub alt: &'a str,
    /// Every indexed word (name words, ticker words, other searchable texts).
    pub words: &'a [&'a str],
}

/// How well a document matches a query, in tiers (higher is better, 0 = no match):
/// 100 exact name, 90 exact ticker, 70–80 name prefix, 60 ticker prefix, 40–50 every query token
/// is a word or a word prefix, 20–30 the whole name within the typo budget, 10–20 every token
/// matches a word within the typo budget.
pub fn match_quality(q: &NormQuery, doc: MatchFields<'_>) -> f32 {
    if doc.compact == q.compact {
        return 100.0;
    }
    if !doc.alt.is_empty() && doc.alt == q.compact {
        return 90.0;
    }
    if doc.compact.starts_with(&q.compact) {
        let ratio = q.compact.chars().count() as f32 / doc.compact.chars().count().max(1) as f32;
        return 70.0 + 10.0 * ratio;
    }
    if !doc.alt.is_empty() && doc.alt.starts_with(&q.compact) {
        return 60.0;
    }
    let n = q.tokens.len() as f32;
    let mut exact = 0usize;
    let mut all_prefix = true;
    for t in &q.tokens {
        if doc.words.iter().any(|w| w == t) {
            exact += 1;
        } else if !doc.words.iter().any(|w| w.starts_with(t.as_str())) {
            all_prefix = false;
            break;
        }
    }
    if all_prefix {
        return 40.0 + 10.0 * exact as f32 / n;
    }
    // The whole name within the typo budget (full name or the typed prefix of it).
    let budget = u32::from(typo_budget(q.compact.chars().count()));
    if budget > 0 && !doc.compact.is_empty() {
        let d =
            levenshtein(&q.compact, doc.compact).min(prefix_levenshtein(&q.compact, doc.compact));
        if d <= budget {
            return 30.0 - 5.0 * d as f32;
        }
    }
    let last = q.tokens.len() - 1;
    let mut distance_sum = 0u32;
    for (i, t) in q.tokens.iter().enumerate() {
        let budget = typo_budget(t.chars().count());
        if budget == 0 {
            // Short tokens must match exactly or as a prefix.
            if !doc.words.iter().any(|w| w.starts_with(t.as_str())) {
                return 0.0;
            }
            continue;
        }
        let best = doc
            .words
            .iter()
            .map(|w| {
                let full = levenshtein(t, w);
                if i == last {
                    full.min(prefix_levenshtein(t, w))
                } else {
                    full
                }
            })
            .min()
            .unwrap_or(u32::MAX);
        if best > u32::from(budget) {
            return 0.0;
        }
        distance_sum += best;
    }
    20.0 - 10.0 * (distance_sum as f32 / (2.0 * n)).min(1.0)
}

/// A bonus in `[0, 1)` that grows with activity, so activity only breaks ties within a tier.
pub fn activity_bonus(activity: i64) -> f32 {
    let a = activity.max(0) as f32;
    a / (a + 100.0)
}

/// Levenshtein distance with adjacent transpositions costing one (optimal string alignment).
pub fn levenshtein(a: &str, b: &str) -> u32 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    osa_table(&a, &b)
        .last()
        .and_then(|r| r.last())
        .copied()
        .unwrap_or(0)
}

/// Smallest distance between `a` and any prefix of `b` (typo while still typing).
pub fn prefix_levenshtein(a: &str, b: &str) -> u32 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    osa_table(&a, &b)
        .last()
        .and_then(|r| r.iter().min())
        .copied()
        .unwrap_or(0)
}

fn osa_table(a: &[char], b: &[char]) -> Vec<Vec<u32>> {
    let mut d = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i as u32;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j as u32;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = u32::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(q: &str, name: &str, ticker: &str) -> f32 {
        let words = name_words(&format!("{name} {ticker}"));
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        match_quality(
            &NormQuery::parse(q).unwrap(),
            MatchFields {
                compact: &compact(name),
                alt: &compact(ticker),
                words: &refs,
            },
        )
    }

    #[test]
    fn words_cover_punctuation_variants() {
        assert_eq!(name_words("O-IVNH"), ["o", "ivnh", "oivnh"]);
        assert_eq!(
            name_words("Hell's Echo"),
            ["hell", "s", "hells", "echo", "hellsecho"]
        );
        assert_eq!(name_words("[GSF]"), ["gsf"]);
        assert_eq!(name_words("PILS."), ["pils"]);
    }

    #[test]
    fn edge_ngrams_are_char_safe_and_capped() {
        assert_eq!(
            edge_ngrams("oivnh").collect::<Vec<_>>(),
            ["o", "oi", "oiv", "oivn", "oivnh"]
        );
        assert_eq!(edge_ngrams("äb").collect::<Vec<_>>(), ["ä", "äb"]);
        assert_eq!(edge_ngrams(&"x".repeat(40)).count(), MAX_PREFIX_CHARS);
        assert_eq!(prefix_key(&"y".repeat(40)).len(), MAX_PREFIX_CHARS);
    }

    #[test]
    fn quality_tiers_order_as_documented() {
        let exact = quality("O IVNH", "O-IVNH", "");
        let prefix = quality("o-iv", "O-IVNH", "");
        let word = quality("echo", "Hell's Echo", "");
        let typo = quality("jorumd", "Jorund", "");
        let none = quality("tama", "Jorund", "");
        assert_eq!(exact, 100.0);
        assert!(
            prefix > word && word > typo && typo > none,
            "{prefix} {word} {typo}"
        );
        assert_eq!(none, 0.0);
        assert_eq!(quality("[gsf]", "Goonswarm Federation", "CONDI"), 0.0);
        assert_eq!(quality("condi", "Goonswarm Federation", "CONDI"), 90.0);
    }

    #[test]
    fn short_tokens_get_no_typos() {
        assert_eq!(quality("ix", "Ix", ""), 100.0);
        assert_eq!(quality("iy", "Ix", ""), 0.0);
        assert_eq!(typo_budget(4), 1);
        assert_eq!(typo_budget(8), 2);
    }

    #[test]
    fn levenshtein_counts_transpositions_once() {
        assert_eq!(levenshtein("massacer", "massacre"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(prefix_levenshtein("pandemc", "pandemic"), 1);
        assert_eq!(prefix_levenshtein("pand", "pandemic"), 0);
    }

    #[test]
    fn activity_bonus_is_bounded_and_monotone() {
        assert_eq!(activity_bonus(-5), 0.0);
        assert!(activity_bonus(10) < activity_bonus(1000));
        assert!(activity_bonus(i64::MAX) <= 1.0);
    }
}
