//! The activity index on SQLite: delta rows written with each batch on the writer
//! thread, read incrementally by seq on the reader pool, merged by compaction.
//!
//! One writer means seqs become visible in order, so a reader's cursor is just
//! the last seq it read (the horizon is unused here).

use crate::writer::to_store_error;
use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{ActivityDelta, DayBitmap};
use huiliu_store::{sql, ActivityCursor, ActivityRows, ScannedEvent, StoreError, StoreResult};
use roaring::RoaringBitmap;
use rusqlite::{params, Connection};
use sqlx::SqlitePool;

pub(crate) fn write_delta(tx: &Connection, app_seq: i64, delta: &ActivityDelta) -> StoreResult<()> {
    insert_rows(tx, app_seq, &delta.bitmaps)?;
    let mut lower = tx
        .prepare_cached(
            "UPDATE users SET first_active_us = ?3 WHERE app_seq = ?1 AND user_index = ?2
             AND (first_active_us IS NULL OR first_active_us > ?3)",
        )
        .map_err(to_store_error)?;
    for &(user, micros) in &delta.first_active {
        lower
            .execute(params![app_seq, i64::from(user), micros])
            .map_err(to_store_error)?;
    }
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

fn to_bitmap((_, day, kind, event, users): StoredRow) -> StoreResult<DayBitmap> {
    DayBitmap::from_stored(day, kind, event, &users).map_err(StoreError::internal)
}

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
        rows: stored
            .into_iter()
            .map(to_bitmap)
            .collect::<StoreResult<_>>()?,
    })
}

/// Merges the rows of up to `max_keys` split keys, each key in place of its rows.
pub(crate) fn compact(tx: &Connection, app_seq: i64, max_keys: usize) -> StoreResult<usize> {
    let keys: Vec<(i32, i16, String)> = {
        let mut find = tx
            .prepare_cached(sql::SPLIT_ACTIVITY_KEYS)
            .map_err(to_store_error)?;
        let rows = find
            .query_map(params![app_seq, max_keys as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(to_store_error)?;
        rows.collect::<Result<_, _>>().map_err(to_store_error)?
    };
    for (day, kind, event) in &keys {
        let mut read = tx
            .prepare_cached(sql::ACTIVITY_ROWS_OF_KEY)
            .map_err(to_store_error)?;
        let parts: Vec<(i64, Vec<u8>)> = read
            .query_map(params![app_seq, day, kind, event], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(to_store_error)?
            .collect::<Result<_, _>>()
            .map_err(to_store_error)?;
        let mut merged = RoaringBitmap::new();
        for (seq, bytes) in &parts {
            merged |= RoaringBitmap::deserialize_from(&bytes[..]).map_err(StoreError::internal)?;
            tx.execute("DELETE FROM activity_bitmaps WHERE seq = ?1", [seq])
                .map_err(to_store_error)?;
        }
        let row = DayBitmap::from_parts(*day, *kind, event.clone(), merged)
            .map_err(StoreError::internal)?;
        insert_rows(tx, app_seq, std::slice::from_ref(&row))?;
    }
    Ok(keys.len())
}

pub(crate) async fn horizon(reader: &SqlitePool, app_seq: i64) -> StoreResult<i64> {
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
    horizon: i64,
    rows: &[DayBitmap],
    first_active: &[(u32, i64)],
) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM activity_bitmaps WHERE app_seq = ?1 AND seq <= ?2",
        params![app_seq, horizon],
    )
    .map_err(to_store_error)?;
    insert_rows(tx, app_seq, rows)?;
    tx.execute(
        "UPDATE users SET first_active_us = NULL WHERE app_seq = ?1",
        [app_seq],
    )
    .map_err(to_store_error)?;
    let mut set = tx
        .prepare_cached(
            "UPDATE users SET first_active_us = ?3 WHERE app_seq = ?1 AND user_index = ?2",
        )
        .map_err(to_store_error)?;
    for &(user, micros) in first_active {
        set.execute(params![app_seq, i64::from(user), micros])
            .map_err(to_store_error)?;
    }
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
    Ok(rows
        .into_iter()
        .map(|(seq, user_index, time_us, name)| ScannedEvent {
            seq,
            user_index: user_index as u32,
            time_us,
            name,
        })
        .collect())
}

pub(crate) async fn funnel_events(
    reader: &SqlitePool,
    app_seq: i64,
    names: &[String],
    (from_us, to_us): (i64, i64),
    with_props: bool,
) -> StoreResult<Vec<FunnelEvent>> {
    // SQLite has no arrays to bind: the names go in as a JSON array (json_each).
    let names = serde_json::to_string(names).map_err(StoreError::internal)?;
    let rows: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT user_index, time_us, name, CASE WHEN $5 THEN props END FROM events
         WHERE app_seq = $1 AND time_us >= $2 AND time_us < $3
           AND name IN (SELECT value FROM json_each($4))
         ORDER BY user_index, time_us, seq",
    )
    .bind(app_seq)
    .bind(from_us)
    .bind(to_us)
    .bind(names)
    .bind(with_props)
    .fetch_all(reader)
    .await?;
    rows.into_iter().map(huiliu_store::funnel_event).collect()
}
