//! Observability shared by every service: JSON logs, Prometheus metrics,
//! request ids, `/health` + `/ready` + `/metrics`, and graceful shutdown.
//!
//! Every service router goes through [`standard_layers`] (request id, access
//! log, HTTP metrics, panic → 500, body limit, timeout) and gets
//! [`ops_routes`] merged in, so the three operational endpoints are the same
//! everywhere.

mod health;
mod http_layers;
mod logging;
mod metrics_exporter;
mod shutdown;

pub use health::{ReadinessCheck, ReadyReport, ops_routes};
pub use http_layers::{REQUEST_ID_HEADER, standard_layers};
pub use logging::init_logging;
pub use metrics_exporter::{install_metrics, render_metrics};
pub use shutdown::shutdown_signal;
