//! A bounded, stable-Rust fuzzer for the killmail document parser, for CI.
//!
//! The coverage-guided target (`services/ingestion/fuzz`, cargo-fuzz) needs a
//! nightly toolchain; this runs the same checks on stable: it mutates the seed
//! corpus (bit flips, truncation, byte insertion and deletion, splicing two
//! seeds, JSON-aware token swaps) with a seeded generator for a fixed time and
//! fails if the parser ever panics.
//!
//! `cargo run --release -p bs-zkb --example fuzz_parse -- [SECONDS] [SEED]`

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TOKENS: &[&[u8]] = &[
    b"null",
    b"-1",
    b"0",
    b"1e309",
    b"\"\"",
    b"[]",
    b"{}",
    b"true",
    b"9223372036854775808",
    b"\"\\u0000\"",
    b"\"2021-13-45T99:99:99Z\"",
    b"-9223372036854775808",
    b"1.5",
    b"\"\xff\"",
];

fn check(data: &[u8]) {
    if let Ok(bs_zkb::Document::Killmail(doc)) = bs_zkb::parse_document(data) {
        let _ = doc.killmail.pilot_count();
        assert!(!doc.killmail.killmail_time.to_rfc3339().is_empty());
    }
    let _ = bs_zkb::parse::parse_history_day(data);
    let _ = bs_zkb::parse::parse_totals(data);
    let _ = bs_zkb::parse::parse_sequence(data);
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..8) {
        let len = data.len().max(1);
        match rng.random_range(0..6) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.truncate(rng.random_range(0..len)),
            2 => {
                let i = rng.random_range(0..=data.len());
                data.insert(i, rng.random());
            }
            3 if !data.is_empty() => {
                data.remove(rng.random_range(0..data.len()));
            }
            4 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let cut = rng.random_range(0..=data.len());
                let from = rng.random_range(0..=other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                // Replace a JSON value-ish span after a colon with a hostile token.
                if let Some(pos) = (0..data.len())
                    .filter(|&i| data[i] == b':')
                    .nth(rng.random_range(0..64))
                {
                    let end = data[pos + 1..]
                        .iter()
                        .position(|&b| b == b',' || b == b'}')
                        .map_or(data.len(), |e| pos + 1 + e);
                    let token = TOKENS[rng.random_range(0..TOKENS.len())];
                    data.splice(pos + 1..end, token.iter().copied());
                }
            }
        }
    }
    data
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0x5eed);
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../services/ingestion/fuzz/corpus/parse_document"
    );
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("seed corpus")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    seeds.push(b"{}".to_vec());
    let mut rng = StdRng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &seeds);
        if std::panic::catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
            let path = std::env::temp_dir().join(format!("bs-zkb-crash-{seed}-{runs}.bin"));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "parser panicked after {runs} inputs; input saved to {}",
                path.display()
            );
            std::process::exit(1);
        }
        runs += 1;
    }
    println!("fuzz_parse: {runs} inputs in {seconds}s (seed {seed}), no panic");
}
