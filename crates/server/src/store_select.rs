//! Picks the backend once, from the database URL's scheme, and dispatches to it statically.

use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{AnalyticsSettings, DayBitmap};
use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::UserId;
use huiliu_domain::templates::Template;
use huiliu_domain::users::ProfilePatch;
use huiliu_store::messages;
use huiliu_store::{
    ActivityCursor, ActivityRows, AppRecord, IngestOutcome, KeyRecord, RebuildMark, Recorded,
    ScannedEvent, Store, StoreError, StoreResult, StoredEvent, StoredToken, StoredWechat,
    SubscriptionRecord, SubscriptionReport, UserRecord,
};
use huiliu_store_postgres::PostgresStore;
use huiliu_store_sqlite::SqliteStore;

/// One of huiliu's stores, chosen at startup.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

/// The database URL forms huiliu accepts, for error messages.
pub const ACCEPTED_URLS: &str =
    "sqlite://PATH (e.g. sqlite://huiliu.db), sqlite::memory:, or postgres://USER@HOST[:PORT]/DATABASE";

/// Which backend a URL names; anything else is refused rather than guessed at,
/// so a typo never silently creates an empty SQLite file.
pub fn backend_of(url: &str) -> Result<&'static str, StoreError> {
    if url.starts_with("sqlite:") {
        Ok("sqlite")
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok("postgres")
    } else {
        let scheme = url.split(':').next().unwrap_or_default();
        Err(StoreError::Config(format!(
            "unsupported database URL scheme {scheme:?}; use {ACCEPTED_URLS}"
        )))
    }
}

/// Opens the store a URL names and applies its pending migrations.
pub async fn open_store(url: &str) -> StoreResult<AnyStore> {
    match backend_of(url)? {
        "sqlite" => Ok(AnyStore::Sqlite(SqliteStore::open(url).await?)),
        _ => Ok(AnyStore::Postgres(PostgresStore::open(url).await?)),
    }
}

impl AnyStore {
    /// The store's raw single-row commit rate (see each backend's `raw_commit_baseline`).
    pub async fn raw_commit_baseline(&self, rows: usize, clients: usize) -> StoreResult<f64> {
        match self {
            AnyStore::Sqlite(s) => s.raw_commit_baseline(rows).await,
            AnyStore::Postgres(s) => s.raw_commit_baseline(rows, clients).await,
        }
    }

    /// The store's plain bulk-insert rate for these rows (see each backend's `raw_insert_baseline`).
    pub async fn raw_insert_baseline(
        &self,
        batches: &[Vec<ValidEvent>],
        table: huiliu_store::batch::RawTable,
    ) -> StoreResult<u64> {
        match self {
            AnyStore::Sqlite(s) => s.raw_insert_baseline(batches, table).await,
            AnyStore::Postgres(s) => s.raw_insert_baseline(batches, table).await,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call.await,
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(s) => s.backend(),
            AnyStore::Postgres(s) => s.backend(),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, s => s.ping())
    }

    async fn create_app(&self, app: &NewApp) -> StoreResult<AppRecord> {
        dispatch!(self, s => s.create_app(app))
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        dispatch!(self, s => s.list_apps())
    }

    async fn find_app(&self, id: &AppId) -> StoreResult<Option<AppRecord>> {
        dispatch!(self, s => s.find_app(id))
    }

    async fn find_key(&self, key_id: &str) -> StoreResult<Option<KeyRecord>> {
        dispatch!(self, s => s.find_key(key_id))
    }

    async fn ingest_events(
        &self,
        app: &AppRecord,
        source: EventSource,
        events: Vec<ValidEvent>,
    ) -> StoreResult<IngestOutcome> {
        dispatch!(self, s => s.ingest_events(app, source, events))
    }

    async fn get_user(&self, app: &AppRecord, user_id: &UserId) -> StoreResult<Option<UserRecord>> {
        dispatch!(self, s => s.get_user(app, user_id))
    }

