//! Backend-neutral bookkeeping for one ingest batch, so both stores apply the same rules.

use huiliu_domain::events::ValidEvent;

/// The users a batch mentions, sorted: a fixed order keeps row locks from deadlocking.
pub fn distinct_users(events: &[ValidEvent]) -> Vec<&str> {
    let mut users: Vec<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// What the raw-insert baseline of the benchmarks writes into: a bare copy of the
/// events table, or one with the same two indexes the events table keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTable {
    Bare,
    Indexed,
}

impl RawTable {
    /// The DDL for the indexes, for both dialects.
    pub fn index_statements(self) -> &'static [&'static str] {
        match self {
            RawTable::Bare => &[],
            RawTable::Indexed => &[
                "CREATE UNIQUE INDEX bench_raw_by_event_id ON bench_raw_events (app_seq, event_id)",
                "CREATE INDEX bench_raw_by_user ON bench_raw_events (app_seq, user_index, time_us)",
            ],
        }
    }
}

/// Dense indexes for the users of raw rows, in order of first sight, as ingest would give them.
pub fn raw_user_indexes(batches: &[Vec<ValidEvent>]) -> std::collections::HashMap<&str, i64> {
    let mut index_of = std::collections::HashMap::new();
    for event in batches.iter().flatten() {
        let next = index_of.len() as i64;
        index_of.entry(event.user_id.as_str()).or_insert(next);
    }
    index_of
}

/// The activity index rows for a batch's accepted events: `(user index, time, name)`.
pub fn activity_delta<'e>(
    app: &crate::AppRecord,
    accepted: impl IntoIterator<Item = (i64, i64, &'e str)>,
) -> huiliu_domain::analytics::ActivityDelta {
    let mut builder =
        huiliu_domain::analytics::DeltaBuilder::new(app.timezone.zone(), &app.analytics);
    for (index, time_us, name) in accepted {
        builder.add(index as u32, time_us, name);
    }
    builder.finish()
}
