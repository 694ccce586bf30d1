//! The one ingest path: HTTP batches and file imports both come through here,
//! so both apply the same validation, dedupe and bookkeeping.

use huiliu_domain::events::{dedupe_within_batch, parse_event, EventSource, ValidEvent};
use huiliu_domain::messages::tracking_code_in;
use huiliu_domain::time::to_micros;
use huiliu_domain::FieldError;
use huiliu_store::{AppRecord, Store, StoreResult};
use jiff::Timestamp;

/// One event refused by validation, with its position in the batch (or line in a file).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub index: usize,
    pub error: FieldError,
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejection>,
}

/// Checks every item (each the JSON text of one event, tagged with its position),
/// drops repeats within the batch and stores the rest in one transaction.
pub async fn ingest_raw_events<S: Store>(
    store: &S,
    app: &AppRecord,
    source: EventSource,
    items: &[(usize, &str)],
    now: Timestamp,
) -> StoreResult<BatchReport> {
    let (valid, rejected) = validate(items, now);
    let (unique, repeats) = dedupe_within_batch(valid);
    let events: Vec<ValidEvent> = unique.into_iter().map(|(_, event)| event).collect();
    // Launches from a message's card mark the message opened (after the events
    // commit; marking is idempotent, so a replayed batch changes nothing).
    let opens: Vec<_> = events
        .iter()
        .filter_map(|e| {
            tracking_code_in(e.name.as_str(), &e.props)
                .map(|code| (e.user_id.clone(), code, to_micros(e.time)))
        })
        .collect();
    let outcome = store.ingest_events(app, source, events).await?;
    if !opens.is_empty() {
        store.mark_opened(app, &opens).await?;
    }
    Ok(BatchReport {
        accepted: outcome.accepted,
        duplicates: outcome.duplicates + repeats,
        rejected,
    })
}

fn validate(items: &[(usize, &str)], now: Timestamp) -> (Vec<(usize, ValidEvent)>, Vec<Rejection>) {
    let mut valid = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for &(index, raw) in items {
        match parse_event(raw, now) {
            Ok(event) => valid.push((index, event)),
            Err(error) => rejected.push(Rejection { index, error }),
        }
    }
    (valid, rejected)
}
