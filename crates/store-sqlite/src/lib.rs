//! huiliu's embedded store: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, so every write runs on one connection owned
//! by a dedicated thread ([`writer`]) and starts with `BEGIN IMMEDIATE` (a deferred
//! transaction that reads before writing can fail outright when another process
//! commits in between, busy timeout or not). Reads use a separate pool of read-only
//! connections and never wait for the writer.
#![forbid(unsafe_code)]

mod activity;
mod earning;
mod ingest;
mod mall;
mod outbox;
mod points;
mod subscriptions;
mod users;
mod writer;

use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{AnalyticsSettings, DayBitmap};
use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::UserId;
use huiliu_domain::templates::Template;
use huiliu_domain::time::to_micros;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::batch::{raw_user_indexes, RawTable};
use huiliu_store::messages;
use huiliu_store::{
    sql, stored_template, ActivityCursor, ActivityRows, AppColumns, AppRecord, EventColumns,
    IngestOutcome, KeyColumns, KeyRecord, RebuildMark, Recorded, ScannedEvent, Store, StoreError,
    StoreResult, StoredEvent, StoredToken, StoredWechat, SubscriptionRecord, SubscriptionReport,
    UserRecord, WechatColumns,
};
use jiff::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::str::FromStr;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a writer waits for the file lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite store. Cloning is cheap and shares the writer and the read pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: writer::Writer,
    reader: SqlitePool,
    /// The database file, for reads too large for the pool (see `activity::funnel_events`).
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at a `sqlite://PATH` or
    /// `sqlite:PATH` URL and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Config(
                "an in-memory SQLite database cannot be shared by huiliu's reader and writer; use a file such as sqlite://huiliu.db".into(),
            ));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("cannot use {url:?} as a SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let path = options.get_filename().to_path_buf();
        // Create the file and bring the schema up to date before anyone else opens it.
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Config(format!("cannot open SQLite database {url:?}: {e}")))?;
        MIGRATIONS.run(&migrator).await.map_err(|e| {
            StoreError::Config(format!("cannot migrate SQLite database {url:?}: {e}"))
        })?;
        migrator.close().await;
        let writer = writer::Writer::open(&path, BUSY_TIMEOUT)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true).pragma("cache_size", "-16384"))
            .await
            .map_err(|e| StoreError::Config(format!("cannot open SQLite database {url:?}: {e}")))?;
        Ok(Self {
            writer,
            reader,
            path,
        })
    }

    /// The plain write rate of this database for the given rows: one prepared
    /// The database's raw single-row commit rate: `rows` one-row `INSERT`s into a
    /// bare table, each its own transaction, back to back on one connection with
    /// the writer's settings (SQLite has one writer at a time, so more clients
    /// only queue). Rows per second; the table is dropped afterwards.
    pub async fn raw_commit_baseline(&self, rows: usize) -> StoreResult<f64> {
        self.writer
            .write(move |tx| {
                tx.execute_batch(
                    "DROP TABLE IF EXISTS bench_raw_commits;
                     CREATE TABLE bench_raw_commits (id INTEGER PRIMARY KEY, user_index INTEGER NOT NULL,
                       amount INTEGER NOT NULL, created_us INTEGER NOT NULL);",
                )
                .map_err(writer::to_store_error)
            })
            .await?;
        // The writer runs jobs inside its own transaction; a connection of our own
        // commits each row by itself.
        let path = self.path.clone();
        let rate = tokio::task::spawn_blocking(move || -> StoreResult<f64> {
            let connection = rusqlite::Connection::open(&path).map_err(writer::to_store_error)?;
            connection
                .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                .map_err(writer::to_store_error)?;
            let mut insert = connection
                .prepare("INSERT INTO bench_raw_commits (user_index, amount, created_us) VALUES (?1, ?2, ?3)")
                .map_err(writer::to_store_error)?;
            let started = std::time::Instant::now();
            for i in 0..rows as i64 {
                insert
                    .execute(rusqlite::params![i % 100_000, i % 97 + 1, i])
                    .map_err(writer::to_store_error)?;
            }
            Ok(rows as f64 / started.elapsed().as_secs_f64())
        })
        .await
        .map_err(StoreError::internal)??;
        self.writer
            .write(|tx| {
                tx.execute_batch("DROP TABLE bench_raw_commits")
                    .map_err(writer::to_store_error)
            })
            .await?;
        Ok(rate)
    }

    /// `INSERT` per row into a copy of the events table (bare, or with the events
    /// table's indexes), one commit per batch, no dedupe check and no user lookups.
    /// Benchmarks compare ingest to it.
    pub async fn raw_insert_baseline(
        &self,
        batches: &[Vec<ValidEvent>],
        table: RawTable,
    ) -> StoreResult<u64> {
        self.writer
            .write(move |tx| {
                tx.execute_batch(
                    "DROP TABLE IF EXISTS bench_raw_events;
                     CREATE TABLE bench_raw_events (seq INTEGER PRIMARY KEY, app_seq INTEGER NOT NULL,
                       event_id TEXT NOT NULL, user_index INTEGER NOT NULL, name TEXT NOT NULL,
                       time_us INTEGER NOT NULL, props TEXT NOT NULL, source TEXT NOT NULL,
                       received_us INTEGER NOT NULL);",
                )
                .map_err(writer::to_store_error)?;
                for statement in table.index_statements() {
                    tx.execute(statement, []).map_err(writer::to_store_error)?;
                }
                Ok(())
            })
            .await?;
        let index_of: std::collections::HashMap<String, i64> = raw_user_indexes(batches)
            .into_iter()
            .map(|(user, index)| (user.to_owned(), index))
            .collect();
        let index_of = std::sync::Arc::new(index_of);
        let mut rows = 0;
        for batch in batches {
            let (batch, index_of) = (batch.clone(), index_of.clone());
            rows += self
                .writer
                .write(move |tx| {
                    ingest::insert_plain_rows(tx, "bench_raw_events", &batch, &index_of)
                })
                .await? as u64;
        }
        self.writer
            .write(|tx| {
                tx.execute_batch("DROP TABLE bench_raw_events")
                    .map_err(writer::to_store_error)
            })
            .await?;
        Ok(rows)
    }
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
        let plan = app.clone();
        let seq = self
            .writer
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO apps (app_id, name, timezone, created_us) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![plan.id.as_str(), plan.name, plan.timezone.name(), now],
                )
                .map_err(writer::to_store_error)?;
                let seq = tx.last_insert_rowid();
                for key in [&plan.secret_key, &plan.publishable_key] {
                    tx.execute(
                        "INSERT INTO api_keys (key_id, app_seq, kind, secret_hash, created_us) VALUES (?1, ?2, ?3, ?4, ?5)",
                        rusqlite::params![key.key_id, seq, key.kind.as_str(), key.secret_hash, now],
                    )
                    .map_err(writer::to_store_error)?;
                }
                Ok(seq)
            })
            .await?;
        AppRecord::from_columns(
            seq,
            app.id.as_str(),
            app.name.clone(),
            app.timezone.name(),
            now,
        )
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let rows: Vec<AppColumns> = sqlx::query_as(sql::LIST_APPS)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(AppRecord::from_row).collect()
    }

    async fn find_app(&self, id: &AppId) -> StoreResult<Option<AppRecord>> {
        let row: Option<AppColumns> = sqlx::query_as(sql::FIND_APP)
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        row.map(AppRecord::from_row).transpose()
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyColumns> = sqlx::query_as(sql::FIND_KEY)
            .bind(key_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(KeyRecord::from_joined_columns).transpose()
    }

    async fn ingest_events(
        &self,
        app: &AppRecord,
        source: EventSource,
        events: Vec<ValidEvent>,
    ) -> StoreResult<IngestOutcome> {
        if events.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let app = app.clone();
        self.writer
            .write(move |tx| ingest::ingest(tx, &app, source, &events))
            .await
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
        let (app_seq, user_id, patch) = (app.store_key, user_id.as_str().to_owned(), patch.clone());
        self.writer
            .write(move |tx| users::update_profile(tx, app_seq, &user_id, &patch))
            .await
    }

    async fn get_event(&self, app: &AppRecord, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        let row: Option<EventColumns> = sqlx::query_as(sql::GET_EVENT)
            .bind(app.store_key)
            .bind(event_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(StoredEvent::from_columns).transpose()
    }

    async fn count_events(&self, app: &AppRecord) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(sql::COUNT_EVENTS)
            .bind(app.store_key)
            .fetch_one(&self.reader)
            .await?;
        Ok(count as u64)
    }

    async fn update_analytics_settings(
        &self,
        app: &AppRecord,
        settings: &AnalyticsSettings,
    ) -> StoreResult<AppRecord> {
        let text = serde_json::to_string(settings).map_err(StoreError::internal)?;
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| {
                tx.execute(
                    "UPDATE apps SET analytics = ?2 WHERE seq = ?1",
                    rusqlite::params![app_seq, text],
                )
                .map(|_| ())
                .map_err(writer::to_store_error)
            })
            .await?;
        Ok(AppRecord {
            analytics: settings.clone(),
            ..app.clone()
        })
    }

    async fn activity_rows(
        &self,
        app: &AppRecord,
        cursor: ActivityCursor,
    ) -> StoreResult<ActivityRows> {
        activity::rows_after(&self.reader, app.store_key, cursor).await
    }

    async fn compact_activity(&self, app: &AppRecord, max_packed: usize) -> StoreResult<usize> {
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| activity::compact(tx, app_seq, max_packed))
            .await
    }

    async fn scan_events(
        &self,
        app: &AppRecord,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<ScannedEvent>> {
        activity::scan_events(&self.reader, app.store_key, after_seq, limit).await
    }

    async fn rebuild_mark(&self, app: &AppRecord) -> StoreResult<RebuildMark> {
        let seq = activity::last_seq(&self.reader, app.store_key).await?;
        Ok(RebuildMark(seq.to_string()))
    }

    async fn replace_activity(
        &self,
        app: &AppRecord,
        mark: &RebuildMark,
        rows: Vec<DayBitmap>,
    ) -> StoreResult<()> {
        // One writer: every row up to this seq had committed when the mark was taken.
        let up_to: i64 = mark
            .0
            .parse()
            .map_err(|_| StoreError::internal("a rebuild mark from another store"))?;
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| activity::replace(tx, app_seq, up_to, &rows))
            .await
    }

    async fn funnel_events(
        &self,
        app: &AppRecord,
        names: &[String],
        from_us: i64,
        to_us: i64,
        with_props: bool,
    ) -> StoreResult<Vec<FunnelEvent>> {
        let (path, app_seq, names) = (self.path.clone(), app.store_key, names.to_vec());
        tokio::task::spawn_blocking(move || {
            activity::funnel_events(&path, app_seq, &names, (from_us, to_us), with_props)
        })
        .await
        .map_err(StoreError::internal)?
    }

    async fn put_template(&self, app: &AppRecord, template: &Template) -> StoreResult<()> {
        let definition = serde_json::to_string(template).map_err(StoreError::internal)?;
        let (app_seq, id) = (app.store_key, template.template_id.clone());
        let now = to_micros(Timestamp::now());
        self.writer
            .write(move |tx| {
                tx.execute(
                    sql::PUT_TEMPLATE,
                    rusqlite::params![app_seq, id, definition, now],
                )
                .map(|_| ())
                .map_err(writer::to_store_error)
            })
            .await
    }

    async fn get_template(
        &self,
        app: &AppRecord,
        template_id: &str,
    ) -> StoreResult<Option<Template>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(sql::GET_TEMPLATE)
            .bind(app.store_key)
            .bind(template_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(stored_template).transpose()
    }

    async fn list_templates(&self, app: &AppRecord) -> StoreResult<Vec<Template>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(sql::LIST_TEMPLATES)
            .bind(app.store_key)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(stored_template).collect()
    }

    async fn put_wechat_settings(
        &self,
        app: &AppRecord,
        settings: &StoredWechat,
    ) -> StoreResult<()> {
        let (app_seq, s) = (app.store_key, settings.clone());
        let now = to_micros(Timestamp::now());
        self.writer
            .write(move |tx| {
                tx.execute(
                    sql::PUT_WECHAT,
                    rusqlite::params![
                        app_seq,
                        s.appid,
                        s.secret_sealed,
                        s.token_sealed,
                        s.aes_key_sealed,
                        s.api_base,
                        now
                    ],
                )
                .map(|_| ())
                .map_err(writer::to_store_error)
            })
            .await
    }

    async fn get_wechat_settings(&self, app: &AppRecord) -> StoreResult<Option<StoredWechat>> {
        let row: Option<WechatColumns> = sqlx::query_as(sql::GET_WECHAT)
            .bind(app.store_key)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(StoredWechat::from_columns))
    }

    async fn record_subscriptions(
        &self,
        app: &AppRecord,
        report: &SubscriptionReport,
    ) -> StoreResult<Recorded> {
        let (app_seq, report) = (app.store_key, report.clone());
        self.writer
            .write(move |tx| subscriptions::record(tx, app_seq, &report))
            .await
    }

    async fn list_subscriptions(
        &self,
        app: &AppRecord,
        user_id: &UserId,
    ) -> StoreResult<Option<Vec<SubscriptionRecord>>> {
        subscriptions::list(&self.reader, app.store_key, user_id.as_str()).await
    }

    async fn wechat_token(&self, app: &AppRecord) -> StoreResult<Option<StoredToken>> {
        let row: Option<(Vec<u8>, i64)> = sqlx::query_as(sql::GET_TOKEN)
            .bind(app.store_key)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|(token_sealed, expires_us)| StoredToken {
            token_sealed,
            expires_us,
        }))
    }

    async fn lease_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        now_us: i64,
        until_us: i64,
    ) -> StoreResult<bool> {
        let (app_seq, holder) = (app.store_key, holder.to_string());
        self.writer
            .write(move |tx| {
                tx.execute(sql::ENSURE_TOKEN_ROW, [app_seq])
                    .map_err(writer::to_store_error)?;
                tx.execute(
                    sql::LEASE_TOKEN,
                    rusqlite::params![holder, until_us, app_seq, now_us, holder],
                )
                .map(|n| n == 1)
                .map_err(writer::to_store_error)
            })
            .await
    }

    async fn put_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        token: &StoredToken,
    ) -> StoreResult<bool> {
        let (app_seq, holder, token) = (app.store_key, holder.to_string(), token.clone());
        self.writer
            .write(move |tx| {
                tx.execute(
                    sql::PUT_TOKEN,
                    rusqlite::params![token.token_sealed, token.expires_us, app_seq, holder],
                )
                .map(|n| n == 1)
                .map_err(writer::to_store_error)
            })
            .await
    }

    async fn drop_wechat_token(&self, app: &AppRecord, failing: &[u8]) -> StoreResult<bool> {
        let (app_seq, failing) = (app.store_key, failing.to_vec());
        self.writer
            .write(move |tx| {
                tx.execute(sql::DROP_TOKEN, rusqlite::params![app_seq, failing])
                    .map(|n| n == 1)
                    .map_err(writer::to_store_error)
            })
            .await
    }

    async fn enqueue_message(
        &self,
        app: &AppRecord,
        message: &messages::NewMessage,
    ) -> StoreResult<messages::Enqueued> {
        let (app_seq, message) = (app.store_key, message.clone());
        self.writer
            .write(move |tx| outbox::enqueue(tx, app_seq, &message))
            .await
    }

    async fn get_message(
        &self,
        app: &AppRecord,
        id: &str,
    ) -> StoreResult<Option<messages::MessageRecord>> {
        let row: Option<messages::MessageColumns> = sqlx::query_as(messages::GET_MESSAGE)
            .bind(app.store_key)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(messages::MessageRecord::from_columns).transpose()
    }

    async fn claim_messages(
        &self,
        request: &messages::ClaimRequest,
    ) -> StoreResult<Vec<messages::ClaimedMessage>> {
        let request = request.clone();
        self.writer
            .write(move |tx| outbox::claim(tx, &request))
            .await
    }

    async fn finish_messages(
        &self,
        holder: &str,
        now_us: i64,
        finished: &[messages::Finished],
    ) -> StoreResult<usize> {
        let (holder, finished) = (holder.to_string(), finished.to_vec());
        self.writer
            .write(move |tx| outbox::finish(tx, &holder, now_us, &finished))
            .await
    }

    async fn points_transaction(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::PointsRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        let (app_seq, request) = (app.store_key, request.clone());
        self.writer
            .write(move |tx| points::transact(tx, app_seq, &request))
            .await
    }

    async fn points_settle(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::SettleRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        let (app_seq, request) = (app.store_key, request.clone());
        self.writer
            .write(move |tx| points::settle(tx, app_seq, &request))
            .await
    }

    async fn points_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        self.writer
            .write(move |tx| points::sweep(tx, now_us, i64::from(limit)))
            .await
    }

    async fn points_summary(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<huiliu_store::points::PointsSummary>> {
        points::summary(&self.reader, app.store_key, user_id.as_str(), now_us).await
    }

    async fn points_history(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        before_seq: i64,
        limit: u32,
    ) -> StoreResult<Option<Vec<huiliu_store::points::PointsEntry>>> {
        use huiliu_store::points as p;
        let user: Option<(i64,)> = sqlx::query_as(p::USER_INDEX)
            .bind(app.store_key)
            .bind(user_id.as_str())
            .fetch_optional(&self.reader)
            .await?;
        let Some((user,)) = user else {
            return Ok(None);
        };
        let rows: Vec<p::EntryColumns> = sqlx::query_as(p::HISTORY)
            .bind(app.store_key)
            .bind(user)
            .bind(before_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(Some(rows.into_iter().map(p::entry_of).collect()))
    }

    async fn points_liability(
        &self,
        app: &AppRecord,
        now_us: i64,
        horizons_us: [i64; 2],
        periods: &[(i64, i64)],
    ) -> StoreResult<huiliu_store::points::Liability> {
        use huiliu_store::points as p;
        let (live, pending, soon, later): (i64, i64, i64, i64) = sqlx::query_as(p::LIABILITY_LOTS)
            .bind(app.store_key)
            .bind(now_us)
            .bind(horizons_us[0])
            .bind(horizons_us[1])
            .fetch_one(&self.reader)
            .await?;
        let (debt, on_hold): (i64, i64) = sqlx::query_as(p::LIABILITY_ACCOUNTS)
            .bind(app.store_key)
            .fetch_one(&self.reader)
            .await?;
        let mut sums = Vec::with_capacity(periods.len());
        for (from, to) in periods {
            let rows: Vec<(String, i64)> = sqlx::query_as(p::LIABILITY_PERIOD)
                .bind(app.store_key)
                .bind(from)
                .bind(to)
                .fetch_all(&self.reader)
                .await?;
            sums.push(rows.into_iter().collect());
        }
        Ok(p::Liability {
            outstanding: live - debt,
            pending,
            on_hold,
            debt,
            expiring: [soon, later],
            periods: sums,
        })
    }

    async fn points_policy(
        &self,
        app: &AppRecord,
    ) -> StoreResult<huiliu_store::points::PointsPolicy> {
        let stored: Option<(String, String)> = sqlx::query_as(huiliu_store::points::GET_SETTINGS)
            .bind(app.store_key)
            .fetch_optional(&self.reader)
            .await?;
        huiliu_store::points::policy_of(stored)
    }

    async fn put_points_policy(
        &self,
        app: &AppRecord,
        policy: &huiliu_store::points::PointsPolicy,
    ) -> StoreResult<()> {
        let (app_seq, expiry, shortfall) = (
            app.store_key,
            serde_json::to_string(&policy.expiry).map_err(StoreError::internal)?,
            huiliu_store::points::shortfall_name(policy.shortfall),
        );
        let now = to_micros(Timestamp::now());
        self.writer
            .write(move |tx| {
                tx.execute(
                    huiliu_store::points::PUT_SETTINGS,
                    rusqlite::params![app_seq, expiry, shortfall, now],
                )
                .map(drop)
                .map_err(writer::to_store_error)
            })
            .await
    }

    async fn put_reward(
        &self,
        app: &AppRecord,
        key: &str,
        spec: &huiliu_domain::mall::RewardSpec,
        now_us: i64,
    ) -> StoreResult<()> {
        let (app_seq, key, spec) = (app.store_key, key.to_string(), spec.clone());
        self.writer
            .write(move |tx| mall::put_reward(tx, app_seq, &key, &spec, now_us))
            .await
    }

    async fn rewards(&self, app: &AppRecord) -> StoreResult<Vec<huiliu_store::mall::Reward>> {
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| mall::rewards(tx, app_seq))
            .await
    }

    async fn restock_reward(
        &self,
        app: &AppRecord,
        key: &str,
        delta: i64,
    ) -> StoreResult<huiliu_store::mall::Restocked> {
        let (app_seq, key) = (app.store_key, key.to_string());
        self.writer
            .write(move |tx| mall::restock(tx, app_seq, &key, delta))
            .await
    }

    async fn reward(
        &self,
        app: &AppRecord,
        key: &str,
    ) -> StoreResult<Option<huiliu_store::mall::Reward>> {
        let (app_seq, key) = (app.store_key, key.to_string());
        self.writer
            .write(move |tx| mall::one_reward(tx, app_seq, &key))
            .await
    }

    async fn add_coupon_codes(
        &self,
        app: &AppRecord,
        key: &str,
        codes: &[String],
        now_us: i64,
    ) -> StoreResult<Option<(usize, usize)>> {
        let (app_seq, key, codes) = (app.store_key, key.to_string(), codes.to_vec());
        self.writer
            .write(move |tx| mall::add_codes(tx, app_seq, &key, &codes, now_us))
            .await
    }

    async fn redeem(
        &self,
        app: &AppRecord,
        request: &huiliu_store::mall::RedeemRequest,
    ) -> StoreResult<huiliu_store::mall::RedeemOutcome> {
        let (app_seq, zone, request) = (app.store_key, app.timezone.clone(), request.clone());
        self.writer
            .write(move |tx| mall::redeem(tx, app_seq, &zone, &request))
            .await
    }

    async fn redemption(
        &self,
        app: &AppRecord,
        id: i64,
    ) -> StoreResult<Option<huiliu_store::mall::Redemption>> {
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| mall::get_redemption(tx, app_seq, id))
            .await
    }

    async fn redemption_action(
        &self,
        app: &AppRecord,
        id: i64,
        action: huiliu_store::mall::RedemptionAction,
        now_us: i64,
    ) -> StoreResult<huiliu_store::mall::ActionOutcome> {
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| mall::act(tx, app_seq, id, action, now_us))
            .await
    }

    async fn put_tier_config(
        &self,
        app: &AppRecord,
        config: &huiliu_domain::tiers::TierConfig,
        now_us: i64,
    ) -> StoreResult<i64> {
        let (app_seq, config) = (app.store_key, config.clone());
        self.writer
            .write(move |tx| mall::put_tier_config(tx, app_seq, &config, now_us))
            .await
    }

    async fn tier_config(
        &self,
        app: &AppRecord,
    ) -> StoreResult<Option<(i64, huiliu_domain::tiers::TierConfig)>> {
        let stored: Option<(i64, String)> = sqlx::query_as(huiliu_store::tiers::LATEST_CONFIG)
            .bind(app.store_key)
            .fetch_optional(&self.reader)
            .await?;
        stored
            .map(|(v, c)| huiliu_store::tiers::config_of(&c).map(|c| (v, c)))
            .transpose()
    }

    async fn membership(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<huiliu_store::tiers::Membership>> {
        let (app_seq, zone, user_id) = (app.store_key, app.timezone.clone(), user_id.clone());
        self.writer
            .write(move |tx| mall::membership(tx, app_seq, user_id.as_str(), &zone, now_us))
            .await
    }

    async fn tiers_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        self.writer
            .write(move |tx| mall::sweep_grace(tx, now_us, i64::from(limit)))
            .await
    }

    async fn add_growth(
        &self,
        app: &AppRecord,
        request: &huiliu_store::tiers::GrowthRequest,
    ) -> StoreResult<huiliu_store::tiers::GrowthOutcome> {
        let (app_seq, zone, request) = (app.store_key, app.timezone.clone(), request.clone());
        self.writer
            .write(move |tx| mall::add_growth(tx, app_seq, &zone, &request))
            .await
    }

    async fn loyalty_items(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
    ) -> StoreResult<Vec<(String, String)>> {
        let app_seq = app.store_key;
        self.writer
            .write(move |tx| earning::items(tx, app_seq, kind))
            .await
    }

    async fn put_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
        body: &str,
        now_us: i64,
    ) -> StoreResult<()> {
        let (app_seq, key, body) = (app.store_key, key.to_string(), body.to_string());
        self.writer
            .write(move |tx| earning::put_item(tx, app_seq, kind, &key, &body, now_us))
            .await
    }

    async fn delete_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
    ) -> StoreResult<bool> {
        let (app_seq, key) = (app.store_key, key.to_string());
        self.writer
            .write(move |tx| earning::delete_item(tx, app_seq, kind, &key))
            .await
    }

    async fn process_awards(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        self.writer
            .write(move |tx| earning::process(tx, now_us, i64::from(limit)))
            .await
    }

    async fn sign_in(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<huiliu_store::earning::SignInOutcome> {
        let (app_seq, zone, user_id) = (app.store_key, app.timezone.clone(), user_id.clone());
        self.writer
            .write(move |tx| earning::sign_in(tx, app_seq, &zone, user_id.as_str(), now_us))
            .await
    }

    async fn user_tasks(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<Vec<huiliu_domain::earning::TaskView>>> {
        let (app_seq, zone, user_id) = (app.store_key, app.timezone.clone(), user_id.clone());
        self.writer
            .write(move |tx| earning::user_tasks(tx, app_seq, &zone, user_id.as_str(), now_us))
            .await
    }

    async fn mark_opened(
        &self,
        app: &AppRecord,
        opens: &[(UserId, String, i64)],
    ) -> StoreResult<usize> {
        let (app_seq, opens) = (app.store_key, opens.to_vec());
        self.writer
            .write(move |tx| {
                let mut changed = 0;
                for (user_id, code, at_us) in &opens {
                    changed += tx
                        .execute(
                            messages::MARK_OPENED,
                            rusqlite::params![at_us, app_seq, code, user_id.as_str()],
                        )
                        .map_err(writer::to_store_error)?;
                }
                Ok(changed)
            })
            .await
    }

    async fn user_by_openid(&self, app: &AppRecord, openid: &str) -> StoreResult<Option<UserId>> {
        let row: Option<(String,)> = sqlx::query_as(messages::USER_BY_OPENID)
            .bind(app.store_key)
            .bind(openid)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|(id,)| UserId::parse(id).map_err(StoreError::internal))
            .transpose()
    }

    async fn settle_unknown_outcome(
        &self,
        app: &AppRecord,
        event: &messages::SentEvent,
    ) -> StoreResult<Option<String>> {
        let (app_seq, event) = (app.store_key, event.clone());
        self.writer
            .write(move |tx| outbox::settle(tx, app_seq, &event))
            .await
    }

    async fn close(&self) {
        // The writer thread finishes queued work and ends when its last handle drops.
        let _ = self.writer.write(|_| Ok(())).await;
        self.reader.close().await;
    }
}
