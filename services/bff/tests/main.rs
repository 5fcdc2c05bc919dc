//! Integration tests of the BFF: one binary, one shared test world (see `world`).
//!
//! * `http`: every page and API route on real data, degradation without search;
//! * `openapi`: the document matches the routes;
//! * `browser`: headless Chromium through chromedriver (skipped with a notice when missing,
//!   mandatory under `CI=true`);
//! * `notifications`: the notification proxy, page, forms and WebSockets in a world of its
//!   own (authentication with the fake SSO, notification, two BFFs), and its browser test;
//! * `account`: login, characters, role-aware navigation and 403 pages, CSRF on every form,
//!   against the authentication service and the fake EVE SSO (a world of its own), with the
//!   browser test (log in, link, set primary, an admin denies the alliance);
//! * `admin`: the `/admin` pages' forms (accounts, roles, gating, ingestion, audit);
//! * `auth_relay`: split mode's relay of login and account paths to the authentication service.

mod account;
mod admin;
mod auth_relay;
mod browser;
mod http;
mod notifications;
mod openapi;
mod world;
