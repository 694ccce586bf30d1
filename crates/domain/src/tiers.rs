//! Tiers on growth value (成长值): the rules, without storage.
//!
//! Growth value is its own currency, apart from spendable points: it is earned
//! with them but never spent, so redeeming a reward never costs a member their
//! tier (the Open Loyalty #131 bug). An app configures an ordered list of tiers
//! (the first is the base tier everyone holds), the window of growth that
//! counts, a separate 保级 (keep) threshold per tier, a grace period and how far
//! a member falls. [`evaluate`] applies those rules to one member at one
//! instant; [`carry_over`] moves a member across a config change without
//! lowering them: stricter rules reach a holder only after a grace.
//!
//! Integers only; time is microseconds since the epoch, and every day and year
//! boundary is in the app's zone.

use crate::time::{from_micros, AppTimeZone};
use crate::FieldError;
use jiff::civil::Date;
use jiff::{Span, Zoned};
use serde::{Deserialize, Serialize};

/// How many tiers an app may define.
pub const MAX_TIERS: usize = 20;
const MAX_KEY_LEN: usize = 32;
const MAX_NAME_CHARS: usize = 20;
const MAX_MULTIPLIER_PERMILLE: u32 = 10_000;
const MAX_ROLLING_MONTHS: u16 = 36;
const MAX_GRACE_DAYS: u16 = 366;

/// An app's tier policy, stored as JSON and accepted over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierConfig {
    /// Lowest first; the first is the base tier (threshold 0).
    pub tiers: Vec<TierDef>,
    pub window: Window,
    pub downgrade: Downgrade,
    /// Days a member below their tier's keep threshold has to catch up before
    /// moving down; 0 moves them down at the evaluation that finds them short.
    pub grace_days: u16,
}

/// One tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierDef {
    /// Stable identifier (`[a-z0-9_-]`, ≤ 32): members and rewards refer to it.
    pub key: String,
    /// Shown to members; may be renamed freely.
    pub name: String,
    /// Growth in the window needed to reach this tier.
    pub threshold: i64,
    /// 保级: growth in the window needed to keep this tier; `None` is the
    /// threshold. Lower than the threshold lets a member stay on a little less
    /// than it took to get in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_threshold: Option<i64>,
    /// Earning multiplier of members in this tier; 1000 is 1.0x.
    #[serde(default = "no_multiplier")]
    pub multiplier_permille: u32,
}

fn no_multiplier() -> u32 {
    1000
}

impl TierDef {
    pub fn keep_threshold(&self) -> i64 {
        self.keep_threshold.unwrap_or(self.threshold)
    }
}

/// Which growth counts: `{"kind": "lifetime"}`, `{"kind": "calendar_year"}`,
/// `{"kind": "rolling_months", "months": 12}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Window {
    /// All growth ever; it only drops through refunds.
    Lifetime,
    /// Growth of a local calendar year. A tier reached in year N is held
    /// through year N+1: members are judged on the better of last year and
    /// this year (see [`qualifying_growth`]).
    CalendarYear,
    /// Growth in the last `months` months, `(now − months, now]` in local time.
    RollingMonths { months: u16 },
}

/// How far a member falls when their grace ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downgrade {
    /// One tier per judgement; still short of the lower tier's keep threshold,
    /// the member starts a new grace for it, so they lose one tier per grace
    /// period (per local day without grace).
    OneTier,
    /// Straight to the highest tier their growth reaches.
    Recompute,
}

impl TierConfig {
    /// Checks everything [`evaluate`] relies on; field paths look like `tiers[2].threshold`.
    pub fn validate(&self) -> Result<(), FieldError> {
        let count = self.tiers.len();
        let message = format!("must have 1 to {MAX_TIERS} tiers, got {count}");
        require(
            (1..=MAX_TIERS).contains(&count),
            "invalid_length",
            "tiers",
            message,
        )?;
        for (index, tier) in self.tiers.iter().enumerate() {
            validate_tier(tier, &self.tiers[..index])
                .map_err(|e| e.under(&format!("tiers[{index}]")))?;
        }
        if let Window::RollingMonths { months } = self.window {
            let ok = (1..=MAX_ROLLING_MONTHS).contains(&months);
            let message = format!("must be 1 to {MAX_ROLLING_MONTHS}, got {months}");
            require(ok, "out_of_range", "window.months", message)?;
        }
        let message = format!("must be 0 to {MAX_GRACE_DAYS}, got {}", self.grace_days);
        require(
            self.grace_days <= MAX_GRACE_DAYS,
            "out_of_range",
            "grace_days",
            message,
        )
    }
}

fn require(ok: bool, code: &'static str, field: &str, message: String) -> Result<(), FieldError> {
    match ok {
        true => Ok(()),
        false => Err(FieldError::new(code, field, message)),
    }
}

