//! huiliu's production store: PostgreSQL, shareable by several stateless nodes.
//!
//! Every write is one short transaction. New users take the next dense index under
//! a row lock on their app, so two nodes never hand out the same index; the rare
//! deadlock between two batches updating the same users is retried.
#![forbid(unsafe_code)]

mod activity;
mod earning;
mod ingest;
mod mall;
mod outbox;
mod points;
mod points_batch;
mod subscriptions;
mod users;

use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{AnalyticsSettings, DayBitmap};
use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::UserId;
use huiliu_domain::templates::Template;
use huiliu_domain::time::to_micros;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::messages;
use huiliu_store::{
    sql, stored_template, ActivityCursor, ActivityRows, AppColumns, AppRecord, EventColumns,
    IngestOutcome, KeyColumns, KeyRecord, RebuildMark, Recorded, ScannedEvent, Store, StoreError,
    StoreResult, StoredEvent, StoredToken, StoredWechat, SubscriptionRecord, SubscriptionReport,
    UserRecord, WechatColumns,
};
use jiff::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often a transaction that lost a deadlock or serialization race is tried again.
const MAX_ATTEMPTS: usize = 5;

/// The PostgreSQL store. Cloning is cheap and shares the pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Earns, spends and holds go through it, batched.
    ledger: points_batch::Batcher,
}

impl PostgresStore {
    /// Connects to a `postgres://` URL and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with_pool_size(url, 32).await
    }

    pub async fn open_with_pool_size(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("cannot use the PostgreSQL URL: {e}")))?
            .application_name("huiliu");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        // Several nodes may start together; sqlx's migrator takes an advisory lock.
        MIGRATIONS.run(&pool).await.map_err(|e| {
            StoreError::Config(format!("cannot migrate the PostgreSQL database: {e}"))
        })?;
        let ledger = points_batch::Batcher::start(pool.clone());
        Ok(Self { pool, ledger })
    }

    /// The database's raw single-row commit rate: `rows` one-row `INSERT`s into a
    /// bare table, each its own transaction (autocommit), from `clients`
    /// connections at once. Rows per second; the table is dropped afterwards.
    pub async fn raw_commit_baseline(&self, rows: usize, clients: usize) -> StoreResult<f64> {
        sqlx::raw_sql(
            "DROP TABLE IF EXISTS bench_raw_commits;
             CREATE TABLE bench_raw_commits (id BIGSERIAL PRIMARY KEY, user_index BIGINT NOT NULL,
               amount BIGINT NOT NULL, created_us BIGINT NOT NULL);",
        )
        .execute(&self.pool)
        .await?;
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = std::time::Instant::now();
        let workers: Vec<_> = (0..clients.max(1))
            .map(|_| {
                let (pool, next) = (self.pool.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= rows {
                            return Ok::<_, sqlx::Error>(());
                        }
                        let i = i as i64;
                        sqlx::query("INSERT INTO bench_raw_commits (user_index, amount, created_us) VALUES ($1, $2, $3)")
                            .bind(i % 100_000)
                            .bind(i % 97 + 1)
                            .bind(i)
                            .execute(&pool)
                            .await?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.map_err(StoreError::internal)??;
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        sqlx::query("DROP TABLE bench_raw_commits")
            .execute(&self.pool)
            .await?;
        Ok(rate)
    }

    /// The plain bulk-load rate of this database for the given rows: `COPY` into a
    /// copy of the events table (bare, or with the events table's indexes), one
    /// commit per batch, no dedupe check and no user lookups. Benchmarks compare ingest to it.
    pub async fn raw_insert_baseline(
        &self,
        batches: &[Vec<ValidEvent>],
        table: huiliu_store::batch::RawTable,
    ) -> StoreResult<u64> {
        ingest::raw_copy_baseline(&self.pool, batches, table).await
    }
}

/// Whether a failed transaction lost a race that a retry can win
/// (deadlock_detected, serialization_failure, unique_violation on a racing insert).
fn is_retryable(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "23505"))
}

