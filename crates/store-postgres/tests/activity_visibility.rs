//! PostgreSQL hands out a row's seq before its transaction commits, so a row can
//! become visible after rows with higher seqs. A reader following the activity
//! index by seq must still get it.

use huiliu_domain::analytics::{
    pack_rows, ActivityIndex, BitmapKind, DayBitmap, LocalDay, PACKED_ROWS_KIND,
};
use huiliu_domain::apps::NewApp;
use huiliu_domain::events::{parse_event, EventSource};
use huiliu_domain::time::AppTimeZone;
use huiliu_store::{ActivityCursor, Store};
use huiliu_store_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_after_a_read_passed_its_seq_is_still_read() {
    let Some(url) = huiliu_store::testdb::fresh_postgres_url().await else {
        return;
    };
    let store = PostgresStore::open(&url).await.unwrap();
    let plan = NewApp::generate("late rows", AppTimeZone::default(), &mut rand::rng()).unwrap();
    let app = store.create_app(&plan).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();

    // A slow batch: its row takes a seq now and commits later.
    let day = LocalDay::parse("2026-11-20", "day").unwrap();
    let slow_row = DayBitmap {
        day,
        kind: BitmapKind::Active,
        event: String::new(),
        users: [77u32].into_iter().collect(),
    };
    let mut slow = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO activity_bitmaps (app_seq, day, kind, event, users) VALUES ($1, 0, $2, '', $3)")
        .bind(app.store_key)
        .bind(PACKED_ROWS_KIND)
        .bind(pack_rows(&[slow_row]))
        .execute(&mut *slow)
        .await
        .unwrap();

    // A quicker batch commits a row with a higher seq, and a reader reads past both seqs.
    let now = jiff::Timestamp::now();
    let event = parse_event(
        &format!(r#"{{"id": "e1", "user_id": "u1", "name": "launch", "time": "{now}"}}"#),
        now,
    )
    .unwrap();
    store
        .ingest_events(&app, EventSource::Server, vec![event])
        .await
        .unwrap();
    let mut index = ActivityIndex::default();
    let first = store
        .activity_rows(&app, ActivityCursor::default())
        .await
        .unwrap();
    for row in first.rows {
        index.apply(row);
    }
    assert!(!index.active(day).contains(77), "not committed yet");

    slow.commit().await.unwrap();
    let second = store.activity_rows(&app, first.cursor).await.unwrap();
    for row in second.rows {
        index.apply(row);
    }
    assert!(index.active(day).contains(77), "the late row is read");
}

/// A rebuild replaces the rows its scan covers (transactions committed before it
/// began) and keeps the rows of batches that committed while it ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_rows_of_batches_committed_while_it_ran() {
    let Some(url) = huiliu_store::testdb::fresh_postgres_url().await else {
        return;
    };
    let store = PostgresStore::open(&url).await.unwrap();
    let plan = NewApp::generate("rebuild", AppTimeZone::default(), &mut rand::rng()).unwrap();
    let app = store.create_app(&plan).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let day = LocalDay::parse("2026-11-20", "day").unwrap();
    let row_for = |user: u32| DayBitmap {
        day,
        kind: BitmapKind::Active,
        event: String::new(),
        users: [user].into_iter().collect(),
    };
    let insert = "INSERT INTO activity_bitmaps (app_seq, day, kind, event, users) VALUES ($1, 0, $2, '', $3)";

    // Committed before the rebuild: replaced by it.
    sqlx::query(insert)
        .bind(app.store_key)
        .bind(PACKED_ROWS_KIND)
        .bind(pack_rows(&[row_for(11)]))
        .execute(&pool)
        .await
        .unwrap();
    // Started before, committed during the rebuild: kept.
    let mut during = pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(app.store_key)
        .bind(PACKED_ROWS_KIND)
        .bind(pack_rows(&[row_for(22)]))
        .execute(&mut *during)
        .await
        .unwrap();
    let mark = store.rebuild_mark(&app).await.unwrap();
    during.commit().await.unwrap();
    store
        .replace_activity(&app, &mark, vec![row_for(33)])
        .await
        .unwrap();

    let mut index = ActivityIndex::default();
    for row in store
        .activity_rows(&app, ActivityCursor::default())
        .await
        .unwrap()
        .rows
    {
        index.apply(row);
    }
    let active: Vec<u32> = index.active(day).iter().collect();
    assert_eq!(active, [22, 33]);
}
