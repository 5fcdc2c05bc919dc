//! Channels: the WebSocket fan-out ([`ws`]), its long-poll relays for the BFF ([`relay`]) and
//! the webhook sender ([`webhook`]).

pub mod relay;
pub mod webhook;
pub mod ws;
