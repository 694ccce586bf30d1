//! The activity index on SQLite: delta rows written with each batch on the writer
//! thread, read incrementally by seq on the reader pool, merged by compaction.
//!
//! One writer means seqs become visible in order, so a reader's cursor is just
//! the last seq it read (the horizon is unused here).

use crate::writer::to_store_error;
use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{
    merge_packed, merge_rows, open_stored, pack_rows, resolve_first_active, ActivityDelta,
    BitmapKind, DayBitmap, PACKED_ROWS_KIND,
};
use huiliu_store::{
    sql, ActivityCursor, ActivityRows, FunnelColumns, ScannedEvent, StoreError, StoreResult,
};
use rusqlite::{params, Connection};
use sqlx::SqlitePool;

pub(crate) fn write_delta(tx: &Connection, app_seq: i64, delta: &ActivityDelta) -> StoreResult<()> {
    if delta.bitmaps.is_empty() {
        return Ok(());
    }
    tx.prepare_cached(
        "INSERT INTO activity_bitmaps (app_seq, day, kind, event, users) VALUES (?1, 0, ?2, '', ?3)",
    )
    .and_then(|mut insert| {
        insert.execute(params![app_seq, PACKED_ROWS_KIND, pack_rows(&delta.bitmaps)])
    })
    .map_err(to_store_error)?;
    Ok(())
}

fn insert_rows(tx: &Connection, app_seq: i64, rows: &[DayBitmap]) -> StoreResult<()> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO activity_bitmaps (app_seq, day, kind, event, users) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(to_store_error)?;
    for row in rows {
        insert
            .execute(params![
                app_seq,
                row.day.number(),
                row.kind.code(),
                row.event,
                row.users_bytes()
            ])
            .map_err(to_store_error)?;
    }
    Ok(())
}

type StoredRow = (i64, i32, i16, String, Vec<u8>);

