//! Event ingest on SQLite: resolve user indexes, insert new events, move user summaries.
//! Runs inside the caller's `BEGIN IMMEDIATE` transaction, so it is alone in the file.

use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::time::to_micros;
use huiliu_store::batch::{activity_of_accepted, distinct_users};
use huiliu_store::{IngestOutcome, StoreResult};
use jiff::Timestamp;
use sqlx::{Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};

/// Rows per multi-row statement: few enough to stay far below SQLite's bind limit,
/// many enough that statement overhead vanishes; a fixed size keeps the statement cache warm.
const CHUNK: usize = 100;

/// `(?, ?, …), (?, ?, …)` for `rows` rows of `columns` values.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

pub(crate) async fn ingest(
    tx: &mut Transaction<'static, Sqlite>,
    app_seq: i64,
    source: EventSource,
    events: &[ValidEvent],
) -> StoreResult<IngestOutcome> {
    let users = distinct_users(events);
    let mut index_of = existing_indexes(tx, app_seq, &users).await?;
    let new_users: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| !index_of.contains_key(u))
        .collect();
    if !new_users.is_empty() {
        let next: i64 = sqlx::query_scalar(
            "UPDATE apps SET next_user_index = next_user_index + ? WHERE seq = ? RETURNING next_user_index - ?",
        )
        .bind(new_users.len() as i64)
        .bind(app_seq)
        .bind(new_users.len() as i64)
        .fetch_one(&mut **tx)
        .await?;
        for (offset, user) in new_users.iter().enumerate() {
            index_of.insert(user, (next as u32) + offset as u32);
        }
    }

    let indexed: Vec<(&ValidEvent, u32)> = events
        .iter()
        .map(|e| (e, index_of[e.user_id.as_str()]))
        .collect();
    let mut accepted_ids = HashSet::with_capacity(events.len());
    let accepted = insert_event_rows(
        tx,
        "events",
        app_seq,
        source,
        &indexed,
        Some(&mut accepted_ids),
    )
    .await?;

    // One upsert moves existing users' summaries and creates the new users.
    let activity = activity_of_accepted(events, &accepted_ids);
    let active: HashSet<&str> = activity.iter().map(|a| a.user_id).collect();
    let now = to_micros(Timestamp::now());
    let mut rows: Vec<(&str, Option<i64>, Option<i64>, i64)> = activity
        .iter()
        .map(|a| (a.user_id, Some(a.first_us), Some(a.last_us), a.count))
        .collect();
    rows.extend(
        new_users
            .iter()
            .filter(|u| !active.contains(*u))
            .map(|u| (*u, None, None, 0)),
    );
    for chunk in rows.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO users (app_seq, user_index, user_id, created_us, first_us, last_us, event_count)
             VALUES {}
             ON CONFLICT (app_seq, user_id) DO UPDATE SET
               first_us = min(coalesce(users.first_us, excluded.first_us), coalesce(excluded.first_us, users.first_us)),
               last_us = max(coalesce(users.last_us, excluded.last_us), coalesce(excluded.last_us, users.last_us)),
               event_count = users.event_count + excluded.event_count",
            placeholders(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for (user, first, last, count) in chunk {
            query = query
                .bind(app_seq)
                .bind(index_of[user] as i64)
                .bind(*user)
                .bind(now)
                .bind(*first)
                .bind(*last)
                .bind(*count);
        }
        query.execute(&mut **tx).await?;
    }

    Ok(IngestOutcome {
        accepted,
        duplicates: events.len() - accepted,
    })
}

async fn existing_indexes<'a>(
    tx: &mut Transaction<'static, Sqlite>,
    app_seq: i64,
    users: &[&'a str],
) -> StoreResult<HashMap<&'a str, u32>> {
    let mut found = HashMap::with_capacity(users.len());
    for chunk in users.chunks(CHUNK * 2) {
        let sql = format!(
            "SELECT user_id, user_index FROM users WHERE app_seq = ? AND user_id IN ({})",
            vec!["?"; chunk.len()].join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(app_seq);
        for user in chunk {
            query = query.bind(*user);
        }
        for (user_id, index) in query.fetch_all(&mut **tx).await? {
            if let Some(user) = chunk.iter().find(|u| **u == user_id) {
                found.insert(*user, index as u32);
            }
        }
    }
    Ok(found)
}

/// Inserts event rows into `table`. With `accepted_ids`, rows whose id the app
/// already has are skipped and the ids actually inserted are collected; without
/// it, rows are inserted as they are (the raw baseline).
pub(crate) async fn insert_event_rows(
    tx: &mut Transaction<'static, Sqlite>,
    table: &str,
    app_seq: i64,
    source: EventSource,
    rows: &[(&ValidEvent, u32)],
    mut accepted_ids: Option<&mut HashSet<String>>,
) -> StoreResult<usize> {
    let received = to_micros(Timestamp::now());
    let mut inserted = 0;
    for chunk in rows.chunks(CHUNK) {
        let tail = if accepted_ids.is_some() {
            " ON CONFLICT (app_seq, event_id) DO NOTHING RETURNING event_id"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {table} (app_seq, event_id, user_index, name, time_us, props, source, received_us) VALUES {}{tail}",
            placeholders(chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for (event, index) in chunk {
            query = query
                .bind(app_seq)
                .bind(event.id.as_str())
                .bind(*index as i64)
                .bind(event.name.as_str())
                .bind(to_micros(event.time))
                .bind(event.props.as_str())
                .bind(source.as_str())
                .bind(received);
        }
        match accepted_ids.as_deref_mut() {
            Some(ids) => {
                let new_rows = query.fetch_all(&mut **tx).await?;
                inserted += new_rows.len();
                for row in new_rows {
                    ids.insert(row.try_get::<String, _>(0)?);
                }
            }
            None => inserted += query.execute(&mut **tx).await?.rows_affected() as usize,
        }
    }
    Ok(inserted)
}
