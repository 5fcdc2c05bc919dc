//! Integration tests of the BFF: one binary, one shared test world (see `world`).
//!
//! * `http`: every page and API route on real data, degradation without search;
//! * `openapi`: the document matches the routes;
//! * `browser`: headless Chromium through chromedriver (skipped with a notice when missing,
//!   mandatory under `CI=true`);
//! * `notifications`: the notification proxy, page, forms and WebSockets in a world of its
//!   own (authentication with the fake SSO, notification, two BFFs), and its browser test.

mod browser;
mod http;
mod notifications;
mod openapi;
mod world;
