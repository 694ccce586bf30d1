//! Every batch of events writes one packed index row; compaction opens packed
//! rows and merges their bitmaps into one row per (day, kind, event), so that
//! loading an index reads about one row per day and kind. Any node may run it; on PostgreSQL an advisory lock
//! lets one node at a time work on an app.

use huiliu_store::{AppRecord, Store, StoreResult};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Packed batch rows opened per transaction: bounds how long one compaction
/// holds the writer (SQLite) or its locks.
const ROWS_PER_ROUND: usize = 256;

/// How often each node looks for rows to merge.
pub const COMPACTION_INTERVAL: Duration = Duration::from_secs(15);

/// Merges all of an app's packed rows; returns how many were merged.
pub async fn compact_app<S: Store>(store: &S, app: &AppRecord) -> StoreResult<usize> {
    let mut merged = 0;
    loop {
        let round = store.compact_activity(app, ROWS_PER_ROUND).await?;
        merged += round;
        if round < ROWS_PER_ROUND {
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
