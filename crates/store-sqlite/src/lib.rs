//! huiliu's embedded store: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one
//! connection and start with `BEGIN IMMEDIATE` (a deferred transaction that reads
//! before writing can fail outright when another process commits in between,
//! busy timeout or not). Reads use a separate pool and never wait for the writer.
#![forbid(unsafe_code)]

mod ingest;
mod users;

use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::UserId;
use huiliu_domain::time::to_micros;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::{
    AppRecord, EventColumns, IngestOutcome, KeyColumns, KeyRecord, Store, StoreError, StoreResult,
    StoredEvent, UserRecord, EVENT_COLUMNS,
};
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a writer waits for the file lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cloning is cheap and shares the pools.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at a `sqlite://PATH` or `sqlite:PATH` URL
    /// and applies pending migrations. `sqlite::memory:` gives a private in-memory database.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("cannot use {url:?} as a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives a killed process; only an OS crash
            // or power loss can drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Config(format!("cannot open SQLite database {url:?}: {e}")))?;
        MIGRATIONS.run(&writer).await.map_err(|e| {
            StoreError::Config(format!("cannot migrate SQLite database {url:?}: {e}"))
        })?;
        // An in-memory database exists once per connection, so it must share the writer.
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await
                .map_err(|e| {
                    StoreError::Config(format!("cannot open SQLite database {url:?}: {e}"))
                })?
        };
        Ok(Self { writer, reader })
    }

    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The plain write rate of this database for the given rows: one multi-row
    /// `INSERT` per chunk into a bare copy of the events table, one commit per
    /// batch, no dedupe and no user bookkeeping. Benchmarks compare ingest to it.
    pub async fn raw_insert_baseline(&self, batches: &[Vec<ValidEvent>]) -> StoreResult<u64> {
        sqlx::query("DROP TABLE IF EXISTS bench_raw_events")
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "CREATE TABLE bench_raw_events (seq INTEGER PRIMARY KEY, app_seq INTEGER NOT NULL,
             event_id TEXT NOT NULL, user_index INTEGER NOT NULL, name TEXT NOT NULL,
             time_us INTEGER NOT NULL, props TEXT NOT NULL, source TEXT NOT NULL,
             received_us INTEGER NOT NULL)",
        )
        .execute(&self.writer)
        .await?;
        let mut rows = 0;
        for batch in batches {
            let mut tx = self.begin_write().await?;
            let indexed: Vec<(&ValidEvent, u32)> = batch.iter().map(|e| (e, 0)).collect();
            rows += ingest::insert_event_rows(
                &mut tx,
                "bench_raw_events",
                0,
                EventSource::Server,
                &indexed,
                None,
            )
            .await? as u64;
            tx.commit().await?;
        }
        sqlx::query("DROP TABLE bench_raw_events")
            .execute(&self.writer)
            .await?;
        Ok(rows)
    }
}

const APP_COLUMNS: &str = "seq, app_id, name, timezone, created_us";
type AppColumns = (i64, String, String, String, i64);

fn app_from(row: AppColumns) -> StoreResult<AppRecord> {
    let (seq, id, name, timezone, created_us) = row;
    AppRecord::from_columns(seq, &id, name, &timezone, created_us)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_app(&self, app: &NewApp) -> StoreResult<AppRecord> {
        let now = to_micros(Timestamp::now());
        let mut tx = self.begin_write().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO apps (app_id, name, timezone, created_us) VALUES (?, ?, ?, ?) RETURNING seq",
        )
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(app.timezone.name())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for key in [&app.secret_key, &app.publishable_key] {
            sqlx::query(
                "INSERT INTO api_keys (key_id, app_seq, kind, secret_hash, created_us) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&key.key_id)
            .bind(seq)
            .bind(key.kind.as_str())
            .bind(&key.secret_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        AppRecord::from_columns(
            seq,
            app.id.as_str(),
            app.name.clone(),
            app.timezone.name(),
            now,
        )
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY seq");
        let rows: Vec<AppColumns> = sqlx::query_as(&sql).fetch_all(&self.reader).await?;
        rows.into_iter().map(app_from).collect()
    }

    async fn find_app(&self, id: &AppId) -> StoreResult<Option<AppRecord>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE app_id = ?");
        let row: Option<AppColumns> = sqlx::query_as(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(app_from).transpose()
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyColumns> = sqlx::query_as(
            "SELECT k.key_id, k.kind, k.secret_hash, a.seq, a.app_id, a.name, a.timezone, a.created_us
             FROM api_keys k JOIN apps a ON a.seq = k.app_seq
             WHERE k.key_id = ? AND k.revoked_us IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(KeyRecord::from_joined_columns).transpose()
    }

    async fn ingest_events(
        &self,
        app: &AppRecord,
        source: EventSource,
        events: &[ValidEvent],
    ) -> StoreResult<IngestOutcome> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let mut tx = self.begin_write().await?;
        let outcome = ingest::ingest(&mut tx, app.store_key, source, events).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn get_user(&self, app: &AppRecord, user_id: &UserId) -> StoreResult<Option<UserRecord>> {
        users::get_user(&self.reader, app.store_key, user_id.as_str()).await
    }

    async fn update_user_profile(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        patch: &ProfilePatch,
    ) -> StoreResult<UserRecord> {
        let mut tx = self.begin_write().await?;
        let record = users::update_profile(&mut tx, app.store_key, user_id.as_str(), patch).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn get_event(&self, app: &AppRecord, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e
             JOIN users u ON u.app_seq = e.app_seq AND u.user_index = e.user_index
             WHERE e.app_seq = ? AND e.event_id = ?"
        );
        let row: Option<EventColumns> = sqlx::query_as(&sql)
            .bind(app.store_key)
            .bind(event_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(StoredEvent::from_columns).transpose()
    }

    async fn count_events(&self, app: &AppRecord) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE app_seq = ?")
            .bind(app.store_key)
            .fetch_one(&self.reader)
            .await?;
        Ok(count as u64)
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
