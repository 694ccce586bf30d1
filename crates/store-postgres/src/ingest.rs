//! Event ingest on PostgreSQL: whole columns as arrays through `UNNEST`.

use huiliu_domain::analytics::{pack_rows, PACKED_ROWS_KIND};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::time::to_micros;
use huiliu_store::batch::{activity_delta, distinct_users, raw_user_indexes, RawTable};
use huiliu_store::{AppRecord, IngestOutcome, StoreResult};
use jiff::Timestamp;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::HashMap;

/// An accepted event's user index, time and name (all NULL when the statement
/// only reports the count), and how many events were accepted.
type AcceptedRow = (Option<i64>, Option<i64>, Option<String>, i64);

pub(crate) async fn ingest(
    pool: &PgPool,
    app: &AppRecord,
    source: EventSource,
    events: &[ValidEvent],
) -> Result<IngestOutcome, sqlx::Error> {
    // New users are created, and their indexes handed out, in a short transaction of
    // their own: the app row lock that keeps indexes dense is then held for a few
    // statements, not for the whole batch. Should the batch itself fail, the users
    // stay, with no events, as if created by a profile update.
    let app_seq = app.store_key;
    let users = distinct_users(events);
    let mut tx = pool.begin().await?;
    let index_of = resolve_user_indexes(&mut tx, app_seq, &users).await?;
    tx.commit().await?;

    let mut tx = pool.begin().await?;

    let mut ids = Vec::with_capacity(events.len());
    let mut indexes = Vec::with_capacity(events.len());
    let mut names = Vec::with_capacity(events.len());
    let mut times = Vec::with_capacity(events.len());
    let mut props = Vec::with_capacity(events.len());
    for event in events {
        ids.push(event.id.as_str());
        indexes.push(index_of[event.user_id.as_str()]);
        names.push(event.name.as_str());
        times.push(to_micros(event.time));
        props.push(event.props.as_str());
    }
    // Trusted events some rule or task listens to are queued for judging by the
    // same statement (see huiliu_store::earning).
    // The usual batch has only new events: its index row is built from the input
    // and written by the same statement, which keeps it only if every event was
    // accepted. Otherwise the statement returns the accepted events instead, and
    // the index row is built from exactly those.
    let hoped = activity_delta(
        app,
        indexes
            .iter()
            .zip(&times)
            .zip(&names)
            .map(|((index, time_us), name)| (*index, *time_us, *name)),
    );
    let hoped_row = (!hoped.bitmaps.is_empty()).then(|| pack_rows(&hoped.bitmaps));
    let rows: Vec<AcceptedRow> = sqlx::query_as(
        "WITH ins AS (
            INSERT INTO events (app_seq, event_id, user_index, name, time_us, props, source, received_us)
            SELECT $1, e.*, $7, $8 FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::int8[], $6::text[]) AS e
            ON CONFLICT (app_seq, event_id) DO NOTHING
            RETURNING seq, user_index, time_us, name
         ), counted AS (SELECT count(*) AS n FROM ins),
         queued AS (
            INSERT INTO award_queue (app_seq, event_seq)
            SELECT $1, ins.seq FROM ins WHERE $7 = 'server'
              AND ins.name IN (SELECT event_name FROM award_events WHERE app_seq = $1)
            RETURNING 1
         ),
         packed AS (
            INSERT INTO activity_bitmaps (app_seq, day, kind, event, users)
            SELECT $1, 0, $11, '', $9 FROM counted WHERE $9::bytea IS NOT NULL AND counted.n = $10
            RETURNING 1
         )
         SELECT ins.user_index, ins.time_us, ins.name, counted.n FROM counted LEFT JOIN ins ON counted.n <> $10",
    )
    .bind(app_seq)
    .bind(&ids)
    .bind(&indexes)
    .bind(&names)
    .bind(&times)
    .bind(&props)
    .bind(source.as_str())
    .bind(to_micros(Timestamp::now()))
    .bind(hoped_row)
    .bind(events.len() as i64)
    .bind(PACKED_ROWS_KIND)
    .fetch_all(&mut *tx)
    .await?;
    let accepted = rows.first().map_or(0, |row| row.3 as usize);
    if accepted != events.len() {
        let delta = activity_delta(
            app,
            rows.iter().filter_map(|(index, time_us, name, _)| {
                Some(((*index)?, (*time_us)?, name.as_deref()?))
            }),
        );
        crate::activity::write_delta(&mut tx, app_seq, &delta).await?;
    }
    tx.commit().await?;
    Ok(IngestOutcome {
        accepted,
        duplicates: events.len() - accepted,
    })
}

