//! Graceful shutdown on SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM/SIGINT. Services stop taking work when
/// it is cancelled, finish or abandon in-flight work safely and commit offsets.
pub fn shutdown_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = term => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
        token.cancel();
    });
}