    async fn update_user_profile(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        patch: &ProfilePatch,
    ) -> StoreResult<UserRecord> {
        dispatch!(self, s => s.update_user_profile(app, user_id, patch))
    }

    async fn get_event(&self, app: &AppRecord, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        dispatch!(self, s => s.get_event(app, event_id))
    }

    async fn count_events(&self, app: &AppRecord) -> StoreResult<u64> {
        dispatch!(self, s => s.count_events(app))
    }

    async fn update_analytics_settings(
        &self,
        app: &AppRecord,
        settings: &AnalyticsSettings,
    ) -> StoreResult<AppRecord> {
        dispatch!(self, s => s.update_analytics_settings(app, settings))
    }

    async fn activity_rows(
        &self,
        app: &AppRecord,
        cursor: ActivityCursor,
    ) -> StoreResult<ActivityRows> {
        dispatch!(self, s => s.activity_rows(app, cursor))
    }

    async fn compact_activity(&self, app: &AppRecord, max_packed: usize) -> StoreResult<usize> {
        dispatch!(self, s => s.compact_activity(app, max_packed))
    }

    async fn scan_events(
        &self,
        app: &AppRecord,
        after_seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<ScannedEvent>> {
        dispatch!(self, s => s.scan_events(app, after_seq, limit))
    }

    async fn rebuild_mark(&self, app: &AppRecord) -> StoreResult<RebuildMark> {
        dispatch!(self, s => s.rebuild_mark(app))
    }

    async fn replace_activity(
        &self,
        app: &AppRecord,
        mark: &RebuildMark,
        rows: Vec<DayBitmap>,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.replace_activity(app, mark, rows))
    }

    async fn funnel_events(
        &self,
        app: &AppRecord,
        names: &[String],
        from_us: i64,
        to_us: i64,
        with_props: bool,
    ) -> StoreResult<Vec<FunnelEvent>> {
        dispatch!(self, s => s.funnel_events(app, names, from_us, to_us, with_props))
    }

    async fn put_template(&self, app: &AppRecord, template: &Template) -> StoreResult<()> {
        dispatch!(self, s => s.put_template(app, template))
    }

    async fn get_template(
        &self,
        app: &AppRecord,
        template_id: &str,
    ) -> StoreResult<Option<Template>> {
        dispatch!(self, s => s.get_template(app, template_id))
    }

    async fn list_templates(&self, app: &AppRecord) -> StoreResult<Vec<Template>> {
        dispatch!(self, s => s.list_templates(app))
    }

