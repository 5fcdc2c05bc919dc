//! The consumer loop every event-driven service uses.
//!
//! Poll a batch, hand it to the service, commit the batch only after the
//! handler succeeded. A handler error (database down, …) leaves the batch
//! uncommitted and retries it after a backoff, so nothing is lost; handlers
//! must therefore be idempotent (they are keyed by killmail or battle id). A
//! record that can never be processed (undecodable, invalid) is the handler's
//! to count and skip — it must not return an error for it, or the group stalls.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bs_bus::{Delivery, EventBus};
use tokio_util::sync::CancellationToken;

/// Tuning of one consumer loop.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    pub group: String,
    pub topics: Vec<String>,
    pub batch: usize,
    pub poll_timeout: Duration,
}

impl ConsumerOptions {
    pub fn new(group: &str, topics: &[&str]) -> Self {
        Self {
            group: group.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            batch: 500,
            poll_timeout: Duration::from_millis(500),
        }
    }
}

/// Runs until `shutdown`: poll → `handle(batch)` → commit.
pub async fn run_consumer<F, Fut>(
    bus: Arc<dyn EventBus>,
    options: ConsumerOptions,
    shutdown: CancellationToken,
    mut handle: F,
) where
    F: FnMut(Vec<Delivery>) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    let mut backoff = Duration::from_millis(200);
    let mut consumer = loop {
        match bus.subscribe(&options.group, &topics).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(group = %options.group, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    let mut pending: Option<Vec<Delivery>> = None;
    backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let batch = match pending.take() {
            Some(b) => b,
            None => {
                let polled = tokio::select! {
                    r = consumer.poll(options.batch, options.poll_timeout) => r,
                    _ = shutdown.cancelled() => break,
                };
                match polled {
                    Ok(b) if b.is_empty() => continue,
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(group = %options.group, error = %e, "poll failed; retrying");
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                }
            }
        };
        let n = batch.len() as u64;
        match handle(batch.clone()).await {
            Ok(()) => {
                if let Err(e) = consumer.commit(&batch).await {
                    // Not committed: the batch comes again later; the handler is idempotent.
                    tracing::warn!(group = %options.group, error = %e, "commit failed");
                }
                metrics::counter!("battlescope_consumer_records_total", "group" => options.group.clone()).increment(n);
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                metrics::counter!("battlescope_consumer_errors_total", "group" => options.group.clone()).increment(1);
                tracing::warn!(group = %options.group, error = %e, records = n, "handler failed; batch will be retried");
                pending = Some(batch);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    tracing::info!(group = %options.group, "consumer stopped");
}
