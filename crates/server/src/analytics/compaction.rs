//! Every batch of events writes a few small index rows; compaction merges the
//! rows of each (day, kind, event) into one so that loading an index reads about
//! one row per day and kind. Any node may run it; on PostgreSQL an advisory lock
//! lets one node at a time work on an app.

use huiliu_store::{AppRecord, Store, StoreResult};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Keys merged per transaction: bounds how long one compaction holds the writer.
const KEYS_PER_ROUND: usize = 64;

/// How often each node looks for rows to merge.
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(15);

/// Merges all of an app's split rows; returns how many keys were merged.
pub async fn compact_app<S: Store>(store: &S, app: &AppRecord) -> StoreResult<usize> {
    let mut merged = 0;
    loop {
        let round = store.compact_activity(app, KEYS_PER_ROUND).await?;
        merged += round;
        if round < KEYS_PER_ROUND {
            return Ok(merged);
        }
    }
}

/// Compacts every app every [`COMPACTION_INTERVAL`] until `shutdown`.
pub async fn run_compaction<S: Store>(store: S, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(COMPACTION_INTERVAL) => {}
        }
        let apps = match store.list_apps().await {
            Ok(apps) => apps,
            Err(error) => {
                tracing::warn!(%error, "cannot list apps for index compaction");
                continue;
            }
        };
        for app in apps {
            if shutdown.is_cancelled() {
                return;
            }
            match compact_app(&store, &app).await {
                Ok(0) => {}
                Ok(keys) => tracing::debug!(app = %app.id, keys, "compacted the activity index"),
                Err(error) => tracing::warn!(app = %app.id, %error, "index compaction failed"),
            }
        }
    }
}