    async fn put_wechat_settings(
        &self,
        app: &AppRecord,
        settings: &StoredWechat,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.put_wechat_settings(app, settings))
    }

    async fn get_wechat_settings(&self, app: &AppRecord) -> StoreResult<Option<StoredWechat>> {
        dispatch!(self, s => s.get_wechat_settings(app))
    }

    async fn record_subscriptions(
        &self,
        app: &AppRecord,
        report: &SubscriptionReport,
    ) -> StoreResult<Recorded> {
        dispatch!(self, s => s.record_subscriptions(app, report))
    }

    async fn list_subscriptions(
        &self,
        app: &AppRecord,
        user_id: &UserId,
    ) -> StoreResult<Option<Vec<SubscriptionRecord>>> {
        dispatch!(self, s => s.list_subscriptions(app, user_id))
    }

    async fn wechat_token(&self, app: &AppRecord) -> StoreResult<Option<StoredToken>> {
        dispatch!(self, s => s.wechat_token(app))
    }

    async fn lease_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        now_us: i64,
        until_us: i64,
    ) -> StoreResult<bool> {
        dispatch!(self, s => s.lease_wechat_token(app, holder, now_us, until_us))
    }

    async fn put_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        token: &StoredToken,
    ) -> StoreResult<bool> {
        dispatch!(self, s => s.put_wechat_token(app, holder, token))
    }

    async fn drop_wechat_token(&self, app: &AppRecord, failing: &[u8]) -> StoreResult<bool> {
        dispatch!(self, s => s.drop_wechat_token(app, failing))
    }

    async fn enqueue_message(
        &self,
        app: &AppRecord,
        message: &messages::NewMessage,
    ) -> StoreResult<messages::Enqueued> {
        dispatch!(self, s => s.enqueue_message(app, message))
    }

    async fn get_message(
        &self,
        app: &AppRecord,
        id: &str,
    ) -> StoreResult<Option<messages::MessageRecord>> {
        dispatch!(self, s => s.get_message(app, id))
    }

    async fn claim_messages(
        &self,
        request: &messages::ClaimRequest,
    ) -> StoreResult<Vec<messages::ClaimedMessage>> {
        dispatch!(self, s => s.claim_messages(request))
    }

    async fn finish_messages(
        &self,
        holder: &str,
        now_us: i64,
        finished: &[messages::Finished],
    ) -> StoreResult<usize> {
        dispatch!(self, s => s.finish_messages(holder, now_us, finished))
    }

    async fn points_transaction(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::PointsRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        dispatch!(self, s => s.points_transaction(app, request))
    }

    async fn points_summary(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<huiliu_store::points::PointsSummary>> {
        dispatch!(self, s => s.points_summary(app, user_id, now_us))
    }

    async fn points_history(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        before_seq: i64,
        limit: u32,
    ) -> StoreResult<Option<Vec<huiliu_store::points::PointsEntry>>> {
        dispatch!(self, s => s.points_history(app, user_id, before_seq, limit))
    }

    async fn points_liability(
        &self,
        app: &AppRecord,
        now_us: i64,
        horizons_us: [i64; 2],
        periods: &[(i64, i64)],
    ) -> StoreResult<huiliu_store::points::Liability> {
        dispatch!(self, s => s.points_liability(app, now_us, horizons_us, periods))
    }

    async fn put_reward(
        &self,
        app: &AppRecord,
        key: &str,
        spec: &huiliu_domain::mall::RewardSpec,
        now_us: i64,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.put_reward(app, key, spec, now_us))
    }

    async fn rewards(&self, app: &AppRecord) -> StoreResult<Vec<huiliu_store::mall::Reward>> {
        dispatch!(self, s => s.rewards(app))
    }

    async fn restock_reward(
        &self,
        app: &AppRecord,
        key: &str,
        delta: i64,
    ) -> StoreResult<huiliu_store::mall::Restocked> {
        dispatch!(self, s => s.restock_reward(app, key, delta))
    }

    async fn reward(
        &self,
        app: &AppRecord,
        key: &str,
    ) -> StoreResult<Option<huiliu_store::mall::Reward>> {
        dispatch!(self, s => s.reward(app, key))
    }

    async fn add_coupon_codes(
        &self,
        app: &AppRecord,
        key: &str,
        codes: &[String],
        now_us: i64,
    ) -> StoreResult<Option<(usize, usize)>> {
        dispatch!(self, s => s.add_coupon_codes(app, key, codes, now_us))
    }

    async fn redeem(
        &self,
        app: &AppRecord,
        request: &huiliu_store::mall::RedeemRequest,
    ) -> StoreResult<huiliu_store::mall::RedeemOutcome> {
        dispatch!(self, s => s.redeem(app, request))
    }

    async fn redemption(
        &self,
        app: &AppRecord,
        id: i64,
    ) -> StoreResult<Option<huiliu_store::mall::Redemption>> {
        dispatch!(self, s => s.redemption(app, id))
    }

    async fn redemption_action(
        &self,
        app: &AppRecord,
        id: i64,
        action: huiliu_store::mall::RedemptionAction,
        now_us: i64,
    ) -> StoreResult<huiliu_store::mall::ActionOutcome> {
        dispatch!(self, s => s.redemption_action(app, id, action, now_us))
    }

    async fn put_tier_config(
        &self,
        app: &AppRecord,
        config: &huiliu_domain::tiers::TierConfig,
        now_us: i64,
    ) -> StoreResult<i64> {
        dispatch!(self, s => s.put_tier_config(app, config, now_us))
    }

    async fn tier_config(
        &self,
        app: &AppRecord,
    ) -> StoreResult<Option<(i64, huiliu_domain::tiers::TierConfig)>> {
        dispatch!(self, s => s.tier_config(app))
    }

    async fn membership(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<huiliu_store::tiers::Membership>> {
        dispatch!(self, s => s.membership(app, user_id, now_us))
    }

    async fn tiers_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        dispatch!(self, s => s.tiers_sweep(now_us, limit))
    }

    async fn add_growth(
        &self,
        app: &AppRecord,
        request: &huiliu_store::tiers::GrowthRequest,
    ) -> StoreResult<huiliu_store::tiers::GrowthOutcome> {
        dispatch!(self, s => s.add_growth(app, request))
    }

    async fn loyalty_items(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
    ) -> StoreResult<Vec<(String, String)>> {
        dispatch!(self, s => s.loyalty_items(app, kind))
    }

    async fn put_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
        body: &str,
        now_us: i64,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.put_loyalty_item(app, kind, key, body, now_us))
    }

    async fn delete_loyalty_item(
        &self,
        app: &AppRecord,
        kind: huiliu_store::earning::ItemKind,
        key: &str,
    ) -> StoreResult<bool> {
        dispatch!(self, s => s.delete_loyalty_item(app, kind, key))
    }

    async fn process_awards(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        dispatch!(self, s => s.process_awards(now_us, limit))
    }

    async fn sign_in(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<huiliu_store::earning::SignInOutcome> {
        dispatch!(self, s => s.sign_in(app, user_id, now_us))
    }

    async fn user_tasks(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> StoreResult<Option<Vec<huiliu_domain::earning::TaskView>>> {
        dispatch!(self, s => s.user_tasks(app, user_id, now_us))
    }

    async fn points_policy(
        &self,
        app: &AppRecord,
    ) -> StoreResult<huiliu_store::points::PointsPolicy> {
        dispatch!(self, s => s.points_policy(app))
    }

    async fn put_points_policy(
        &self,
        app: &AppRecord,
        policy: &huiliu_store::points::PointsPolicy,
    ) -> StoreResult<()> {
        dispatch!(self, s => s.put_points_policy(app, policy))
    }

    async fn points_settle(
        &self,
        app: &AppRecord,
        request: &huiliu_store::points::SettleRequest,
    ) -> StoreResult<huiliu_store::points::PointsOutcome> {
        dispatch!(self, s => s.points_settle(app, request))
    }

    async fn points_sweep(&self, now_us: i64, limit: u32) -> StoreResult<usize> {
        dispatch!(self, s => s.points_sweep(now_us, limit))
    }

    async fn mark_opened(
        &self,
        app: &AppRecord,
        opens: &[(UserId, String, i64)],
    ) -> StoreResult<usize> {
        dispatch!(self, s => s.mark_opened(app, opens))
    }

    async fn user_by_openid(&self, app: &AppRecord, openid: &str) -> StoreResult<Option<UserId>> {
        dispatch!(self, s => s.user_by_openid(app, openid))
    }

    async fn settle_unknown_outcome(
        &self,
        app: &AppRecord,
        event: &messages::SentEvent,
    ) -> StoreResult<Option<String>> {
        dispatch!(self, s => s.settle_unknown_outcome(app, event))
    }

    async fn close(&self) {
        dispatch!(self, s => s.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_schemes_are_accepted() {
        assert_eq!(backend_of("sqlite://huiliu.db").unwrap(), "sqlite");
        assert_eq!(backend_of("sqlite::memory:").unwrap(), "sqlite");
        assert_eq!(backend_of("postgres://u@h/db").unwrap(), "postgres");
        assert_eq!(backend_of("postgresql://u@h/db").unwrap(), "postgres");
        for bad in ["mysql://x", "huiliu.db", "sqllite://x", ""] {
            let message = backend_of(bad).unwrap_err().to_string();
            assert!(message.contains("sqlite://PATH"), "{message}");
        }
    }
}
