//! The one integration-test binary of bs-notification.

mod fanout;
mod helpers;
mod kill9;
mod lifecycle;
mod matching;
mod service;
mod ssrf;
mod store;
mod webhook;
