//! Fuzzes the parser every killmail document goes through (R2Z2 entries,
//! RedisQ packages, ESI/EVE Ref killmails): it must return a document or a
//! reason for any input, never panic. Seeds: `corpus/parse_document/`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bs_zkb::Document::Killmail(doc)) = bs_zkb::parse_document(data) {
        // A parsed body always serialises back (what the store writes as raw_data).
        let _ = doc.killmail.pilot_count();
        assert!(!doc.killmail.killmail_time.to_rfc3339().is_empty());
    }
    let _ = bs_zkb::parse::parse_history_day(data);
    let _ = bs_zkb::parse::parse_totals(data);
    let _ = bs_zkb::parse::parse_sequence(data);
});
