//! Each node keeps every queried app's index in memory and, before answering,
//! reads the rows stored since it last looked (written by any node). Applying a
//! row is a union, so reading a row twice, or rows in any order, is harmless.

use huiliu_domain::analytics::ActivityIndex;
use huiliu_store::{ActivityCursor, AppRecord, Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One app's index and how far it has read the store.
#[derive(Default)]
pub struct CachedIndex {
    pub index: ActivityIndex,
    pub cursor: ActivityCursor,
    /// Rows applied since the cache was (re)loaded: a hint that compaction is due.
    pub rows_read: usize,
}

/// The indexes this node holds, by app.
#[derive(Default, Clone)]
pub struct ActivityCache {
    apps: Arc<Mutex<HashMap<i64, Arc<AsyncMutex<CachedIndex>>>>>,
}

impl ActivityCache {
    /// The app's index, brought up to date with the store. The guard keeps other
    /// requests for the same app waiting while this one reads (and computes).
    pub async fn fresh<S: Store>(
        &self,
        store: &S,
        app: &AppRecord,
    ) -> StoreResult<OwnedMutexGuard<CachedIndex>> {
        let slot = self
            .apps
            .lock()
            .expect("the cache map lock is never held across a panic")
            .entry(app.store_key)
            .or_default()
            .clone();
        let mut cached = slot.lock_owned().await;
        let update = store.activity_rows(app, cached.cursor).await?;
        if update.reset {
            cached.index = ActivityIndex::default();
            cached.rows_read = 0;
        }
        cached.rows_read += update.rows.len();
        for row in update.rows {
            cached.index.apply(row);
        }
        cached.cursor = update.cursor;
        Ok(cached)
    }

    /// Bytes held by all cached indexes (bitmaps and first-day tables).
    pub fn memory_bytes(&self) -> usize {
        let slots: Vec<_> = self
            .apps
            .lock()
            .expect("the cache map lock is never held across a panic")
            .values()
            .cloned()
            .collect();
        slots
            .iter()
            .filter_map(|slot| slot.try_lock().ok().map(|c| c.index.memory_bytes()))
            .sum()
    }
}
