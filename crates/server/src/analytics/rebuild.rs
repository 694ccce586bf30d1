//! Rebuilding an app's activity index from its raw events: after changing which
//! events count as activity, or to repair an index. The rebuilt rows replace the
//! rows written before the rebuild started; rows written by batches committed
//! meanwhile are kept, so ingest may go on.

use huiliu_domain::analytics::DeltaBuilder;
use huiliu_store::{AppRecord, Store, StoreResult};
use serde::Serialize;

/// Events read per page.
const PAGE: usize = 50_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RebuildReport {
    pub events: u64,
    pub active_users: u64,
    pub rows: u64,
}

/// Rebuilds the index; `progress` is called with the number of events read so far.
pub async fn rebuild_index<S: Store>(
    store: &S,
    app: &AppRecord,
    mut progress: impl FnMut(u64),
) -> StoreResult<RebuildReport> {
    let mark = store.rebuild_mark(app).await?;
    let mut builder = DeltaBuilder::new(app.timezone.zone(), &app.analytics);
    let mut after = 0;
    let mut events = 0u64;
    loop {
        let page = store.scan_events(app, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            builder.add(event.user_index, event.time_us, &event.name);
        }
        events += page.len() as u64;
        progress(events);
    }
    let delta = builder.finish();
    let report = RebuildReport {
        events,
        active_users: delta.active_users,
        rows: delta.bitmaps.len() as u64,
    };
    store.replace_activity(app, &mark, delta.bitmaps).await?;
    Ok(report)
}
