//! The loop that judges trusted events against the earning rules and tasks:
//! woken when this node stores trusted events, and every second for events
//! other nodes stored (or a crash left queued). The store dequeues each event
//! in the transaction that awards it, so nodes may run this side by side.

use crate::background::drain;
use huiliu_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: u32 = 256;
const POLL: Duration = Duration::from_secs(1);

pub async fn run<S: Store>(store: S, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    loop {
        let store = &store;
        if !drain(
            "judging events for points",
            BATCH,
            &shutdown,
            |now, limit| store.process_awards(now, limit),
        )
        .await
        {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}