/// What an idempotency key of app `app_seq` in `scope` found stored before.
pub(crate) async fn earlier<T: huiliu_store::DeserializeOwned>(
    tx: &mut sqlx::PgConnection,
    app_seq: i64,
    scope: &str,
    key: &huiliu_store::IdempotencyKey,
) -> Result<Option<huiliu_store::Earlier<T>>, sqlx::Error> {
    let stored: Option<(Vec<u8>, String)> = sqlx::query_as(sql::FIND_IDEMPOTENCY)
        .bind(app_seq)
        .bind(scope)
        .bind(&key.key)
        .fetch_optional(tx)
        .await?;
    key.earlier(stored)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Runs `attempt` again while it fails with a retryable conflict.
async fn with_retries<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(error) if tries < MAX_ATTEMPTS && is_retryable(&error) => {
                tracing::debug!(%error, tries, "retrying a transaction that lost a race");
                // A short, growing pause lets the winner commit before we try again.
                tokio::time::sleep(Duration::from_millis(2u64 << tries.min(6))).await;
            }
            result => return result.map_err(StoreError::from),
        }
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_app(&self, app: &NewApp) -> StoreResult<AppRecord> {
        let now = to_micros(Timestamp::now());
        let mut tx = self.pool.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO apps (app_id, name, timezone, created_us) VALUES ($1, $2, $3, $4) RETURNING seq",
        )
        .bind(app.id.as_str())
        .bind(&app.name)
        .bind(app.timezone.name())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for key in [&app.secret_key, &app.publishable_key] {
            sqlx::query(
                "INSERT INTO api_keys (key_id, app_seq, kind, secret_hash, created_us) VALUES ($1, $2, $3, $4, $5)",
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
        let rows: Vec<AppColumns> = sqlx::query_as(sql::LIST_APPS).fetch_all(&self.pool).await?;
        rows.into_iter().map(AppRecord::from_row).collect()
    }

    async fn find_app(&self, id: &AppId) -> StoreResult<Option<AppRecord>> {
        let row: Option<AppColumns> = sqlx::query_as(sql::FIND_APP)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(AppRecord::from_row).transpose()
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        let row: Option<KeyColumns> = sqlx::query_as(sql::FIND_KEY)
            .bind(key_id)
            .fetch_optional(&self.pool)
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
        with_retries(|| ingest::ingest(&self.pool, app, source, &events)).await
    }

    async fn get_user(&self, app: &AppRecord, user_id: &UserId) -> StoreResult<Option<UserRecord>> {
        users::get_user(&self.pool, app.store_key, user_id.as_str(), false).await
    }

    async fn update_user_profile(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        patch: &ProfilePatch,
    ) -> StoreResult<UserRecord> {
        users::update_profile(&self.pool, app.store_key, user_id.as_str(), patch).await
    }

    async fn get_event(&self, app: &AppRecord, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        let row: Option<EventColumns> = sqlx::query_as(sql::GET_EVENT)
            .bind(app.store_key)
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(StoredEvent::from_columns).transpose()
    }

    async fn count_events(&self, app: &AppRecord) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(sql::COUNT_EVENTS)
            .bind(app.store_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u64)
    }

    async fn update_analytics_settings(
        &self,
        app: &AppRecord,
        settings: &AnalyticsSettings,
    ) -> StoreResult<AppRecord> {
        let text = serde_json::to_string(settings).map_err(StoreError::internal)?;
        sqlx::query("UPDATE apps SET analytics = $2 WHERE seq = $1")
            .bind(app.store_key)
            .bind(text)
            .execute(&self.pool)
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
        activity::rows_after(&self.pool, app.store_key, cursor).await
    }

    async fn compact_activity(&self, app: &AppRecord, max_packed: usize) -> StoreResult<usize> {
        with_retries(|| activity::compact(&self.pool, app.store_key, max_packed)).await
    }

    async fn scan_events(
        &self,
        app: &AppRecord,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<ScannedEvent>> {
        activity::scan_events(&self.pool, app.store_key, after_seq, limit).await
    }

    async fn rebuild_mark(&self, _app: &AppRecord) -> StoreResult<RebuildMark> {
        activity::snapshot(&self.pool).await.map(RebuildMark)
    }

    async fn replace_activity(
        &self,
        app: &AppRecord,
        mark: &RebuildMark,
        rows: Vec<DayBitmap>,
    ) -> StoreResult<()> {
        with_retries(|| activity::replace(&self.pool, app.store_key, &mark.0, &rows)).await
    }

    async fn funnel_events(
        &self,
        app: &AppRecord,
        names: &[String],
        from_us: i64,
        to_us: i64,
        with_props: bool,
    ) -> StoreResult<Vec<FunnelEvent>> {
        activity::funnel_events(
            &self.pool,
            app.store_key,
            names,
            (from_us, to_us),
            with_props,
        )
        .await
    }

    async fn put_template(&self, app: &AppRecord, template: &Template) -> StoreResult<()> {
        let definition = serde_json::to_string(template).map_err(StoreError::internal)?;
        sqlx::query(sql::PUT_TEMPLATE)
            .bind(app.store_key)
            .bind(&template.template_id)
            .bind(definition)
            .bind(to_micros(Timestamp::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_template(
        &self,
        app: &AppRecord,
        template_id: &str,
    ) -> StoreResult<Option<Template>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(sql::GET_TEMPLATE)
            .bind(app.store_key)
            .bind(template_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(stored_template).transpose()
    }

    async fn list_templates(&self, app: &AppRecord) -> StoreResult<Vec<Template>> {
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(sql::LIST_TEMPLATES)
            .bind(app.store_key)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(stored_template).collect()
    }

    async fn put_wechat_settings(
        &self,
        app: &AppRecord,
        settings: &StoredWechat,
    ) -> StoreResult<()> {
        sqlx::query(sql::PUT_WECHAT)
            .bind(app.store_key)
            .bind(&settings.appid)
            .bind(&settings.secret_sealed)
            .bind(&settings.token_sealed)
            .bind(&settings.aes_key_sealed)
            .bind(&settings.api_base)
            .bind(to_micros(Timestamp::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_wechat_settings(&self, app: &AppRecord) -> StoreResult<Option<StoredWechat>> {
        let row: Option<WechatColumns> = sqlx::query_as(sql::GET_WECHAT)
            .bind(app.store_key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(StoredWechat::from_columns))
    }

    async fn record_subscriptions(
        &self,
        app: &AppRecord,
        report: &SubscriptionReport,
    ) -> StoreResult<Recorded> {
        with_retries(|| subscriptions::record(&self.pool, app.store_key, report)).await
    }

    async fn list_subscriptions(
        &self,
        app: &AppRecord,
        user_id: &UserId,
    ) -> StoreResult<Option<Vec<SubscriptionRecord>>> {
        subscriptions::list(&self.pool, app.store_key, user_id.as_str()).await
    }

    async fn wechat_token(&self, app: &AppRecord) -> StoreResult<Option<StoredToken>> {
        let row: Option<(Vec<u8>, i64)> = sqlx::query_as(sql::GET_TOKEN)
            .bind(app.store_key)
            .fetch_optional(&self.pool)
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
        sqlx::query(sql::ENSURE_TOKEN_ROW)
            .bind(app.store_key)
            .execute(&self.pool)
            .await?;
        // One statement: concurrent leases queue on the row lock, and each re-checks
        // the condition against the lease committed before it.
        let taken = sqlx::query(sql::LEASE_TOKEN)
            .bind(holder)
            .bind(until_us)
            .bind(app.store_key)
            .bind(now_us)
            .bind(holder)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(taken == 1)
    }

    async fn put_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        token: &StoredToken,
    ) -> StoreResult<bool> {
        let stored = sqlx::query(sql::PUT_TOKEN)
            .bind(&token.token_sealed)
            .bind(token.expires_us)
            .bind(app.store_key)
            .bind(holder)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(stored == 1)
    }

    async fn drop_wechat_token(&self, app: &AppRecord, failing: &[u8]) -> StoreResult<bool> {
        let dropped = sqlx::query(sql::DROP_TOKEN)
            .bind(app.store_key)
            .bind(failing)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(dropped == 1)
    }

    async fn enqueue_message(
        &self,
        app: &AppRecord,
        message: &messages::NewMessage,
    ) -> StoreResult<messages::Enqueued> {
        with_retries(|| outbox::enqueue(&self.pool, app.store_key, message)).await
    }

    async fn get_message(
        &self,
        app: &AppRecord,
        id: &str,
    ) -> StoreResult<Option<messages::MessageRecord>> {
        let row: Option<messages::MessageColumns> = sqlx::query_as(messages::GET_MESSAGE)
            .bind(app.store_key)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(messages::MessageRecord::from_columns).transpose()
    }

    async fn claim_messages(
        &self,
        request: &messages::ClaimRequest,
    ) -> StoreResult<Vec<messages::ClaimedMessage>> {
        with_retries(|| outbox::claim(&self.pool, request)).await
    }

    async fn finish_messages(
        &self,
        holder: &str,
        now_us: i64,
        finished: &[messages::Finished],
    ) -> StoreResult<usize> {
        with_retries(|| outbox::finish(&self.pool, holder, now_us, finished)).await
    }

    async fn points_transaction(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::PointsRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        self.ledger.submit(app.store_key, request).await
    }

    async fn points_settle(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::SettleRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        with_retries(|| points::settle(&self.pool, app.store_key, request)).await
    }

    async fn points_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        with_retries(|| points::sweep(&self.pool, now_us, i64::from(limit))).await
    }

    async fn points_summary(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<huiliu_store::points::PointsSummary>> {
        Ok(points::summary(&self.pool, app.store_key, user_id.as_str(), now_us).await?)
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
            .fetch_optional(&self.pool)
            .await?;
        let Some((user,)) = user else {
            return Ok(None);
        };
        let rows: Vec<p::EntryColumns> = sqlx::query_as(p::HISTORY)
            .bind(app.store_key)
            .bind(user)
            .bind(before_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
            .fetch_one(&self.pool)
            .await?;
        let (debt, on_hold): (i64, i64) = sqlx::query_as(p::LIABILITY_ACCOUNTS)
            .bind(app.store_key)
            .fetch_one(&self.pool)
            .await?;
        let mut sums = Vec::with_capacity(periods.len());
        for (from, to) in periods {
            let rows: Vec<(String, i64)> = sqlx::query_as(p::LIABILITY_PERIOD)
                .bind(app.store_key)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
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
            .fetch_optional(&self.pool)
            .await?;
        huiliu_store::points::policy_of(stored)
    }

    async fn put_points_policy(
        &self,
        app: &AppRecord,
        policy: &huiliu_store::points::PointsPolicy,
    ) -> StoreResult<()> {
        sqlx::query(huiliu_store::points::PUT_SETTINGS)
            .bind(app.store_key)
            .bind(serde_json::to_string(&policy.expiry).map_err(StoreError::internal)?)
            .bind(huiliu_store::points::shortfall_name(policy.shortfall))
            .bind(to_micros(Timestamp::now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_reward(
        &self,
        app: &AppRecord,
        key: &str,
        spec: &huiliu_domain::mall::RewardSpec,
        now_us: i64,
    ) -> StoreResult<()> {
        Ok(mall::put_reward(&self.pool, app.store_key, key, spec, now_us).await?)
    }

    async fn rewards(&self, app: &AppRecord) -> StoreResult<Vec<huiliu_store::mall::Reward>> {
        Ok(mall::rewards(&self.pool, app.store_key).await?)
    }

    async fn restock_reward(
        &self,
        app: &AppRecord,
        key: &str,
        delta: i64,
    ) -> StoreResult<huiliu_store::mall::Restocked> {
        Ok(mall::restock(&self.pool, app.store_key, key, delta).await?)
    }

    async fn reward(
        &self,
        app: &AppRecord,
        key: &str,
    ) -> StoreResult<Option<huiliu_store::mall::Reward>> {
        let mut connection = self.pool.acquire().await?;
        Ok(mall::reward(&mut connection, app.store_key, key).await?)
    }

    async fn add_coupon_codes(
        &self,
        app: &AppRecord,
        key: &str,
        codes: &[String],
        now_us: i64,
    ) -> StoreResult<Option<(usize, usize)>> {
        with_retries(|| mall::add_codes(&self.pool, app.store_key, key, codes, now_us)).await
    }

    async fn redeem(
        &self,
        app: &AppRecord,
        request: &huiliu_store::mall::RedeemRequest,
    ) -> StoreResult<huiliu_store::mall::RedeemOutcome> {
        with_retries(|| mall::redeem(&self.pool, app.store_key, &app.timezone, request)).await
    }

    async fn redemption(
        &self,
        app: &AppRecord,
        id: i64,
    ) -> StoreResult<Option<huiliu_store::mall::Redemption>> {
        Ok(mall::get_redemption(&self.pool, app.store_key, id).await?)
    }

    async fn redemption_action(
        &self,
        app: &AppRecord,
        id: i64,
        action: huiliu_store::mall::RedemptionAction,
        now_us: i64,
    ) -> StoreResult<huiliu_store::mall::ActionOutcome> {
        with_retries(|| mall::act(&self.pool, app.store_key, id, action, now_us)).await
    }

    async fn put_tier_config(
        &self,
        app: &AppRecord,
        config: &huiliu_domain::tiers::TierConfig,
        now_us: i64,
    ) -> StoreResult<i64> {
        with_retries(|| mall::put_tier_config(&self.pool, app.store_key, config, now_us)).await
    }

    async fn tier_config(
        &self,
        app: &AppRecord,
    ) -> StoreResult<Option<(i64, huiliu_domain::tiers::TierConfig)>> {
        let stored: Option<(i64, String)> = sqlx::query_as(huiliu_store::tiers::LATEST_CONFIG)
            .bind(app.store_key)
            .fetch_optional(&self.pool)
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
        with_retries(|| {
            mall::membership(
                &self.pool,
                app.store_key,
                user_id.as_str(),
                &app.timezone,
                now_us,
            )
        })
        .await
    }

    async fn tiers_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        with_retries(|| mall::sweep_grace(&self.pool, now_us, i64::from(limit))).await
    }

    async fn add_growth(
        &self,
        app: &AppRecord,
        request: &huiliu_store::tiers::GrowthRequest,
    ) -> StoreResult<huiliu_store::tiers::GrowthOutcome> {
        with_retries(|| mall::add_growth(&self.pool, app.store_key, &app.timezone, request)).await
    }

    async fn loyalty_items(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
    ) -> StoreResult<Vec<(String, String)>> {
        let mut connection = self.pool.acquire().await?;
        Ok(earning::items(&mut connection, app.store_key, kind).await?)
    }

    async fn put_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
        body: &str,
        now_us: i64,
    ) -> StoreResult<()> {
        with_retries(|| earning::put_item(&self.pool, app.store_key, kind, key, body, now_us)).await
    }

    async fn delete_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
    ) -> StoreResult<bool> {
        with_retries(|| earning::delete_item(&self.pool, app.store_key, kind, key)).await
    }

    async fn process_awards(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        with_retries(|| earning::process(&self.pool, now_us, i64::from(limit))).await
    }

    async fn sign_in(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<huiliu_store::earning::SignInOutcome> {
        with_retries(|| {
            earning::sign_in(
                &self.pool,
                app.store_key,
                &app.timezone,
                user_id.as_str(),
                now_us,
            )
        })
        .await
    }

    async fn user_tasks(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<Vec<huiliu_domain::earning::TaskView>>> {
        Ok(earning::user_tasks(
            &self.pool,
            app.store_key,
            &app.timezone,
            user_id.as_str(),
            now_us,
        )
        .await?)
    }

    async fn mark_opened(
        &self,
        app: &AppRecord,
        opens: &[(UserId, String, i64)],
    ) -> StoreResult<usize> {
        let mut changed = 0;
        for (user_id, code, at_us) in opens {
            changed += sqlx::query(messages::MARK_OPENED)
                .bind(at_us)
                .bind(app.store_key)
                .bind(code)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await?
                .rows_affected() as usize;
        }
        Ok(changed)
    }

    async fn user_by_openid(&self, app: &AppRecord, openid: &str) -> StoreResult<Option<UserId>> {
        let row: Option<(String,)> = sqlx::query_as(messages::USER_BY_OPENID)
            .bind(app.store_key)
            .bind(openid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(id,)| UserId::parse(id).map_err(StoreError::internal))
            .transpose()
    }

    async fn settle_unknown_outcome(
        &self,
        app: &AppRecord,
        event: &messages::SentEvent,
    ) -> StoreResult<Option<String>> {
        with_retries(|| outbox::settle(&self.pool, app.store_key, event)).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
