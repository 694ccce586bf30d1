//! The activity index on PostgreSQL: delta rows written in each batch's
//! transaction, read incrementally, merged by compaction.
//!
//! A row's seq is taken before its transaction commits, so rows can become
//! visible out of seq order. Each row records its transaction id; a reader also
//! re-reads rows of transactions that were still open at its last read (the
//! cursor's horizon, the snapshot's xmin). Applying a row twice is harmless.

use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{
    merge_packed, merge_rows, open_stored, pack_rows, resolve_first_active, ActivityDelta,
    BitmapKind, DayBitmap, PACKED_ROWS_KIND,
};
use huiliu_store::{sql, ActivityCursor, ActivityRows, ScannedEvent, StoreError, StoreResult};
use sqlx::{PgPool, Postgres, Transaction};

/// Keeps two nodes from compacting one app at once (the other just skips a round).
const COMPACTION_LOCK_CLASS: i32 = 0x6869_6C75; // "hilu"

pub(crate) async fn write_delta(
    tx: &mut Transaction<'static, Postgres>,
    app_seq: i64,
    delta: &ActivityDelta,
) -> Result<(), sqlx::Error> {
    if !delta.bitmaps.is_empty() {
        sqlx::query(
            "INSERT INTO activity_bitmaps (app_seq, day, kind, event, users) VALUES ($1, 0, $2, '', $3)",
        )
        .bind(app_seq)
        .bind(PACKED_ROWS_KIND)
        .bind(pack_rows(&delta.bitmaps))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_rows(
    tx: &mut Transaction<'static, Postgres>,
    app_seq: i64,
    rows: &[DayBitmap],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let days: Vec<i32> = rows.iter().map(|r| r.day.number()).collect();
    let kinds: Vec<i16> = rows.iter().map(|r| r.kind.code()).collect();
    let events: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
    let users: Vec<Vec<u8>> = rows.iter().map(|r| r.users_bytes()).collect();
    sqlx::query(
        "INSERT INTO activity_bitmaps (app_seq, day, kind, event, users)
         SELECT $1, r.* FROM UNNEST($2::int4[], $3::int2[], $4::text[], $5::bytea[]) AS r",
    )
    .bind(app_seq)
    .bind(&days)
    .bind(&kinds)
    .bind(&events)
    .bind(&users)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type StoredRow = (i64, i32, i16, String, Vec<u8>);

pub(crate) async fn rows_after(
    pool: &PgPool,
    app_seq: i64,
    cursor: ActivityCursor,
) -> StoreResult<ActivityRows> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (_, generation): (String, i64) = sqlx::query_as(sql::APP_INDEX_STATE)
        .bind(app_seq)
        .fetch_one(&mut *tx)
        .await?;
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    let reset = generation != cursor.generation;
    let (after, since_xact) = if reset {
        (0, 0)
    } else {
        (cursor.seq, cursor.horizon)
    };
    let stored: Vec<StoredRow> = sqlx::query_as(
        "SELECT seq, day, kind, event, users FROM activity_bitmaps
         WHERE app_seq = $1 AND (seq > $2 OR xact >= $3) ORDER BY seq",
    )
    .bind(app_seq)
    .bind(after)
    .bind(since_xact)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let seq = stored
        .iter()
        .map(|row| row.0)
        .max()
        .unwrap_or(after)
        .max(after);
    let rows = open_stored(
        stored
            .iter()
            .map(|(_, day, kind, event, users)| (*day, *kind, event.clone(), &users[..])),
    )
    .map_err(StoreError::internal)?;
    Ok(ActivityRows {
        cursor: ActivityCursor {
            generation,
            seq,
            horizon,
        },
        reset,
        rows,
    })
}

/// Opens up to `max_packed` packed rows and merges their bitmaps into the one
/// merged row of each key; returns how many packed rows were consumed.
pub(crate) async fn compact(
    pool: &PgPool,
    app_seq: i64,
    max_packed: usize,
) -> Result<usize, sqlx::Error> {
    let decode = |e: std::io::Error| sqlx::Error::Decode(Box::new(e));
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
        .bind(COMPACTION_LOCK_CLASS)
        .bind(app_seq as i32)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let packed: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql::PACKED_ACTIVITY_ROWS)
        .bind(app_seq)
        .bind(max_packed as i64)
        .fetch_all(&mut *tx)
        .await?;
    if packed.is_empty() {
        return Ok(0);
    }
    let seqs: Vec<i64> = packed.iter().map(|(seq, _)| *seq).collect();
    sqlx::query("DELETE FROM activity_bitmaps WHERE seq = ANY($1)")
        .bind(&seqs)
        .execute(&mut *tx)
        .await?;
    let (first_active, others): (Vec<_>, Vec<_>) =
        merge_packed(packed.iter().map(|(_, bytes)| &bytes[..]))
            .map_err(decode)?
            .into_iter()
            .partition(|row| row.kind == BitmapKind::FirstActive);
    let mut merged = Vec::new();
    for row in others {
        let existing: Vec<Vec<u8>> = sqlx::query_scalar(
            "DELETE FROM activity_bitmaps
             WHERE app_seq = $1 AND day = $2 AND kind = $3 AND event = $4 AND kind <> 3
             RETURNING users",
        )
        .bind(app_seq)
        .bind(row.day.number())
        .bind(row.kind.code())
        .bind(&row.event)
        .fetch_all(&mut *tx)
        .await?;
        let mut parts = Vec::with_capacity(existing.len() + 1);
        for bytes in &existing {
            parts.push(
                DayBitmap::from_stored(row.day.number(), row.kind.code(), row.event.clone(), bytes)
                    .map_err(decode)?,
            );
        }
        parts.push(row);
        merged.extend(merge_rows(parts));
    }
    if !first_active.is_empty() {
        // Candidates are resolved against every stored first-active row: each
        // user stays on their earliest day only.
        let stored: Vec<(i64, i32, Vec<u8>)> = sqlx::query_as(sql::STORED_FIRST_ACTIVE)
            .bind(app_seq)
            .fetch_all(&mut *tx)
            .await?;
        let mut stored_rows = Vec::with_capacity(stored.len());
        for (_, day, bytes) in &stored {
            stored_rows.push(
                DayBitmap::from_stored(*day, BitmapKind::FirstActive.code(), String::new(), bytes)
                    .map_err(decode)?,
            );
        }
        let mut replaced = Vec::new();
        for row in resolve_first_active(stored_rows, first_active) {
            replaced.extend(
                stored
                    .iter()
                    .filter(|(_, day, _)| *day == row.day.number())
                    .map(|(seq, _, _)| *seq),
            );
            if !row.users.is_empty() {
                merged.push(row);
            }
        }
        sqlx::query("DELETE FROM activity_bitmaps WHERE seq = ANY($1)")
            .bind(&replaced)
            .execute(&mut *tx)
            .await?;
    }
    for chunk in merged.chunks(256) {
        insert_rows(&mut tx, app_seq, chunk).await?;
    }
    tx.commit().await?;
    Ok(packed.len())
}

/// The current transaction snapshot: which transactions had committed.
pub(crate) async fn snapshot(pool: &PgPool) -> StoreResult<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_snapshot()::text")
        .fetch_one(pool)
        .await?)
}