/// One tier's rules, given the tiers before it.
fn validate_tier(tier: &TierDef, earlier: &[TierDef]) -> Result<(), FieldError> {
    let key = &tier.key;
    let key_ok = (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
    let message = format!("{key:?} must be 1 to {MAX_KEY_LEN} of a-z, 0-9, _ and -");
    require(key_ok, "invalid_key", "key", message)?;
    let unique = earlier.iter().all(|t| t.key != *key);
    require(
        unique,
        "duplicate_key",
        "key",
        format!("{key:?} names an earlier tier too"),
    )?;
    let chars = tier.name.trim().chars().count();
    let message = format!("must be 1 to {MAX_NAME_CHARS} characters, got {chars}");
    require(
        (1..=MAX_NAME_CHARS).contains(&chars),
        "invalid_length",
        "name",
        message,
    )?;
    let (ok, message) = match earlier.last() {
        None => (
            tier.threshold == 0,
            "must be 0: the first tier is the base tier".into(),
        ),
        Some(previous) => (
            tier.threshold > previous.threshold,
            format!("must be above the previous tier's ({})", previous.threshold),
        ),
    };
    require(ok, "invalid_threshold", "threshold", message)?;
    let keep = tier.keep_threshold();
    let ok = (0..=tier.threshold).contains(&keep);
    let message = format!(
        "must be 0 to the threshold ({}), got {keep}",
        tier.threshold
    );
    require(ok, "invalid_keep_threshold", "keep_threshold", message)?;
    let permille = tier.multiplier_permille;
    let ok = (1..=MAX_MULTIPLIER_PERMILLE).contains(&permille);
    let message = format!("must be 1 to {MAX_MULTIPLIER_PERMILLE} (1000 is 1.0x), got {permille}");
    require(ok, "out_of_range", "multiplier_permille", message)
}

/// Growth earned (or, negative, taken back) at an instant. A refund should be
/// recorded at the `at_us` of the growth it takes back, so that it leaves the
/// same window the growth was counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowthEntry {
    pub at_us: i64,
    pub amount: i64,
}

/// Sum of the entries in `[from_us, until_us)`, saturating.
fn growth_between(entries: &[GrowthEntry], from_us: i64, until_us: i64) -> i64 {
    let sum: i128 = entries
        .iter()
        .filter(|e| e.at_us >= from_us && e.at_us < until_us)
        .map(|e| i128::from(e.amount))
        .sum();
    sum.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn local(at_us: i64, zone: &AppTimeZone) -> Zoned {
    from_micros(at_us).to_zoned(zone.zone().clone())
}

/// The first instant of a local date (the first existing one on a day whose
/// midnight a daylight-saving change skips).
fn start_of(date: Date, zone: &AppTimeZone) -> i64 {
    date.to_zoned(zone.zone().clone())
        .map(|z| z.timestamp().as_microsecond())
        .unwrap_or(i64::MAX)
}

fn start_of_year(year: i16, zone: &AppTimeZone) -> i64 {
    Date::new(year, 1, 1).map_or(i64::MIN, |d| start_of(d, zone))
}

/// The end (next midnight) of the local day `days` after the day of `from_us`.
fn end_of_day_after(days: u16, from_us: i64, zone: &AppTimeZone) -> i64 {
    local(from_us, zone)
        .date()
        .checked_add(Span::new().days(i64::from(days) + 1))
        .map_or(i64::MAX, |d| start_of(d, zone))
}

/// Growth in `window` as of `now_us`; entries after `now_us` do not count yet.
/// `CalendarYear` is the current local year only (see [`qualifying_growth`]).
pub fn growth_in_window(
    entries: &[GrowthEntry],
    window: Window,
    now_us: i64,
    zone: &AppTimeZone,
) -> i64 {
    let until_us = now_us.saturating_add(1);
    let from_us = match window {
        Window::Lifetime => i64::MIN,
        Window::CalendarYear => start_of_year(local(now_us, zone).year(), zone),
        Window::RollingMonths { months } => local(now_us, zone)
            .checked_sub(Span::new().months(i64::from(months)))
            .map_or(i64::MIN, |start| start.timestamp().as_microsecond() + 1),
    };
    growth_between(entries, from_us, until_us)
}

/// The growth tiers are judged on: the window's growth, except that a calendar
/// year counts the better of last year and this year, so a tier reached in year
/// N holds through year N+1 and the judgement at a new year is on last year.
pub fn qualifying_growth(
    entries: &[GrowthEntry],
    window: Window,
    now_us: i64,
    zone: &AppTimeZone,
) -> i64 {
    let this_window = growth_in_window(entries, window, now_us, zone);
    if window != Window::CalendarYear {
        return this_window;
    }
    let year = local(now_us, zone).year();
    let last_year = growth_between(
        entries,
        start_of_year(year.saturating_sub(1), zone),
        start_of_year(year, zone),
    );
    this_window.max(last_year)
}

/// A member's standing. Stored per member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    /// The tier's key.
    pub tier: String,
    /// When the member entered this tier.
    pub since_us: i64,
    /// Set while the member is below the tier's keep threshold: unless they
    /// catch up, they move down at the first evaluation at or after it.
    pub grace_until_us: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeDirection {
    Up,
    Down,
    /// First placement: the member had no tier before, so no entry rewards are implied.
    Initial,
}

/// A move between tiers, for rewards on `Up` and notices on `Down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierChange {
    pub from: Option<String>,
    pub to: String,
    pub direction: ChangeDirection,
}

