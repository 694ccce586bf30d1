//! The activity index as the server uses it: a per-node cache of each app's
//! index that follows the store's rows, the rebuild from raw events, and the
//! background compaction that keeps the stored rows few.

mod cache;
mod compaction;
mod rebuild;

pub use cache::{ActivityCache, CachedIndex};
pub use compaction::{compact_app, run_compaction};
pub use rebuild::{rebuild_index, RebuildReport};
