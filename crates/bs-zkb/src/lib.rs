//! zKillboard and EVE Ref: clients, parsers and a local fake.
//!
//! * [`parse`] turns any killmail document BattleScope accepts (an ESI
//!   killmail with or without `zkb`, an EVE Ref record, an R2Z2 entry, a RedisQ
//!   package) into one typed [`parse::Document`], never panicking on bad input.
//! * [`r2z2`], [`history`], [`redisq`] and [`everef`] are thin HTTP clients
//!   that classify every response (entry, not-yet/expired 404, 429, 5xx, HTML
//!   error page) and leave retry policy to the caller, which owns the clock.
//! * [`fake::FakeZkb`] serves real killmails as R2Z2 entries with the
//!   documented quirks (gaps, re-publication, an advancing head, expiry, a
//!   lagging `sequence.json`, 429/403/HTML/5xx), plus history and EVE Ref
//!   archives, so the ingester can be tested end to end without the internet.
//!
//! Protocol facts: `shared/notes/eve-platform.md` §1–§5.

pub mod everef;
pub mod fake;
pub mod history;
pub mod http;
pub mod parse;
pub mod r2z2;
pub mod redisq;

pub use http::{FetchError, Pacer, user_agent};
pub use parse::{Document, DocumentFormat, KillmailDoc, ParseError, parse_document};