/// What [`evaluate`] decided. Entering or leaving grace is not a change of
/// tier; compare `grace_until_us` of the old and new state to send a
/// "keep your tier by …" notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub state: TierState,
    pub change: Option<TierChange>,
    /// The earning multiplier of the resulting tier.
    pub multiplier_permille: u32,
}

/// Position of a tier, 0 being the base tier.
pub fn tier_rank(config: &TierConfig, key: &str) -> Option<usize> {
    config.tiers.iter().position(|t| t.key == key)
}

/// Whether a member of `member_tier` may have a reward restricted to
/// `required_tier` and above; an unknown tier on either side allows nothing.
pub fn allows(config: &TierConfig, member_tier: &str, required_tier: &str) -> bool {
    let required = tier_rank(config, required_tier);
    tier_rank(config, member_tier).is_some_and(|member| required.is_some_and(|r| member >= r))
}

/// `points × permille / 1000`, rounded down, saturating.
pub fn apply_multiplier(points: i64, permille: u32) -> i64 {
    let scaled = (i128::from(points) * i128::from(permille)).div_euclid(1000);
    scaled.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The highest tier `growth` reaches; the base tier for no or negative growth.
fn qualifying_rank(config: &TierConfig, growth: i64) -> usize {
    config
        .tiers
        .iter()
        .rposition(|t| t.threshold <= growth)
        .unwrap_or(0)
}

fn placed(config: &TierConfig, rank: usize, since_us: i64, grace: Option<i64>) -> TierState {
    TierState {
        tier: config.tiers[rank].key.clone(),
        since_us,
        grace_until_us: grace,
    }
}

/// One member's tier at `now_us`. `config` must have passed
/// [`TierConfig::validate`]; `state` must be of this config ([`carry_over`] it
/// after a change). Evaluating again at the same instant changes nothing.
///
/// - Up at once to the highest tier the growth reaches; this clears grace.
/// - Below the tier's keep threshold: grace until the end of the local day
///   `grace_days` after today (no grace: down at once). Back at or above it,
///   grace is cleared. At or after the end of grace, still short: down, by
///   [`Downgrade`]. The base tier is never lost.
/// - A state whose tier is not in `config` is placed afresh as `Initial`,
///   with `from` naming the old tier; only a safety net for a skipped carry-over.
pub fn evaluate(
    config: &TierConfig,
    state: Option<&TierState>,
    entries: &[GrowthEntry],
    now_us: i64,
    zone: &AppTimeZone,
) -> Evaluation {
    let growth = qualifying_growth(entries, config.window, now_us, zone);
    let qualified = qualifying_rank(config, growth);
    let current = state.and_then(|s| tier_rank(config, &s.tier).map(|rank| (s, rank)));
    let (next, direction) = match current {
        Some((state, rank)) => judge(config, state, rank, qualified, growth, now_us, zone),
        None => (
            placed(config, qualified, now_us, None),
            Some(ChangeDirection::Initial),
        ),
    };
    let change = direction.map(|direction| TierChange {
        from: state.map(|s| s.tier.clone()),
        to: next.tier.clone(),
        direction,
    });
    let rank = tier_rank(config, &next.tier).unwrap_or(0);
    Evaluation {
        multiplier_permille: config.tiers[rank].multiplier_permille,
        state: next,
        change,
    }
}

/// The rules for a member holding tier `rank` of `config`.
fn judge(
    config: &TierConfig,
    state: &TierState,
    rank: usize,
    qualified: usize,
    growth: i64,
    now_us: i64,
    zone: &AppTimeZone,
) -> (TierState, Option<ChangeDirection>) {
    if qualified > rank {
        return (
            placed(config, qualified, now_us, None),
            Some(ChangeDirection::Up),
        );
    }
    if rank == 0 || growth >= config.tiers[rank].keep_threshold() {
        let kept = TierState {
            grace_until_us: None,
            ..state.clone()
        };
        return (kept, None);
    }
    let grace_until_us = match state.grace_until_us {
        Some(until) => until,
        None if config.grace_days == 0 => now_us,
        None => end_of_day_after(config.grace_days, now_us, zone),
    };
    if now_us < grace_until_us {
        let in_grace = TierState {
            grace_until_us: Some(grace_until_us),
            ..state.clone()
        };
        return (in_grace, None);
    }
    let lower = match config.downgrade {
        Downgrade::OneTier => rank - 1,
        Downgrade::Recompute => qualified,
    };
    // Judged for the lower tier at once: still short of it, a new grace starts,
    // lasting at least to the end of today so that no member falls two tiers
    // in one day and a second evaluation at the same instant changes nothing.
    let new_grace = (lower > 0 && growth < config.tiers[lower].keep_threshold())
        .then(|| end_of_day_after(config.grace_days, now_us, zone));
    (
        placed(config, lower, now_us, new_grace),
        Some(ChangeDirection::Down),
    )
}

/// Moves a member from `old` to `new` config at `now_us` (the moment the new
/// config is saved) without lowering their standing:
///
/// - A tier whose key survives is kept, whatever its new threshold or position.
/// - A removed tier maps to the better of the nearest surviving tier below it
///   (by its old position) and the highest new tier whose threshold is at most
///   the removed tier's old threshold; `since_us` becomes `now_us`.
/// - When the rules got stricter for the member (a higher keep threshold for
///   the tier they land in, or another window), they get a grace period to
///   meet them: to the deadline a member would have at the next judgement
///   (calendar year: the grace after next New Year; otherwise `grace_days`
///   from now, at least to the end of today). An earlier grace is never
///   shortened. The next evaluation clears it for those who already qualify.
/// - A state whose tier is in neither config is left as is if `new` has it
///   (already carried) and otherwise placed on `new`'s base tier.
pub fn carry_over(
    old: &TierConfig,
    new: &TierConfig,
    state: &TierState,
    now_us: i64,
    zone: &AppTimeZone,
) -> TierState {
    let Some(old_rank) = tier_rank(old, &state.tier) else {
        return match tier_rank(new, &state.tier) {
            Some(_) => state.clone(),
            None => placed(new, 0, now_us, None),
        };
    };
    let old_tier = &old.tiers[old_rank];
    let new_rank = carried_rank(old, new, old_rank);
    let new_tier = &new.tiers[new_rank];
    let stricter =
        old.window != new.window || new_tier.keep_threshold() > old_tier.keep_threshold();
    let grace_until_us = if stricter && new_rank > 0 {
        let protected = next_judgement_deadline(new, now_us, zone);
        Some(state.grace_until_us.map_or(protected, |g| g.max(protected)))
    } else {
        state.grace_until_us
    };
    TierState {
        tier: new_tier.key.clone(),
        since_us: if new_tier.key == state.tier {
            state.since_us
        } else {
            now_us
        },
        grace_until_us,
    }
}

/// Where a holder of `old.tiers[old_rank]` lands in `new`.
fn carried_rank(old: &TierConfig, new: &TierConfig, old_rank: usize) -> usize {
    let old_tier = &old.tiers[old_rank];
    if let Some(rank) = tier_rank(new, &old_tier.key) {
        return rank;
    }
    let nearest_surviving_below = old.tiers[..old_rank]
        .iter()
        .rev()
        .find_map(|t| tier_rank(new, &t.key))
        .unwrap_or(0);
    nearest_surviving_below.max(qualifying_rank(new, old_tier.threshold))
}

/// The earliest a member carried over at `now_us` may move down under `config`:
/// the deadline of its next regular judgement (calendar year: the grace after
/// next New Year; otherwise a grace counted from now, at least to the end of today).
fn next_judgement_deadline(config: &TierConfig, now_us: i64, zone: &AppTimeZone) -> i64 {
    match config.window {
        Window::CalendarYear => {
            let new_year = start_of_year(local(now_us, zone).year().saturating_add(1), zone);
            if config.grace_days == 0 {
                new_year
            } else {
                end_of_day_after(config.grace_days, new_year, zone)
            }
        }
        Window::Lifetime | Window::RollingMonths { .. } => {
            end_of_day_after(config.grace_days, now_us, zone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ChangeDirection::{Down, Initial, Up};

    const HOUR: i64 = 3_600_000_000;

    fn shanghai() -> AppTimeZone {
        AppTimeZone::parse("Asia/Shanghai").unwrap()
    }

    /// A Shanghai wall-clock time (`2027-01-01T00:00`) in microseconds.
    fn us(local: &str) -> i64 {
        let civil: jiff::civil::DateTime = local.parse().unwrap();
        civil
            .to_zoned(shanghai().zone().clone())
            .unwrap()
            .timestamp()
            .as_microsecond()
    }

    fn grow(at: &str, amount: i64) -> GrowthEntry {
        GrowthEntry {
            at_us: us(at),
            amount,
        }
    }

    fn tier(key: &str, threshold: i64, keep: Option<i64>, multiplier: u32) -> TierDef {
        let (key, name) = (key.to_string(), key.to_uppercase());
        let multiplier_permille = multiplier;
        TierDef {
            key,
            name,
            threshold,
            keep_threshold: keep,
            multiplier_permille,
        }
    }

    /// base 0 · silver 1000 (keep 800) · gold 5000 · platinum 20000.
    fn config(window: Window, downgrade: Downgrade, grace_days: u16) -> TierConfig {
        let tiers = vec![
            tier("base", 0, None, 1000),
            tier("silver", 1000, Some(800), 1200),
            tier("gold", 5000, None, 1500),
            tier("platinum", 20000, None, 2000),
        ];
        TierConfig {
            tiers,
            window,
            downgrade,
            grace_days,
        }
    }

    fn holding(key: &str, since: &str, grace_until: Option<&str>) -> TierState {
        let (since_us, grace_until_us) = (us(since), grace_until.map(us));
        TierState {
            tier: key.into(),
            since_us,
            grace_until_us,
        }
    }

    type Judged = (TierState, Option<ChangeDirection>);

    /// [`evaluate`] in Shanghai: the new state and the direction of the change.
    fn eval(cfg: &TierConfig, state: &TierState, entries: &[GrowthEntry], at: &str) -> Judged {
        let e = evaluate(cfg, Some(state), entries, us(at), &shanghai());
        (e.state, e.change.map(|c| c.direction))
    }

    #[test]
    fn validation_names_the_offending_field() {
        let valid = config(Window::Lifetime, Downgrade::OneTier, 30);
        assert_eq!(valid.validate(), Ok(()));
        // "JSON pointer, new value => reported field and code"
        for case in [
            r#"/tiers [] => tiers invalid_length"#,
            r#"/tiers/0/threshold 5 => tiers[0].threshold invalid_threshold"#,
            r#"/tiers/2/threshold 999 => tiers[2].threshold invalid_threshold"#,
            r#"/tiers/2/key "silver" => tiers[2].key duplicate_key"#,
            r#"/tiers/1/key "Silver" => tiers[1].key invalid_key"#,
            r#"/tiers/1/key "" => tiers[1].key invalid_key"#,
            r#"/tiers/1/key "abcdefghijklmnopqrstuvwxyz0123456" => tiers[1].key invalid_key"#,
            r#"/tiers/3/name " " => tiers[3].name invalid_length"#,
            r#"/tiers/3/name "铂金会员铂金会员铂金会员铂金会员铂金会员铂" => tiers[3].name invalid_length"#,
            r#"/tiers/1/keep_threshold 1001 => tiers[1].keep_threshold invalid_keep_threshold"#,
            r#"/tiers/1/keep_threshold -1 => tiers[1].keep_threshold invalid_keep_threshold"#,
            r#"/tiers/2/multiplier_permille 0 => tiers[2].multiplier_permille out_of_range"#,
            r#"/tiers/2/multiplier_permille 10001 => tiers[2].multiplier_permille out_of_range"#,
            r#"/window {"kind": "rolling_months", "months": 0} => window.months out_of_range"#,
            r#"/window {"kind": "rolling_months", "months": 37} => window.months out_of_range"#,
            r#"/grace_days 367 => grace_days out_of_range"#,
        ] {
            let (change, expected) = case.split_once(" => ").unwrap();
            let (pointer, value) = change.split_once(' ').unwrap();
            let mut json = serde_json::to_value(&valid).unwrap();
            *json.pointer_mut(pointer).unwrap() = serde_json::from_str(value).unwrap();
            let err = serde_json::from_value::<TierConfig>(json)
                .unwrap()
                .validate()
                .unwrap_err();
            assert_eq!(format!("{} {}", err.field.unwrap(), err.code), expected);
        }
        let mut widest = config(
            Window::RollingMonths { months: 36 },
            Downgrade::OneTier,
            366,
        );
        widest.tiers = (0..20)
            .map(|i| tier(&format!("t{i}"), i * 10, None, 10_000))
            .collect();
        widest.tiers[19].name = "钻石会员钻石会员钻石会员钻石会员钻石会员".into();
        assert_eq!(widest.validate(), Ok(()), "20 tiers, a 20-character name");
        widest.tiers.push(tier("t20", 1000, None, 1000));
        assert_eq!(
            widest.validate().unwrap_err().field.as_deref(),
            Some("tiers")
        );
    }

    #[test]
    fn config_reads_and_writes_snake_case_json() {
        let json = r#"{
            "tiers": [
                {"key": "base", "name": "普通会员", "threshold": 0},
                {"key": "gold", "name": "黄金会员", "threshold": 5000,
                 "keep_threshold": 4000, "multiplier_permille": 1500}
            ],
            "window": {"kind": "rolling_months", "months": 12},
            "downgrade": "recompute",
            "grace_days": 30
        }"#;
        let parsed: TierConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
        let multipliers = (
            parsed.tiers[0].multiplier_permille,
            parsed.tiers[1].keep_threshold(),
        );
        assert_eq!(multipliers, (1000, 4000), "1.0x by default");
        assert_eq!(parsed.window, Window::RollingMonths { months: 12 });
        let calendar = config(Window::CalendarYear, Downgrade::OneTier, 0);
        let written = serde_json::to_value(calendar).unwrap();
        assert_eq!(
            written["window"],
            serde_json::json!({"kind": "calendar_year"})
        );
        assert_eq!(written["downgrade"], "one_tier");
        assert!(written["tiers"][2].get("keep_threshold").is_none());
    }

    #[test]
    fn windows_count_growth_in_local_time() {
        let zone = shanghai();
        let new_year = us("2027-01-01T00:00");
        assert_eq!(
            new_year,
            "2026-12-31T16:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_microsecond()
        );
        let entries = [
            grow("2026-12-31T23:59:59", 100),
            grow("2027-01-01T00:00", 10),
            grow("2027-02-28T12:00", 1000), // exactly three months before `now`
            grow("2027-02-28T12:00:01", 20000),
            grow("2027-06-01T00:00", 300000), // the future
        ];
        let now = us("2027-05-31T12:00"); // May 31 − 3 months is February 28
        let growth = |window| growth_in_window(&entries, window, now, &zone);
        assert_eq!(growth(Window::Lifetime), 21110);
        assert_eq!(growth(Window::CalendarYear), 21010);
        assert_eq!(growth(Window::RollingMonths { months: 3 }), 20000);
        let year = Window::CalendarYear;
        assert_eq!(growth_in_window(&entries, year, new_year, &zone), 10);
        // The year's judgement counts the better of last year and this one.
        assert_eq!(qualifying_growth(&entries, year, new_year, &zone), 100);
        assert_eq!(qualifying_growth(&entries, year, now, &zone), 21010);
        let la = AppTimeZone::parse("America/Los_Angeles").unwrap();
        let in_la = growth_in_window(&entries, year, new_year, &la);
        assert_eq!(in_la, 110, "still 2026 there");
    }

    #[test]
    fn a_new_member_starts_where_their_growth_reaches() {
        let cfg = config(Window::Lifetime, Downgrade::OneTier, 30);
        let entries = [grow("2027-01-01T00:00", 6000)];
        let e = evaluate(&cfg, None, &entries, us("2027-03-01T00:00"), &shanghai());
        assert_eq!(e.state, holding("gold", "2027-03-01T00:00", None));
        let change = TierChange {
            from: None,
            to: "gold".into(),
            direction: Initial,
        };
        assert_eq!((e.change, e.multiplier_permille), (Some(change), 1500));
        let refunded = [grow("2027-01-01T00:00", -50)];
        let e = evaluate(&cfg, None, &refunded, us("2027-03-01T00:00"), &shanghai());
        assert_eq!(
            e.state.tier, "base",
            "negative growth still holds the base tier"
        );
    }

    #[test]
    fn upgrades_are_immediate_and_clear_grace() {
        let cfg = config(Window::RollingMonths { months: 12 }, Downgrade::OneTier, 30);
        let in_grace = holding("silver", "2026-01-01T00:00", Some("2027-04-02T00:00"));
        let entries = [grow("2027-03-01T00:00", 20000)];
        let judged = eval(&cfg, &in_grace, &entries, "2027-03-02T00:00");
        let platinum = holding("platinum", "2027-03-02T00:00", None);
        assert_eq!(judged, (platinum, Some(Up)), "two tiers at once");
    }

    #[test]
    fn grace_is_entered_left_and_expires_at_local_midnight() {
        let cfg = config(Window::RollingMonths { months: 12 }, Downgrade::OneTier, 7);
        let silver = holding("silver", "2026-06-01T00:00", None);
        let mut entries = vec![
            grow("2026-04-01T00:00", 1000),
            grow("2026-06-01T00:00", 700),
        ];
        // The April 2026 growth has left the window; grace runs to the end of
        // the seventh day after.
        let (in_grace, change) = eval(&cfg, &silver, &entries, "2027-04-10T18:00");
        let deadline = "2027-04-18T00:00";
        assert_eq!(
            in_grace,
            holding("silver", "2026-06-01T00:00", Some(deadline))
        );
        assert_eq!(change, None);
        let just_before = "2027-04-17T23:59:59";
        let judged = eval(&cfg, &in_grace, &entries, just_before);
        assert_eq!(judged, (in_grace.clone(), None));
        let judged = eval(&cfg, &in_grace, &entries, deadline);
        assert_eq!(judged, (holding("base", deadline, None), Some(Down)));
        // Back at the keep threshold (800, below the 1000 to get in): grace cleared.
        entries.push(grow("2027-04-12T00:00", 100));
        assert_eq!(eval(&cfg, &in_grace, &entries, just_before), (silver, None));
    }

    #[test]
    fn one_tier_and_recompute_fall_differently() {
        let entries = [grow("2027-01-01T00:00", 500)];
        let now = "2027-02-02T00:00";
        let platinum = holding("platinum", "2026-01-01T00:00", Some(now));
        let recompute = config(Window::Lifetime, Downgrade::Recompute, 7);
        let judged = eval(&recompute, &platinum, &entries, now);
        assert_eq!(judged, (holding("base", now, None), Some(Down)));
        // One tier, and a new grace for gold at once: one tier per grace period.
        let one_tier = config(Window::Lifetime, Downgrade::OneTier, 7);
        let gold = holding("gold", now, Some("2027-02-10T00:00"));
        assert_eq!(
            eval(&one_tier, &platinum, &entries, now),
            (gold.clone(), Some(Down))
        );
        let (silver, _) = eval(&one_tier, &gold, &entries, "2027-02-10T00:00");
        assert_eq!(silver.tier, "silver");
        // Without grace the first finding moves a member down, then one tier a day.
        let no_grace = config(Window::Lifetime, Downgrade::OneTier, 0);
        let platinum = holding("platinum", "2026-01-01T00:00", None);
        let (gold, _) = eval(&no_grace, &platinum, &entries, "2027-02-02T09:00");
        let end_of_day = "2027-02-03T00:00";
        assert_eq!(gold, holding("gold", "2027-02-02T09:00", Some(end_of_day)));
        let later = eval(&no_grace, &gold, &entries, "2027-02-02T23:00");
        assert_eq!(later, (gold.clone(), None));
        assert_eq!(
            eval(&no_grace, &gold, &entries, end_of_day).0.tier,
            "silver"
        );
    }

    #[test]
    fn refunds_can_take_a_lifetime_tier_away() {
        let cfg = config(Window::Lifetime, Downgrade::Recompute, 0);
        let silver = holding("silver", "2026-05-01T00:00", None);
        let mut entries = vec![grow("2026-05-01T00:00", 1200)];
        let now = "2027-05-01T00:00";
        assert_eq!(eval(&cfg, &silver, &entries, now), (silver.clone(), None));
        entries.push(grow("2026-05-01T00:00", -600));
        let judged = eval(&cfg, &silver, &entries, now);
        assert_eq!(judged, (holding("base", now, None), Some(Down)));
    }

    #[test]
    fn a_calendar_year_tier_holds_through_the_next_year() {
        let cfg = config(Window::CalendarYear, Downgrade::OneTier, 30);
        let entries = [grow("2026-06-01T00:00", 5000)];
        let gold = holding("gold", "2026-06-01T00:00", None);
        // All of 2027, from its first instant to its last: judged on 2026.
        for at in ["2027-01-01T00:00", "2027-12-31T23:59:59"] {
            assert_eq!(
                eval(&cfg, &gold, &entries, at),
                (gold.clone(), None),
                "{at}"
            );
        }
        // 2027 brought nothing: at New Year 2028, grace to the end of January 31.
        let (in_grace, _) = eval(&cfg, &gold, &entries, "2028-01-01T00:00");
        assert_eq!(in_grace.grace_until_us, Some(us("2028-02-01T00:00")));
        let mut renewed = entries.to_vec();
        renewed.push(grow("2028-01-10T00:00", 5000));
        let kept = eval(&cfg, &in_grace, &renewed, "2028-01-10T00:00");
        assert_eq!(kept, (gold, None));
        let (lost, _) = eval(&cfg, &in_grace, &entries, "2028-02-01T00:00");
        assert_eq!(lost.tier, "silver");
    }

    #[test]
    fn raising_a_threshold_does_not_demote_holders() {
        let zone = shanghai();
        let old = config(Window::Lifetime, Downgrade::Recompute, 0);
        let mut new = old.clone();
        new.tiers[2].threshold = 8000; // gold's keep threshold follows
        let entries = [grow("2026-01-01T00:00", 6000)];
        let gold = holding("gold", "2026-01-01T00:00", None);
        let now = "2027-03-01T12:00";
        let carried = carry_over(&old, &new, &gold, us(now), &zone);
        let end_of_day = "2027-03-02T00:00";
        assert_eq!(
            carried,
            holding("gold", "2026-01-01T00:00", Some(end_of_day))
        );
        assert_eq!(eval(&new, &carried, &entries, now), (carried.clone(), None));
        // The new rules apply once the grace the change gave has run out.
        assert_eq!(eval(&new, &carried, &entries, end_of_day).0.tier, "silver");
        // A calendar-year holder keeps the tier to the next judgement, after New Year.
        let old = config(Window::CalendarYear, Downgrade::OneTier, 30);
        let mut new = old.clone();
        (new.tiers[2].threshold, new.tiers[2].keep_threshold) = (7000, Some(6500));
        let carried = carry_over(&old, &new, &gold, us(now), &zone);
        assert_eq!(carried.grace_until_us, Some(us("2028-02-01T00:00")));
        // Lowering a threshold, or renaming, changes nothing for holders.
        let mut easier = old.clone();
        (easier.tiers[2].threshold, easier.tiers[2].name) = (4000, "金卡".into());
        assert_eq!(carry_over(&old, &easier, &gold, us(now), &zone), gold);
    }

    #[test]
    fn removing_a_tier_keeps_holders_at_least_at_the_next_lower_one() {
        let zone = shanghai();
        let old = config(Window::Lifetime, Downgrade::OneTier, 30);
        let now = "2027-03-01T00:00";
        let carry = |new: &TierConfig, key| {
            let state = holding(key, "2026-01-01T00:00", None);
            carry_over(&old, new, &state, us(now), &zone)
        };
        let mut without_gold = old.clone();
        without_gold.tiers.remove(2);
        assert_eq!(carry(&without_gold, "gold"), holding("silver", now, None));
        let silver = holding("silver", "2026-01-01T00:00", None);
        assert_eq!(carry(&without_gold, "silver"), silver);
        // A new tier at or below the removed one's threshold is better still.
        let mut reshaped = without_gold.clone();
        reshaped
            .tiers
            .insert(2, tier("gold_lite", 4000, Some(1000), 1400));
        assert_eq!(carry(&reshaped, "gold").tier, "gold_lite");
        let mut new_base = old.clone();
        new_base.tiers[0].key = "member".into();
        assert_eq!(carry(&new_base, "base").tier, "member");
        // Skipping the carry-over places the member afresh, never as a move down.
        let gold = holding("gold", "2026-01-01T00:00", None);
        let judged = eval(&without_gold, &gold, &[grow("2026-01-01T00:00", 6000)], now);
        assert_eq!(judged, (holding("silver", now, None), Some(Initial)));
    }

    #[test]
    fn multipliers_round_down_and_saturate() {
        assert_eq!(apply_multiplier(101, 1500), 151);
        assert_eq!(apply_multiplier(7, 1000), 7);
        assert_eq!(apply_multiplier(9, 1), 0);
        assert_eq!(apply_multiplier(-3, 1500), -5, "down, not toward zero");
        assert_eq!(apply_multiplier(i64::MAX, 10_000), i64::MAX);
    }

    #[test]
    fn restricted_rewards_need_the_tier_or_above() {
        let cfg = config(Window::Lifetime, Downgrade::OneTier, 0);
        assert_eq!(tier_rank(&cfg, "gold"), Some(2));
        assert!(allows(&cfg, "platinum", "gold") && allows(&cfg, "gold", "gold"));
        assert!(!allows(&cfg, "silver", "gold"));
        let unknown = allows(&cfg, "gold", "diamond") || allows(&cfg, "diamond", "base");
        assert!(!unknown, "an unknown tier allows nothing");
    }

    fn arb_config() -> impl Strategy<Value = TierConfig> {
        let keys = vec!["base", "bronze", "silver", "gold", "platinum", "diamond"];
        let tier_params = (1i64..3000, proptest::option::of(0i64..=100), 1u32..3000);
        let window = prop_oneof![
            Just(Window::Lifetime),
            Just(Window::CalendarYear),
            (1u16..=36).prop_map(|months| Window::RollingMonths { months }),
        ];
        let downgrade = prop_oneof![Just(Downgrade::OneTier), Just(Downgrade::Recompute)];
        let params = proptest::collection::vec(tier_params, 6);
        let parts = (
            proptest::sample::subsequence(keys, 1..=6),
            params,
            window,
            downgrade,
        );
        (parts, prop_oneof![Just(0u16), 1u16..40]).prop_map(
            |((keys, params, window, downgrade), grace_days)| {
                let mut threshold = 0;
                let mut tiers = Vec::new();
                for (i, (key, (gap, keep_percent, multiplier))) in
                    keys.iter().zip(params).enumerate()
                {
                    threshold += if i == 0 { 0 } else { gap };
                    let keep = keep_percent.map(|p| threshold * p / 100);
                    tiers.push(tier(key, threshold, keep, multiplier));
                }
                TierConfig {
                    tiers,
                    window,
                    downgrade,
                    grace_days,
                }
            },
        )
    }

    /// Instants over four years from 2025, at any hour.
    fn arb_instant() -> impl Strategy<Value = i64> {
        (0i64..4 * 366 * 24).prop_map(|hours| us("2025-01-01T00:00") + hours * HOUR)
    }

    proptest! {
        /// Evaluations over time stay inside the config, never move a member
        /// down in grace and change nothing when repeated; a config change
        /// carries members over without lowering them or moving them down.
        #[test]
        fn tiers_stay_in_the_config_and_config_changes_never_demote(
            old in arb_config(),
            new in arb_config(),
            entries in proptest::collection::vec((arb_instant(), -800i64..4000), 0..30),
            mut times in proptest::collection::vec(arb_instant(), 1..12),
            zone in prop_oneof![Just("Asia/Shanghai"), Just("America/Los_Angeles")],
        ) {
            prop_assert_eq!((old.validate(), new.validate()), (Ok(()), Ok(())));
            let zone = AppTimeZone::parse(zone).unwrap();
            let entries: Vec<GrowthEntry> =
                entries.into_iter().map(|(at_us, amount)| GrowthEntry { at_us, amount }).collect();
            times.sort_unstable();
            let mut state: Option<TierState> = None;
            for &now in &times {
                let grace = state.as_ref().and_then(|s| s.grace_until_us);
                let in_grace = grace.is_some_and(|until| now < until);
                let e = evaluate(&old, state.as_ref(), &entries, now, &zone);
                prop_assert!(tier_rank(&old, &e.state.tier).is_some());
                if in_grace {
                    prop_assert_ne!(e.change.map(|c| c.direction), Some(Down));
                }
                let again = evaluate(&old, Some(&e.state), &entries, now, &zone);
                prop_assert_eq!((&again.state, again.change), (&e.state, None));
                state = Some(e.state);
            }
            let (held, now) = (state.unwrap(), *times.last().unwrap());
            let carried = carry_over(&old, &new, &held, now, &zone);
            let new_rank = tier_rank(&new, &carried.tier);
            prop_assert!(new_rank.is_some());
            if tier_rank(&new, &held.tier).is_some() {
                prop_assert_eq!(&carried.tier, &held.tier);
            } else {
                let old_rank = tier_rank(&old, &held.tier).unwrap();
                let below = old.tiers[..old_rank].iter().filter_map(|t| tier_rank(&new, &t.key));
                prop_assert!(new_rank >= below.max(), "no lower than the next surviving tier");
            }
            if let (Some(before), Some(after)) = (held.grace_until_us, carried.grace_until_us) {
                prop_assert!(after >= before, "a grace is never shortened");
            }
            let e = evaluate(&new, Some(&carried), &entries, now, &zone);
            prop_assert!(tier_rank(&new, &e.state.tier).is_some());
            prop_assert_ne!(e.change.map(|c| c.direction), Some(Down));
        }
    }
}
