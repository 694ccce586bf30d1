//! Records and SQL of member tiers, shared by both stores.
//!
//! A member's state names the configuration version it was judged under; when
//! the app's configuration changed since, the state is first carried over
//! (never to a worse standing) and then judged under the new one.

use crate::points::Cause;
use crate::IdempotencyKey;
use huiliu_domain::ids::UserId;
use huiliu_domain::tiers::{carry_over, evaluate, Evaluation, GrowthEntry, TierConfig, TierState};
use huiliu_domain::time::AppTimeZone;

/// The idempotency scope of `POST /v1/users/{id}/growth`.
pub const GROWTH_SCOPE: &str = "growth";

/// App $1's newest configuration: version, config.
pub const LATEST_CONFIG: &str =
    "SELECT version, config FROM tier_configs WHERE app_seq = $1 ORDER BY version DESC LIMIT 1";

/// App $1's configuration version $2.
pub const CONFIG_VERSION: &str =
    "SELECT config FROM tier_configs WHERE app_seq = $1 AND version = $2";

/// A new configuration: app $1, version $2, config $3, at $4.
pub const INSERT_CONFIG: &str =
    "INSERT INTO tier_configs (app_seq, version, config, created_us) VALUES ($1, $2, $3, $4)";

/// Member $2 of app $1: tier, since, grace until, config version.
pub const MEMBER: &str = "SELECT tier, since_us, grace_until_us, config_version FROM member_tiers
    WHERE app_seq = $1 AND user_index = $2";

/// Stores member $2's state (app $1): tier $3, since $4, grace $5, version $6, at $7.
pub const PUT_MEMBER: &str = "INSERT INTO member_tiers
    (app_seq, user_index, tier, since_us, grace_until_us, config_version, updated_us)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (app_seq, user_index) DO UPDATE SET tier = excluded.tier,
    since_us = excluded.since_us, grace_until_us = excluded.grace_until_us,
    config_version = excluded.config_version, updated_us = excluded.updated_us";

/// Members whose grace ended by $1, at most $2: app_seq, user_index, the app's time zone.
pub const GRACE_ENDED: &str = "SELECT m.app_seq, m.user_index, a.timezone FROM member_tiers m
    JOIN apps a ON a.seq = m.app_seq WHERE m.grace_until_us <= $1 LIMIT $2";

/// Member $2's growth entries (app $1): at, amount.
pub const GROWTH: &str = "SELECT at_us, amount FROM growth_entries
    WHERE app_seq = $1 AND user_index = $2 ORDER BY at_us";

/// Adds growth: app $1, user $2, at $3, amount $4, reason $5, cause $6/$7.
pub const INSERT_GROWTH: &str = "INSERT INTO growth_entries
    (app_seq, user_index, at_us, amount, reason, cause_type, cause_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// A member row: tier, since_us, grace_until_us, config_version.
pub type MemberColumns = (String, i64, Option<i64>, i64);

/// What the store loaded about one member.
pub struct Loaded {
    /// The app's newest configuration and its version.
    pub latest: Option<(i64, TierConfig)>,
    pub member: Option<MemberColumns>,
    /// The configuration the member was last judged under, when older.
    pub judged_under: Option<TierConfig>,
    pub growth: Vec<(i64, i64)>,
}

pub fn config_of(text: &str) -> Result<TierConfig, crate::StoreError> {
    serde_json::from_str(text).map_err(crate::StoreError::internal)
}

/// A member's standing now: the evaluation and the version it is under; `None`
/// when the app has no tiers.
pub fn standing(loaded: &Loaded, now_us: i64, zone: &AppTimeZone) -> Option<(Evaluation, i64)> {
    let (version, config) = loaded.latest.as_ref()?;
    let state = loaded
        .member
        .as_ref()
        .map(|(tier, since_us, grace_until_us, judged_version)| {
            let state = TierState {
                tier: tier.clone(),
                since_us: *since_us,
                grace_until_us: *grace_until_us,
            };
            match (&loaded.judged_under, *judged_version == *version) {
                (Some(old), false) => carry_over(old, config, &state, now_us, zone),
                _ => state,
            }
        });
    let growth: Vec<GrowthEntry> = loaded
        .growth
        .iter()
        .map(|(at_us, amount)| GrowthEntry {
            at_us: *at_us,
            amount: *amount,
        })
        .collect();
    Some((
        evaluate(config, state.as_ref(), &growth, now_us, zone),
        *version,
    ))
}

/// Whether the stored member row must be written after `standing`.
pub fn changed(loaded: &Loaded, evaluation: &Evaluation, version: i64) -> bool {
    loaded
        .member
        .as_ref()
        .is_none_or(|(tier, since, grace, v)| {
            *tier != evaluation.state.tier
                || *since != evaluation.state.since_us
                || *grace != evaluation.state.grace_until_us
                || *v != version
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowthRequest {
    pub user_id: UserId,
    pub amount: i64,
    pub reason: String,
    pub cause: Cause,
    pub now_us: i64,
    pub idempotency: IdempotencyKey,
}

/// A member's tier as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    pub tier: Option<String>,
    pub since_us: Option<i64>,
    pub grace_until_us: Option<i64>,
    /// Growth counted by the app's window now.
    pub window_growth: i64,
    /// All growth ever.
    pub lifetime_growth: i64,
    pub multiplier_permille: u32,
    /// The next tier up and the growth still needed for it.
    pub next_tier: Option<String>,
    pub growth_to_next: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowthOutcome {
    Done(Membership),
    Replayed(Membership),
    KeyReused,
    UnknownUser,
}

/// The API's view of a member's standing.
pub fn membership(loaded: &Loaded, now_us: i64, zone: &AppTimeZone) -> Membership {
    let lifetime_growth = loaded.growth.iter().map(|(_, a)| a).sum();
    let Some((evaluation, _)) = standing(loaded, now_us, zone) else {
        return Membership {
            tier: None,
            since_us: None,
            grace_until_us: None,
            window_growth: lifetime_growth,
            lifetime_growth,
            multiplier_permille: 1000,
            next_tier: None,
            growth_to_next: None,
        };
    };
    let config = &loaded.latest.as_ref().expect("standing found a config").1;
    let growth: Vec<GrowthEntry> = loaded
        .growth
        .iter()
        .map(|(at_us, amount)| GrowthEntry {
            at_us: *at_us,
            amount: *amount,
        })
        .collect();
    let window_growth =
        huiliu_domain::tiers::growth_in_window(&growth, config.window, now_us, zone);
    let rank = huiliu_domain::tiers::tier_rank(config, &evaluation.state.tier).unwrap_or(0);
    let next = config.tiers.get(rank + 1);
    Membership {
        tier: Some(evaluation.state.tier.clone()),
        since_us: Some(evaluation.state.since_us),
        grace_until_us: evaluation.state.grace_until_us,
        window_growth,
        lifetime_growth,
        multiplier_permille: evaluation.multiplier_permille,
        next_tier: next.map(|t| t.key.clone()),
        growth_to_next: next.map(|t| (t.threshold - window_growth).max(0)),
    }
}
