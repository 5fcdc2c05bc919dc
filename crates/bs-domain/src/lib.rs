//! EVE domain types shared by every service.
//!
//! The killmail document is ESI's (`GET /killmails/{id}/{hash}/`), kept
//! field-for-field so a stored killmail can always be served back verbatim; the
//! zKillboard block (`zkb`) is optional because EVE Ref archives have none.
//! Everything here is plain data: no IO, no clock.

pub mod ids;
pub mod killmail;

pub use ids::{EntityKind, is_npc_character, is_npc_corporation};
pub use killmail::{Attacker, Item, Killmail, KillmailSource, Position, Victim, Zkb};