/// Finds each user's dense index, creating the users huiliu has not seen yet.
///
/// Creation happens under a row lock on the app, and the lookup is repeated once
/// the lock is held: another node may have created some of the same users meanwhile.
pub(crate) async fn resolve_user_indexes<'a>(
    tx: &mut Transaction<'static, Postgres>,
    app_seq: i64,
    users: &[&'a str],
) -> Result<HashMap<&'a str, i64>, sqlx::Error> {
    let mut index_of = lookup(tx, app_seq, users, HashMap::with_capacity(users.len())).await?;
    if index_of.len() == users.len() {
        return Ok(index_of);
    }
    // NO KEY UPDATE: it still serialises index hand-out between batches, but does not
    // wait for transactions that merely reference the app row (index rows' foreign key).
    let next: i64 =
        sqlx::query_scalar("SELECT next_user_index FROM apps WHERE seq = $1 FOR NO KEY UPDATE")
            .bind(app_seq)
            .fetch_one(&mut **tx)
            .await?;
    let missing: Vec<&str> = users
        .iter()
        .copied()
        .filter(|u| !index_of.contains_key(u))
        .collect();
    index_of = lookup(tx, app_seq, &missing, index_of).await?;
    let new_users: Vec<&str> = missing
        .into_iter()
        .filter(|u| !index_of.contains_key(u))
        .collect();
    if new_users.is_empty() {
        return Ok(index_of);
    }
    let new_indexes: Vec<i64> = (next..next + new_users.len() as i64).collect();
    sqlx::query(
        "INSERT INTO users (app_seq, user_index, user_id, created_us)
         SELECT $1, u.*, $4 FROM UNNEST($2::int8[], $3::text[]) AS u",
    )
    .bind(app_seq)
    .bind(&new_indexes)
    .bind(&new_users)
    .bind(to_micros(Timestamp::now()))
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE apps SET next_user_index = $2 WHERE seq = $1")
        .bind(app_seq)
        .bind(next + new_users.len() as i64)
        .execute(&mut **tx)
        .await?;
    index_of.extend(new_users.into_iter().zip(new_indexes));
    Ok(index_of)
}

async fn lookup<'a>(
    tx: &mut Transaction<'static, Postgres>,
    app_seq: i64,
    users: &[&'a str],
    mut found: HashMap<&'a str, i64>,
) -> Result<HashMap<&'a str, i64>, sqlx::Error> {
    // A join on UNNEST rather than `= ANY($2)`: once the statement is prepared, the
    // generic plan for ANY over an array parameter degrades to scanning the index
    // range of the whole app (tens of milliseconds per batch at 50k users).
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT u.user_id, u.user_index FROM UNNEST($2::text[]) AS w (user_id)
         JOIN users u ON u.app_seq = $1 AND u.user_id = w.user_id",
    )
    .bind(app_seq)
    .bind(users)
    .fetch_all(&mut **tx)
    .await?;
    let wanted: HashMap<&str, &'a str> = users.iter().map(|u| (*u, *u)).collect();
    for (user_id, index) in rows {
        if let Some(user) = wanted.get(user_id.as_str()) {
            found.insert(user, index);
        }
    }
    Ok(found)
}

/// Loads the rows with `COPY … FROM STDIN` (text format) into a bare table.
pub(crate) async fn raw_copy_baseline(
    pool: &PgPool,
    batches: &[Vec<ValidEvent>],
    table: RawTable,
) -> StoreResult<u64> {
    sqlx::query("DROP TABLE IF EXISTS bench_raw_events")
        .execute(pool)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_raw_events (seq BIGSERIAL PRIMARY KEY, app_seq BIGINT NOT NULL,
         event_id TEXT NOT NULL, user_index BIGINT NOT NULL, name TEXT NOT NULL,
         time_us BIGINT NOT NULL, props TEXT NOT NULL, source TEXT NOT NULL, received_us BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    for statement in table.index_statements() {
        sqlx::query(statement).execute(pool).await?;
    }
    let index_of = raw_user_indexes(batches);
    let received = to_micros(Timestamp::now());
    let mut rows = 0;
    for batch in batches {
        let mut text = String::with_capacity(batch.len() * 160);
        for event in batch {
            use std::fmt::Write;
            let _ = writeln!(
                text,
                "0\t{}\t{}\t{}\t{}\t{}\tserver\t{received}",
                copy_escape(event.id.as_str()),
                index_of[event.user_id.as_str()],
                event.name.as_str(),
                to_micros(event.time),
                copy_escape(&event.props)
            );
        }
        let mut copy = pool
            .copy_in_raw(
                "COPY bench_raw_events (app_seq, event_id, user_index, name, time_us, props, source, received_us) FROM STDIN",
            )
            .await?;
        copy.send(text.into_bytes()).await?;
        rows += copy.finish().await?;
    }
    sqlx::query("DROP TABLE bench_raw_events")
        .execute(pool)
        .await?;
    Ok(rows)
}

/// Escapes a value for COPY's text format.
fn copy_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}
