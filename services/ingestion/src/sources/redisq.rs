//! The legacy RedisQ source, for relays that still speak it (zKillboard's
//! own RedisQ was sunset on 2026-05-31).
//!
//! Each poll returns one package or `{"package": null}`. Packages without a
//! body (the format since 2025-12-01) are completed from ESI by id and hash.
//! RedisQ has no cursor: the server remembers the queue for about 3 h, and
//! everything written is idempotent, so a replayed package is a duplicate.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bs_domain::KillmailSource;
use bs_esi::EsiClient;
use bs_zkb::redisq::RedisqClient;
use bs_zkb::{Document, FetchError};
use tokio_util::sync::CancellationToken;

use super::{IngestCtx, Source, pause};
use crate::pipeline::{Prepared, metric};
use crate::store::{Batch, IngestionStore};

pub struct RedisqSource {
    pub client: RedisqClient,
    pub esi: EsiClient,
    /// Base of the error backoff.
    pub backoff: Duration,
}

#[async_trait]
impl Source for RedisqSource {
    fn name(&self) -> &'static str {
        "redisq"
    }

    async fn run(
        self: Box<Self>,
        ctx: Arc<IngestCtx>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut attempt = 0u32;
        while !shutdown.is_cancelled() {
            let doc = tokio::select! {
                d = self.client.listen() => d,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let now = ctx.clock.now();
            let prepared = match doc {
                Ok(Document::Empty) => {
                    attempt = 0;
                    // RedisQ allows 2 requests/s per IP; a relay that answers at once must not be hammered.
                    if !pause(Duration::from_millis(500), &shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Document::Killmail(doc)) => {
                    ctx.pipeline
                        .prepare_doc(b"", *doc, KillmailSource::Redisq, now)
                }
                Ok(Document::Reference {
                    killmail_id,
                    hash,
                    zkb,
                }) => {
                    if ctx
                        .store
                        .known_ids(&[killmail_id])
                        .await
                        .is_ok_and(|k| k.contains(&killmail_id))
                    {
                        metrics::counter!(metric::DUPLICATES, "source" => "redisq").increment(1);
                        continue;
                    }
                    match super::backfill::fetch_body_with(
                        &ctx,
                        &self.esi,
                        killmail_id,
                        &hash,
                        zkb,
                        KillmailSource::Redisq,
                        &shutdown,
                    )
                    .await
                    {
                        Some(p) => p,
                        None => return Ok(()),
                    }
                }
                Err(FetchError::Body(e)) => {
                    tracing::warn!(error = %e, "unparseable redisq package");
                    continue;
                }
                Err(e) => {
                    ctx.live.error(format!("redisq: {e}"), now);
                    let wait =
                        (self.backoff / 10 * 2u32.pow(attempt.min(6))).min(Duration::from_secs(60));
                    attempt += 1;
                    if !pause(wait, &shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            attempt = 0;
            let mut batch = Batch {
                upsert: true,
                ..Batch::default()
            };
            match prepared {
                Prepared::Accept(k) => batch.killmails.push(*k),
                Prepared::Reject(r) => batch.rejects.push(r),
                _ => continue,
            }
            // RedisQ does not replay a package, so a failed write is retried until it lands.
            let mut tries = 0u64;
            while let Err(e) = ctx.store.apply(batch.clone(), now).await {
                ctx.live.error(format!("store: {e}"), now);
                tries += 1;
                if !pause(Duration::from_millis(200 * tries.min(25)), &shutdown).await {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
