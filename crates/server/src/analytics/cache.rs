//! Each node keeps the indexes of the apps it is asked about in memory and,
//! before answering, reads the rows stored since it last looked (written by any
//! node). Applying a row is a union, so reading a row twice, or rows in any
//! order, is harmless. The least recently used apps are dropped beyond a bound;
//! a dropped app is read whole again on its next query.

use huiliu_domain::analytics::ActivityIndex;
use huiliu_store::{ActivityCursor, AppRecord, Store, StoreResult};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Apps whose indexes a node keeps at once by default (an index of a million
/// users over half a year is about 18 MB).
pub const DEFAULT_CACHED_APPS: usize = 32;

/// One app's index and how far it has read the store.
#[derive(Default)]
pub struct CachedIndex {
    pub index: ActivityIndex,
    pub cursor: ActivityCursor,
}

struct Slot {
    index: Arc<AsyncMutex<CachedIndex>>,
    used: Instant,
}

/// The indexes this node holds, by app.
#[derive(Clone)]
pub struct ActivityCache {
    apps: Arc<Mutex<HashMap<i64, Slot>>>,
    capacity: usize,
}

impl Default for ActivityCache {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CACHED_APPS)
    }
}

impl ActivityCache {
    /// A cache keeping at most `capacity` apps (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            apps: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    /// The app's index, brought up to date with the store. The guard keeps other
    /// requests for the same app waiting while this one reads (and computes).
    pub async fn fresh<S: Store>(
        &self,
        store: &S,
        app: &AppRecord,
    ) -> StoreResult<OwnedMutexGuard<CachedIndex>> {
        let index = {
            let mut apps = self
                .apps
                .lock()
                .expect("the cache map lock is never held across a panic");
            if !apps.contains_key(&app.store_key) && apps.len() >= self.capacity {
                // A query still holding an evicted index keeps it alive until it ends.
                if let Some(oldest) = apps.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k) {
                    apps.remove(&oldest);
                }
            }
            let slot = apps.entry(app.store_key).or_insert_with(|| Slot {
                index: Arc::default(),
                used: Instant::now(),
            });
            slot.used = Instant::now();
            slot.index.clone()
        };
        let mut cached = index.lock_owned().await;
        let update = store.activity_rows(app, cached.cursor).await?;
        if update.reset {
            cached.index = ActivityIndex::default();
        }
        for row in update.rows {
            cached.index.apply(row);
        }
        cached.cursor = update.cursor;
        Ok(cached)
    }

    /// How many apps are cached.
    pub fn len(&self) -> usize {
        self.apps
            .lock()
            .expect("the cache map lock is never held across a panic")
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