pub(crate) async fn replace(
    pool: &PgPool,
    app_seq: i64,
    snapshot: &str,
    rows: &[DayBitmap],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Waits for a compaction of the app to finish, and keeps new ones out.
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(COMPACTION_LOCK_CLASS)
        .bind(app_seq as i32)
        .execute(&mut *tx)
        .await?;
    // Rows of transactions that had committed when the rebuild began are covered by
    // its scan; rows of later ones may not be, and stay.
    sqlx::query(
        "DELETE FROM activity_bitmaps WHERE app_seq = $1
         AND pg_visible_in_snapshot(xact::text::xid8, $2::pg_snapshot)",
    )
    .bind(app_seq)
    .bind(snapshot)
    .execute(&mut *tx)
    .await?;
    for chunk in rows.chunks(256) {
        insert_rows(&mut tx, app_seq, chunk).await?;
    }
    sqlx::query("UPDATE apps SET index_generation = index_generation + 1 WHERE seq = $1")
        .bind(app_seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub(crate) async fn scan_events(
    pool: &PgPool,
    app_seq: i64,
    after_seq: i64,
    limit: usize,
) -> StoreResult<Vec<ScannedEvent>> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql::SCAN_EVENTS)
        .bind(app_seq)
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(ScannedEvent::from_columns).collect())
}

pub(crate) async fn funnel_events(
    pool: &PgPool,
    app_seq: i64,
    names: &[String],
    (from_us, to_us): (i64, i64),
    with_props: bool,
) -> StoreResult<Vec<FunnelEvent>> {
    let rows: Vec<(i64, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT user_index, time_us, name, CASE WHEN $5 THEN props END FROM events
         WHERE app_seq = $1 AND time_us >= $2 AND time_us < $3 AND name = ANY($4::text[])
         ORDER BY user_index, time_us, seq",
    )
    .bind(app_seq)
    .bind(from_us)
    .bind(to_us)
    .bind(names)
    .bind(with_props)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(huiliu_store::funnel_event).collect()
}
