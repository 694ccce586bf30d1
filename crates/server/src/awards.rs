//! The loop that judges trusted events against the earning rules and tasks:
//! woken when this node stores trusted events, and every second for events
//! other nodes stored (or a crash left queued). The store dequeues each event
//! in the transaction that awards it, so nodes may run this side by side.

use huiliu_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 256;
const POLL: Duration = Duration::from_secs(1);

pub async fn run<S: Store>(store: S, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    loop {
        loop {
            let now = huiliu_domain::time::to_micros(jiff::Timestamp::now());
            match store.process_awards(now, BATCH).await {
                Ok(n) if n < BATCH as usize => break,
                Ok(_) if shutdown.is_cancelled() => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "judging events for points failed; retrying shortly");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
