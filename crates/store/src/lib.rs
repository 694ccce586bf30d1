//! huiliu's storage seam: the use-case-level operations every backend provides,
//! the records they return and the errors they raise.
//!
//! The trait is deliberately coarse (`ingest_events`, not `insert_event`): each
//! method is one short transaction, so a backend can choose its own fastest SQL
//! and the server never holds a transaction open across a network call.
#![forbid(unsafe_code)]

pub mod batch;
pub mod earning;
mod error;
pub mod mall;
pub mod messages;
pub mod points;
pub mod profile;
mod records;
pub mod sql;
pub mod tiers;

#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "contract")]
mod contract_outbox;
#[cfg(feature = "contract")]
mod contract_points;
#[cfg(feature = "contract")]
pub mod testdb;

pub use error::StoreError;
pub use records::{
    funnel_event, pairing_of, parse_status, stored_template, subscription_state, CreditBalances,
    Earlier, FunnelColumns, IdempotencyKey, Recorded, StoredToken, StoredWechat,
    SubscriptionColumns, SubscriptionRecord, SubscriptionReport, WechatColumns,
};
pub use records::{
    ActivityCursor, ActivityRows, AppColumns, AppRecord, EventColumns, IngestOutcome, KeyColumns,
    KeyRecord, RebuildMark, ScannedEvent, StoredEvent, UserColumns, UserRecord,
};
/// What a stored idempotent answer must be to be read back.
pub use serde::de::DeserializeOwned;
pub use serde::Serialize;

