//! A small per-node cache whose entries count for a fixed time: records read
//! on almost every request (keys, points policies) cost one store read per
//! node and period instead of one per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    /// Past this size the cache starts over rather than grow without bound.
    limit: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, limit: usize) -> Self {
        Self {
            ttl,
            limit,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.entries()
            .get(key)
            .filter(|(_, read)| read.elapsed() < self.ttl)
            .map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries();
        if entries.len() >= self.limit {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        self.entries().retain(|k, (v, _)| keep(k, v));
    }
}