pub(crate) async fn rows_after(
    reader: &SqlitePool,
    app_seq: i64,
    cursor: ActivityCursor,
) -> StoreResult<ActivityRows> {
    // One read transaction: the generation and the rows come from the same snapshot.
    let mut tx = reader.begin().await?;
    let (_, generation): (String, i64) = sqlx::query_as(sql::APP_INDEX_STATE)
        .bind(app_seq)
        .fetch_one(&mut *tx)
        .await?;
    let reset = generation != cursor.generation;
    let after = if reset { 0 } else { cursor.seq };
    let stored: Vec<StoredRow> = sqlx::query_as(
        "SELECT seq, day, kind, event, users FROM activity_bitmaps
         WHERE app_seq = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(app_seq)
    .bind(after)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let seq = stored.last().map_or(after, |row| row.0);
    Ok(ActivityRows {
        cursor: ActivityCursor {
            generation,
            seq,
            horizon: 0,
        },
        reset,
        rows: opened(stored)?,
    })
}

/// Rows as stored, with packed batches opened.
fn opened(stored: Vec<StoredRow>) -> StoreResult<Vec<DayBitmap>> {
    open_stored(
        stored
            .iter()
            .map(|(_, day, kind, event, users)| (*day, *kind, event.clone(), &users[..])),
    )
    .map_err(StoreError::internal)
}

/// Opens up to `max_packed` packed rows and merges their bitmaps into the one
/// merged row of each key; returns how many packed rows were consumed.
pub(crate) fn compact(tx: &Connection, app_seq: i64, max_packed: usize) -> StoreResult<usize> {
    let packed: Vec<(i64, Vec<u8>)> = tx
        .prepare_cached(sql::PACKED_ACTIVITY_ROWS)
        .and_then(|mut find| {
            find.query_map(params![app_seq, max_packed as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .map_err(to_store_error)?;
    for (seq, _) in &packed {
        delete_row(tx, *seq)?;
    }
    let (first_active, others): (Vec<_>, Vec<_>) =
        merge_packed(packed.iter().map(|(_, bytes)| &bytes[..]))
            .map_err(StoreError::internal)?
            .into_iter()
            .partition(|row| row.kind == BitmapKind::FirstActive);
    let mut merged = Vec::new();
    for row in others {
        let key = params![app_seq, row.day.number(), row.kind.code(), row.event];
        let existing: Vec<(i64, Vec<u8>)> = tx
            .prepare_cached(sql::ACTIVITY_ROWS_OF_KEY)
            .and_then(|mut read| {
                read.query_map(key, |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(to_store_error)?;
        let mut parts = vec![row.clone()];
        for (seq, bytes) in existing {
            parts.push(
                DayBitmap::from_stored(
                    row.day.number(),
                    row.kind.code(),
                    row.event.clone(),
                    &bytes,
                )
                .map_err(StoreError::internal)?,
            );
            delete_row(tx, seq)?;
        }
        merged.extend(merge_rows(parts));
    }
    if !first_active.is_empty() {
        // Candidates are resolved against every stored first-active row: each
        // user stays on their earliest day only.
        let stored: Vec<(i64, i32, Vec<u8>)> = tx
            .prepare_cached(sql::STORED_FIRST_ACTIVE)
            .and_then(|mut read| {
                read.query_map([app_seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            })
            .map_err(to_store_error)?;
        let mut stored_rows = Vec::with_capacity(stored.len());
        for (_, day, bytes) in &stored {
            stored_rows.push(
                DayBitmap::from_stored(*day, BitmapKind::FirstActive.code(), String::new(), bytes)
                    .map_err(StoreError::internal)?,
            );
        }
        for row in resolve_first_active(stored_rows, first_active) {
            for (seq, _, _) in stored.iter().filter(|(_, day, _)| *day == row.day.number()) {
                delete_row(tx, *seq)?;
            }
            if !row.users.is_empty() {
                merged.push(row);
            }
        }
    }
    insert_rows(tx, app_seq, &merged)?;
    Ok(packed.len())
}

fn delete_row(tx: &Connection, seq: i64) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM activity_bitmaps WHERE seq = ?1")
        .and_then(|mut delete| delete.execute([seq]))
        .map_err(to_store_error)?;
    Ok(())
}

pub(crate) async fn last_seq(reader: &SqlitePool, app_seq: i64) -> StoreResult<i64> {
    let max: Option<i64> =
        sqlx::query_scalar("SELECT max(seq) FROM activity_bitmaps WHERE app_seq = $1")
            .bind(app_seq)
            .fetch_one(reader)
            .await?;
    Ok(max.unwrap_or(0))
}

pub(crate) fn replace(
    tx: &Connection,
    app_seq: i64,
    up_to: i64,
    rows: &[DayBitmap],
) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM activity_bitmaps WHERE app_seq = ?1 AND seq <= ?2",
        params![app_seq, up_to],
    )
    .map_err(to_store_error)?;
    insert_rows(tx, app_seq, rows)?;
    tx.execute(
        "UPDATE apps SET index_generation = index_generation + 1 WHERE seq = ?1",
        [app_seq],
    )
    .map_err(to_store_error)?;
    Ok(())
}

pub(crate) async fn scan_events(
    reader: &SqlitePool,
    app_seq: i64,
    after_seq: i64,
    limit: usize,
) -> StoreResult<Vec<ScannedEvent>> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql::SCAN_EVENTS)
        .bind(app_seq)
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(reader)
        .await?;
    Ok(rows.into_iter().map(ScannedEvent::from_columns).collect())
}

/// Funnel events on a read-only connection of its own, on a blocking thread: a
/// funnel may read millions of rows, which the async pool hands over one row at a
/// time. The table is scanned in storage order (`NOT INDEXED`): the only index
/// that starts with the app is by user, and following it costs a random table
/// read per event. Rows are then sorted here.
pub(crate) fn funnel_events(
    path: &std::path::Path,
    app_seq: i64,
    names: &[String],
    (from_us, to_us): (i64, i64),
    with_props: bool,
) -> StoreResult<Vec<FunnelEvent>> {
    let connection = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(to_store_error)?;
    // SQLite has no arrays to bind: the names go in as a JSON array (json_each).
    let names = serde_json::to_string(names).map_err(StoreError::internal)?;
    let mut statement = connection
        .prepare(
            "SELECT user_index, time_us, name, CASE WHEN ?5 THEN props END, seq
             FROM events NOT INDEXED
             WHERE app_seq = ?1 AND time_us >= ?2 AND time_us < ?3
               AND name IN (SELECT value FROM json_each(?4))",
        )
        .map_err(to_store_error)?;
    let mut rows: Vec<(i64, FunnelColumns)> = statement
        .query_map(params![app_seq, from_us, to_us, names, with_props], |r| {
            Ok((r.get(4)?, (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        })
        .map_err(to_store_error)?
        .collect::<Result<_, _>>()
        .map_err(to_store_error)?;
    rows.sort_unstable_by_key(|(seq, (user, time, _, _))| (*user, *time, *seq));
    rows.into_iter()
        .map(|(_, columns)| huiliu_store::funnel_event(columns))
        .collect()
}