use huiliu_domain::analytics::funnel::FunnelEvent;
use huiliu_domain::analytics::{AnalyticsSettings, DayBitmap};
use huiliu_domain::apps::{AppId, NewApp};
use huiliu_domain::events::{EventSource, ValidEvent};
use huiliu_domain::ids::UserId;
use huiliu_domain::templates::Template;
use huiliu_domain::users::ProfilePatch;
use std::future::Future;

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything huiliu keeps, behind one interface with a SQLite and a PostgreSQL implementation.
pub trait Store: Clone + Send + Sync + 'static {
    /// Which backend this is, for logs and metrics (`sqlite` or `postgres`).
    fn backend(&self) -> &'static str;

    /// Cheap round trip proving the store answers (for `/readyz`).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Stores a new app and its two keys (hashes only).
    fn create_app(&self, app: &NewApp) -> impl Future<Output = StoreResult<AppRecord>> + Send;

    /// Every app, oldest first.
    fn list_apps(&self) -> impl Future<Output = StoreResult<Vec<AppRecord>>> + Send;

    fn find_app(&self, id: &AppId) -> impl Future<Output = StoreResult<Option<AppRecord>>> + Send;

    /// The key row for a key id, with its app; revoked keys are not returned.
    fn find_key(&self, key_id: &str)
        -> impl Future<Output = StoreResult<Option<KeyRecord>>> + Send;

    /// Stores a batch of validated events whose ids are unique within the batch.
    ///
    /// Events whose id the app has stored before are skipped and counted as
    /// duplicates. New users get the app's next dense indexes. The accepted events
    /// enter the activity index (one packed row from
    /// [`DeltaBuilder`](huiliu_domain::analytics::DeltaBuilder)) in the same
    /// transaction, so the index never misses a stored event, whatever crashes. The batch is committed before this returns,
    /// all or nothing. The events are taken by value:
    /// a backend that writes on another thread moves them there instead of copying.
    fn ingest_events(
        &self,
        app: &AppRecord,
        source: EventSource,
        events: Vec<ValidEvent>,
    ) -> impl Future<Output = StoreResult<IngestOutcome>> + Send;

    fn get_user(
        &self,
        app: &AppRecord,
        user_id: &UserId,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;

    /// Creates the user if needed (with a fresh index) and applies the profile update.
    fn update_user_profile(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        patch: &ProfilePatch,
    ) -> impl Future<Output = StoreResult<UserRecord>> + Send;

    /// One stored event by the id its sender gave it.
    fn get_event(
        &self,
        app: &AppRecord,
        event_id: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredEvent>>> + Send;

    /// How many events the app has stored.
    fn count_events(&self, app: &AppRecord) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Changes which events count as activity and which are tracked; returns the updated app.
    /// Events already stored keep their place in the index until it is rebuilt.
    fn update_analytics_settings(
        &self,
        app: &AppRecord,
        settings: &AnalyticsSettings,
    ) -> impl Future<Output = StoreResult<AppRecord>> + Send;

    /// The activity index rows written since `cursor` (all of them for a default cursor).
    fn activity_rows(
        &self,
        app: &AppRecord,
        cursor: ActivityCursor,
    ) -> impl Future<Output = StoreResult<ActivityRows>> + Send;

    /// Opens up to `max_packed` packed batch rows (oldest first) and merges their
    /// bitmaps into one row per day, kind and event; returns how many packed rows
    /// were merged. Safe beside concurrent ingest and other nodes compacting.
    fn compact_activity(
        &self,
        app: &AppRecord,
        max_packed: usize,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Events after `after_seq` in stored order, at most `limit`: a rebuild reads the app with this.
    fn scan_events(
        &self,
        app: &AppRecord,
        after_seq: i64,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<ScannedEvent>>> + Send;

    /// Taken before a rebuild starts reading events: index rows written by
    /// transactions that had committed by then are replaced by the rebuild;
    /// later rows are kept.
    fn rebuild_mark(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<RebuildMark>> + Send;

    /// Replaces the index rows from before `mark` with a rebuilt index.
    /// Readers start over (the index generation moves on).
    fn replace_activity(
        &self,
        app: &AppRecord,
        mark: &RebuildMark,
        rows: Vec<DayBitmap>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Events named `names` with `from_us <= time < to_us`, ordered by user, time
    /// and arrival; with their props when `with_props`.
    fn funnel_events(
        &self,
        app: &AppRecord,
        names: &[String],
        from_us: i64,
        to_us: i64,
        with_props: bool,
    ) -> impl Future<Output = StoreResult<Vec<FunnelEvent>>> + Send;

    /// Stores a template definition, replacing the app's earlier one with the same id.
    fn put_template(
        &self,
        app: &AppRecord,
        template: &Template,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn get_template(
        &self,
        app: &AppRecord,
        template_id: &str,
    ) -> impl Future<Output = StoreResult<Option<Template>>> + Send;

    /// The app's templates, by id.
    fn list_templates(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<Vec<Template>>> + Send;

    /// Stores an app's WeChat settings (secrets already sealed), replacing earlier ones.
    fn put_wechat_settings(
        &self,
        app: &AppRecord,
        settings: &StoredWechat,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    fn get_wechat_settings(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<Option<StoredWechat>>> + Send;

    /// Records a user's answers to subscription prompts (creating the user if
    /// needed) and their credit history, in one transaction; with an idempotency key,
    /// a replay gets the first answer and a reused key with another body is refused.
    fn record_subscriptions(
        &self,
        app: &AppRecord,
        report: &SubscriptionReport,
    ) -> impl Future<Output = StoreResult<Recorded>> + Send;

    /// A user's subscriptions by template id; `None` for a user huiliu has never seen.
    fn list_subscriptions(
        &self,
        app: &AppRecord,
        user_id: &UserId,
    ) -> impl Future<Output = StoreResult<Option<Vec<SubscriptionRecord>>>> + Send;

    /// The app's cached access token, if any.
    fn wechat_token(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<Option<StoredToken>>> + Send;

    /// Takes the right to refresh the app's token until `until_us`, unless another
    /// holder's lease is still running at `now_us`; true when taken.
    fn lease_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        now_us: i64,
        until_us: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores a fresh token and ends `holder`'s lease; false (nothing stored) when
    /// `holder` no longer holds the lease.
    fn put_wechat_token(
        &self,
        app: &AppRecord,
        holder: &str,
        token: &StoredToken,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Forgets the cached token only if it is still `failing` (another node may have
    /// replaced it already); true when forgotten.
    fn drop_wechat_token(
        &self,
        app: &AppRecord,
        failing: &[u8],
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Accepts a message into the outbox: `queued`, or `skipped` with a reason when
    /// the user has no credit, no openid, or the template is disabled. One
    /// transaction with the idempotency key.
    fn enqueue_message(
        &self,
        app: &AppRecord,
        message: &messages::NewMessage,
    ) -> impl Future<Output = StoreResult<messages::Enqueued>> + Send;

    fn get_message(
        &self,
        app: &AppRecord,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<messages::MessageRecord>>> + Send;

    /// Claims due messages of every app for `request.holder`: each claimed message
    /// holds its user's one in-flight slot and (one-time templates) one reserved
    /// credit. Also settles what is due without sending: expired messages, messages
    /// whose user has no credit left, leases that ran out (outcome unknown), and
    /// unknown outcomes past their reconciliation deadline (failed, credit released).
    fn claim_messages(
        &self,
        request: &messages::ClaimRequest,
    ) -> impl Future<Output = StoreResult<Vec<messages::ClaimedMessage>>> + Send;

    /// Records the outcomes of `holder`'s sends and moves their credits, in one
    /// transaction. An outcome for a message `holder` no longer holds is ignored;
    /// returns how many were recorded.
    fn finish_messages(
        &self,
        holder: &str,
        now_us: i64,
        finished: &[messages::Finished],
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Records a points earn, spend or hold in one transaction with its
    /// idempotency key; a spend or hold beyond the balance writes nothing.
    fn points_transaction(
        &self,
        app: &AppRecord,
        request: &points::PointsRequest,
    ) -> impl Future<Output = StoreResult<points::PointsOutcome>> + Send;

    /// Captures or releases a hold, or reverses an earlier entry, in one
    /// transaction; a retry of the same action answers as the first time.
    fn points_settle(
        &self,
        app: &AppRecord,
        request: &points::SettleRequest,
    ) -> impl Future<Output = StoreResult<points::PointsOutcome>> + Send;

    /// Writes what time decided for up to `limit` accounts due at `now_us`
    /// (any app): expiry entries, timed-out holds released, cached figures
    /// refreshed after a lot vested. How many accounts it went through.
    fn points_sweep(
        &self,
        now_us: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// A user's points at `now_us`; `None` for a user huiliu has never seen.
    fn points_summary(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<Option<points::PointsSummary>>> + Send;

    /// A user's ledger entries before `before_seq`, newest first, at most `limit`;
    /// `None` for a user huiliu has never seen.
    fn points_history(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        before_seq: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Option<Vec<points::PointsEntry>>>> + Send;

    /// What the app owes in points at `now_us`: outstanding, pending, on hold,
    /// expiring before each of `horizons_us`, and the entries of each period
    /// `[from, to)` summed by kind.
    fn points_liability(
        &self,
        app: &AppRecord,
        now_us: i64,
        horizons_us: [i64; 2],
        periods: &[(i64, i64)],
    ) -> impl Future<Output = StoreResult<points::Liability>> + Send;

    /// The app's points policy (expiry, clawback shortfall).
    fn points_policy(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<points::PointsPolicy>> + Send;

    fn put_points_policy(
        &self,
        app: &AppRecord,
        policy: &points::PointsPolicy,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Creates or replaces a reward (its stock is set to the spec's).
    fn put_reward(
        &self,
        app: &AppRecord,
        key: &str,
        spec: &huiliu_domain::mall::RewardSpec,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Adds (or, negative, withdraws) units of a counted reward in one
    /// conditional update, so restocking never races with redemptions.
    fn restock_reward(
        &self,
        app: &AppRecord,
        key: &str,
        delta: i64,
    ) -> impl Future<Output = StoreResult<mall::Restocked>> + Send;

    fn rewards(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<Vec<mall::Reward>>> + Send;

    fn reward(
        &self,
        app: &AppRecord,
        key: &str,
    ) -> impl Future<Output = StoreResult<Option<mall::Reward>>> + Send;

    /// Adds codes to a coupon-code reward's pool: (added, already there);
    /// `None` when the app has no such coupon-code reward.
    fn add_coupon_codes(
        &self,
        app: &AppRecord,
        key: &str,
        codes: &[String],
        now_us: i64,
    ) -> impl Future<Output = StoreResult<Option<(usize, usize)>>> + Send;

    /// Redeems a reward in one transaction: points held, a unit of stock or a
    /// pool code taken, the reward issued, the hold captured.
    fn redeem(
        &self,
        app: &AppRecord,
        request: &mall::RedeemRequest,
    ) -> impl Future<Output = StoreResult<mall::RedeemOutcome>> + Send;

    fn redemption(
        &self,
        app: &AppRecord,
        id: i64,
    ) -> impl Future<Output = StoreResult<Option<mall::Redemption>>> + Send;

    /// Cancels (points and stock back) or fulfils a redemption; a retry answers the same.
    fn redemption_action(
        &self,
        app: &AppRecord,
        id: i64,
        action: mall::RedemptionAction,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<mall::ActionOutcome>> + Send;

    /// Stores a new version of the app's tier configuration; its version.
    fn put_tier_config(
        &self,
        app: &AppRecord,
        config: &huiliu_domain::tiers::TierConfig,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// The app's tier configuration and its version, if it has tiers.
    fn tier_config(
        &self,
        app: &AppRecord,
    ) -> impl Future<Output = StoreResult<Option<(i64, huiliu_domain::tiers::TierConfig)>>> + Send;

    /// A member's standing now (judged and stored); `None` for an unknown user.
    fn membership(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<Option<tiers::Membership>>> + Send;

    /// Judges again up to `limit` members whose grace ended by `now_us` (any
    /// app), so stored tiers follow the keep threshold without a read. How
    /// many it judged.
    fn tiers_sweep(
        &self,
        now_us: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// Adds growth value (成长值) and judges the member again, in one transaction.
    fn add_growth(
        &self,
        app: &AppRecord,
        request: &tiers::GrowthRequest,
    ) -> impl Future<Output = StoreResult<tiers::GrowthOutcome>> + Send;

    /// The app's earning definitions of `kind` in order: (key, JSON body).
    fn loyalty_items(
        &self,
        app: &AppRecord,
        kind: earning::ItemKind,
    ) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;

    /// Creates or replaces a definition (a new one goes last).
    fn put_loyalty_item(
        &self,
        app: &AppRecord,
        kind: earning::ItemKind,
        key: &str,
        body: &str,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Removes a definition; whether there was one.
    fn delete_loyalty_item(
        &self,
        app: &AppRecord,
        kind: earning::ItemKind,
        key: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Judges up to `limit` queued trusted events (any app) against the rules
    /// and tasks, awarding points in the same transaction that dequeues them.
    /// How many it took.
    fn process_awards(
        &self,
        now_us: i64,
        limit: u32,
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// The daily sign-in; a second call the same local day answers the first.
    fn sign_in(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<earning::SignInOutcome>> + Send;

    /// A user's task list with progress; `None` for an unknown user.
    fn user_tasks(
        &self,
        app: &AppRecord,
        user_id: &UserId,
        now_us: i64,
    ) -> impl Future<Output = StoreResult<Option<Vec<huiliu_domain::earning::TaskView>>>> + Send;

    /// Marks messages opened: each (user, tracking code, time) names a launch that
    /// came from a message's card. The first open counts; returns how many changed.
    fn mark_opened(
        &self,
        app: &AppRecord,
        opens: &[(UserId, String, i64)],
    ) -> impl Future<Output = StoreResult<usize>> + Send;

    /// The user whose openid this is, if huiliu knows one.
    fn user_by_openid(
        &self,
        app: &AppRecord,
        openid: &str,
    ) -> impl Future<Output = StoreResult<Option<UserId>>> + Send;

    /// WeChat's sent event for a user (by openid) and template: settles the
    /// oldest message of theirs whose outcome is unknown, as sent (errcode 0; the
    /// reserved credit spent) or failed (the credit released). Its id, if any.
    fn settle_unknown_outcome(
        &self,
        app: &AppRecord,
        event: &messages::SentEvent,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// Closes connections, waiting for in-flight work; used on graceful shutdown.
    fn close(&self) -> impl Future<Output = ()> + Send;
}
