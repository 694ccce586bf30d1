//! Event ingest on SQLite, on the writer thread inside one `BEGIN IMMEDIATE` transaction:
//! give unseen users their dense index, then insert the events whose id is new.

use crate::writer::to_store_error;
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::time::to_micros;
use huiliu_store::batch::{activity_delta, distinct_users};
use huiliu_store::{AppRecord, IngestOutcome, StoreResult};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

pub(crate) fn ingest(
    tx: &Connection,
    app: &AppRecord,
    source: EventSource,
    events: &[ValidEvent],
) -> StoreResult<IngestOutcome> {
    let app_seq = app.store_key;
    let index_of = resolve_user_indexes(tx, app_seq, &distinct_users(events))?;
    let received = to_micros(Timestamp::now());
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO events (app_seq, event_id, user_index, name, time_us, props, source, received_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (app_seq, event_id) DO NOTHING",
        )
        .map_err(to_store_error)?;
    // Trusted events some rule or task listens to are queued for judging in
    // this same transaction (see huiliu_store::earning).
    let award_events: std::collections::HashSet<String> = if source == EventSource::Server {
        let mut names = tx
            .prepare_cached(huiliu_store::earning::AWARD_EVENTS)
            .map_err(to_store_error)?;
        let found = names
            .query_map(params![app_seq], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(to_store_error)?;
        found
    } else {
        Default::default()
    };
    let mut accepted = Vec::with_capacity(events.len());
    for event in events {
        let index = index_of[event.user_id.as_str()];
        let time_us = to_micros(event.time);
        let inserted = insert
            .execute(params![
                app_seq,
                event.id.as_str(),
                index,
                event.name.as_str(),
                time_us,
                event.props.as_str(),
                source.as_str(),
                received,
            ])
            .map_err(to_store_error)?;
        if inserted == 1 {
            accepted.push((index, time_us, event.name.as_str()));
            if award_events.contains(event.name.as_str()) {
                tx.prepare_cached("INSERT INTO award_queue (app_seq, event_seq) VALUES (?1, ?2)")
                    .and_then(|mut q| q.execute(params![app_seq, tx.last_insert_rowid()]))
                    .map_err(to_store_error)?;
            }
        }
    }
    let outcome = IngestOutcome {
        accepted: accepted.len(),
        duplicates: events.len() - accepted.len(),
    };
    let delta = activity_delta(app, accepted);
    crate::activity::write_delta(tx, app_seq, &delta)?;
    Ok(outcome)
}

/// Finds each user's dense index, creating the users huiliu has not seen yet
/// with the app's next indexes (in the order given).
pub(crate) fn resolve_user_indexes<'a>(
    tx: &Connection,
    app_seq: i64,
    users: &[&'a str],
) -> StoreResult<HashMap<&'a str, i64>> {
    let mut find = tx
        .prepare_cached("SELECT user_index FROM users WHERE app_seq = ?1 AND user_id = ?2")
        .map_err(to_store_error)?;
    let mut index_of = HashMap::with_capacity(users.len());
    let mut unseen = Vec::new();
    for &user in users {
        match find
            .query_row(params![app_seq, user], |row| row.get::<_, i64>(0))
            .optional()
            .map_err(to_store_error)?
        {
            Some(index) => {
                index_of.insert(user, index);
            }
            None => unseen.push(user),
        }
    }
    if unseen.is_empty() {
        return Ok(index_of);
    }
    let next: i64 = tx
        .query_row(
            "SELECT next_user_index FROM apps WHERE seq = ?1",
            [app_seq],
            |row| row.get(0),
        )
        .map_err(to_store_error)?;
    let now = to_micros(Timestamp::now());
    let mut create = tx
        .prepare_cached(
            "INSERT INTO users (app_seq, user_index, user_id, created_us) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(to_store_error)?;
    for (offset, user) in unseen.iter().enumerate() {
        let index = next + offset as i64;
        create
            .execute(params![app_seq, index, user, now])
            .map_err(to_store_error)?;
        index_of.insert(user, index);
    }
    tx.execute(
        "UPDATE apps SET next_user_index = ?2 WHERE seq = ?1",
        params![app_seq, next + unseen.len() as i64],
    )
    .map_err(to_store_error)?;
    Ok(index_of)
}

/// Inserts the rows as they are: the raw baseline benchmarks compare against.
pub(crate) fn insert_plain_rows(
    tx: &Connection,
    table: &str,
    rows: &[ValidEvent],
    index_of: &HashMap<String, i64>,
) -> StoreResult<usize> {
    let received = to_micros(Timestamp::now());
    let mut insert = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} (app_seq, event_id, user_index, name, time_us, props, source, received_us)
             VALUES (0, ?1, ?2, ?3, ?4, ?5, 'server', ?6)"
        ))
        .map_err(to_store_error)?;
    for event in rows {
        insert
            .execute(params![
                event.id.as_str(),
                index_of[event.user_id.as_str()],
                event.name.as_str(),
                to_micros(event.time),
                event.props.as_str(),
                received
            ])
            .map_err(to_store_error)?;
    }
    Ok(rows.len())
}
