//! `return_to` sanitising: only same-origin relative paths survive.
//!
//! Browsers are lenient in ways that turn "a path" into "another site": `//evil`,
//! `/\evil` (backslash is a slash to WHATWG parsers), tabs and newlines stripped from the
//! middle of URLs, and percent-encoded forms of all of these that some later layer may
//! decode. So the rules are deliberately narrow: printable ASCII only, must start with
//! a single `/`, no backslash, and the same checks after every round of
//! percent-decoding. The result is then resolved against a dummy origin and must stay
//! on it. The caller stores the value in the server-side `state` record, never reads it
//! back from the callback query, and falls back to `/` on `None`.

use url::Url;

const MAX_LEN: usize = 2048;
/// Decoding rounds before giving up (`%25252F…` nests are an attack, not a path).
const MAX_DECODE_ROUNDS: usize = 4;
const DUMMY_ORIGIN: &str = "https://return-to.invalid";

/// The path (with query and fragment) to redirect to, or `None` if `input` is not a
/// same-origin relative path.
pub fn safe_return_to(input: &str) -> Option<String> {
    if input.is_empty() || input.len() > MAX_LEN {
        return None;
    }
    let mut layer = input.to_owned();
    let mut rounds = 0;
    loop {
        if !layer_is_safe(&layer) {
            return None;
        }
        let decoded = percent_decode(&layer)?;
        if decoded == layer {
            break;
        }
        rounds += 1;
        if rounds > MAX_DECODE_ROUNDS {
            return None;
        }
        layer = decoded;
    }
    let base = Url::parse(DUMMY_ORIGIN).ok()?;
    let joined = base.join(input).ok()?;
    if joined.origin() != base.origin() || !joined.path().starts_with('/') {
        return None;
    }
    let path_and_more = &joined[url::Position::BeforePath..];
    // The serialised form must itself pass (normalisation must not create `//`).
    layer_is_safe(path_and_more).then(|| path_and_more.to_owned())
}

fn layer_is_safe(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next() == Some('/')
        && !matches!(chars.next(), Some('/' | '\\'))
        && s.chars().all(|c| c.is_ascii_graphic() && c != '\\')
}

/// One round of percent-decoding; `None` if the bytes are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(s.as_bytes())).ok()
}

fn percent_decode_bytes(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut iter = input.iter().copied().peekable();
    while let Some(b) = iter.next() {
        if b == b'%' {
            let mut probe = iter.clone();
            if let (Some(h), Some(l)) = (probe.next(), probe.next())
                && let (Some(h), Some(l)) = (hex_val(h), hex_val(l))
            {
                out.push(h << 4 | l);
                iter = probe;
                continue;
            }
        }
        out.push(b);
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
