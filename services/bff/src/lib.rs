//! The BFF (backend for frontend) and the server-rendered web UI.
//!
//! One router, merged at the root of the listener in all-in-one mode next to the
//! user-facing part of the authentication router (`/auth/*`, `/me*`, `/authorize`; its
//! admin API lives under `/services/authentication`):
//!
//! * `/api/*`: the JSON API for the UI and for API users ([`api`], described by
//!   `/api/openapi.json`, see [`openapi`]);
//! * `/`, `/battles…`, `/intel…`, `/search`, `/systems/{id}`, `/types/{id}`, `/dashboard`,
//!   `/characters`, `/admin/*`: HTML pages rendered on the server with askama ([`pages`]),
//!   SVG charts drawn in Rust ([`svg`]);
//! * `/static/*`: the small CSS and JS, embedded in the binary.
//!
//! The BFF keeps no state of its own: it reads the other services through
//! [`clients::Upstreams`] (in-process or HTTP, the same type) with short-TTL caches.
//!
//! Architecture invariants: **no page needs JavaScript to show its data** (JS only adds
//! live updates, autocomplete and sorting); **a missing or failing service degrades the
//! page with a message, never a 500**; nothing is fetched from a CDN except EVE images,
//! and pages stay readable when those fail.

pub mod api;
pub mod auth;
pub mod auth_relay;
pub mod clients;
pub mod intel;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod openapi;
pub mod pages;
pub mod svg;
pub mod swr;
pub mod view;

use std::sync::Arc;

use axum::Router;
use bs_config::{Config, ServiceName};
use bs_runtime::{ServiceContext, ServiceHandle};

pub use clients::{CacheTtls, Upstreams};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub upstreams: Upstreams,
    pub gate: auth::Gate,
    pub images: view::Images,
    pub clock: Arc<dyn bs_runtime::Clock>,
    /// Rendered report pages by (battle, full view, logged in): the largest report is served
    /// from here under load, refreshed in the background every couple of seconds.
    pub report_pages: swr::Swr<(i64, bool, bool), axum::body::Bytes>,
}

/// The whole router: API, pages and static files.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(notify::routes())
        .merge(api::routes())
        .merge(lifecycle::routes())
        // Pages ask the authentication service who is looking once per request.
        .merge(pages::routes().layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::with_viewer,
        )))
        .with_state(state)
}

/// Builds the state from a service context.
pub fn state(ctx: &ServiceContext) -> AppState {
    AppState {
        config: Arc::clone(&ctx.config),
        upstreams: Upstreams::new(ctx.services.clone(), CacheTtls::default()),
        gate: auth::Gate::new(ctx.services.clone(), ctx.config.web.public_pages),
        images: view::Images::new(&ctx.config.web.image_url),
        clock: Arc::clone(&ctx.clock),
        report_pages: swr::Swr::new(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(60),
            500,
        ),
    }
}

/// Starts the BFF. It has no database and no background task; it must start after the
/// services it calls are registered in `ctx.services` (they are looked up per request, so a
/// service registered later is picked up too).
pub async fn start(ctx: &ServiceContext) -> anyhow::Result<ServiceHandle> {
    Ok(ServiceHandle::new(ServiceName::Bff, router(state(ctx))))
}
