//! Channels: the WebSocket fan-out ([`ws`]) and the webhook sender ([`webhook`]).

pub mod webhook;
pub mod ws;
