//! Earning rules, sign-in streaks and tasks: the rules, without storage.
//!
//! Only trusted events (sent with the secret key from the company's backend)
//! reach these functions; the caller checks the source. An earning rule turns
//! one event into points, limited per user per local day, ISO week and
//! lifetime, and app-wide by a budget (budgets and limits are first-class, or a
//! rule misconfigured on a Friday evening pays out all weekend). Sign-in and
//! tasks keep a small state per user that the store saves as JSON.
//!
//! Points are whole `i64`s, money is in fen; nothing here uses floating point
//! to compute an award. Time is microseconds since the epoch; every day and
//! week boundary is in the app's zone, weeks start on Monday.

use crate::time::{from_micros, AppTimeZone};
use crate::FieldError;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Upper bounds that only refuse typos (an extra zero or three), not real plans:
/// points per rule, task or cap; an app-wide budget; a per-unit `per` in fen.
pub const MAX_POINTS: i64 = 1_000_000_000;
pub const MAX_BUDGET: i64 = 1_000_000_000_000_000;
pub const MAX_PER: i64 = 1_000_000_000_000;
pub const MAX_TASK_TARGET: i64 = 1_000_000;
pub const MAX_SIGN_IN_POINTS: i64 = 1_000_000;
pub const MAX_SIGN_IN_DAYS: usize = 31;
/// Filters per rule or task, and props per complete-the-profile task.
pub const MAX_FILTERS: usize = 10;
/// Values an `in` filter may list.
pub const MAX_IN_VALUES: usize = 100;
pub const MAX_KEY_CHARS: usize = 32;
pub const MAX_NAME_CHARS: usize = 40;
/// Prop names: the same limit as event names.
pub const MAX_PROP_CHARS: usize = 64;
/// The key the daily sign-in has in the task list; no task may take it.
pub const SIGN_IN_KEY: &str = "sign_in";
/// The sign-in's name in the task list (the console's default language is zh-CN).
pub const SIGN_IN_NAME: &str = "每日签到";

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------- rules

/// An operator's rule: "when event X (with these props) arrives, award points".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarningRule {
    pub key: String,
    pub name: String,
    pub event: String,
    #[serde(default)]
    pub filters: Vec<PropFilter>,
    pub award: Award,
    #[serde(default)]
    pub caps: Caps,
    /// App-wide total points this rule may ever award, over all users.
    pub budget: Option<i64>,
    /// Whether the user's tier multiplier applies to this rule's awards.
    #[serde(default)]
    pub tier_multiplier: bool,
    /// Growth value (成长值) each matching event adds toward tiers, worked out
    /// like `award` but without caps, budget or multiplier; none: no growth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growth: Option<Award>,
    #[serde(default = "yes")]
    pub active: bool,
}

/// A condition on one event prop. Numbers compare numerically (`100` equals
/// `100.0`), strings and booleans by equality, values of different types never
/// match. A missing or `null` prop matches only `ne`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropFilter {
    pub prop: String,
    pub op: FilterOp,
    pub value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Ne,
    Gte,
    Lte,
    Gt,
    Lt,
    /// The prop equals one of the values in an array.
    In,
}

/// How many points one matching event is worth, before multiplier and caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Award {
    /// `{"kind": "fixed", "points": 10}`.
    Fixed { points: i64 },
    /// floor(`prop` / `per`) × `points`, at most `max_points`: with `points` 1
    /// and `per` 100 over `amount_fen`, one point per yuan, cents dropped.
    PerUnit {
        prop: String,
        points: i64,
        per: i64,
        max_points: Option<i64>,
    },
}

/// Most points one rule may award one user per local day, ISO week and ever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    pub per_day: Option<i64>,
    pub per_week: Option<i64>,
    pub per_lifetime: Option<i64>,
}

/// Points a rule already awarded: to this user in the current local day, week
/// and ever, and to everyone (`budget_used`). The store keeps these counters
/// under the keys from [`period_keys`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleUsage {
    pub today: i64,
    pub this_week: i64,
    pub lifetime: i64,
    pub budget_used: i64,
}

/// Which limit cut an award down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    PerDay,
    PerWeek,
    PerLifetime,
    Budget,
}

/// Why an event earned nothing under a rule (as opposed to a limit reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    Inactive,
    EventMismatch,
    FilterMismatch,
    /// The per-unit prop is missing or not a non-negative integer.
    BadProp,
    /// The award came to zero points (e.g. 99 fen at one point per 100).
    Zero,
}

/// The outcome of one event under one rule, recorded with the ledger entry so
/// an operator can see why a user got fewer points than the rule says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwardDecision {
    /// Points to credit; 0 when nothing.
    pub points: i64,
    /// The award before the tier multiplier and the limits.
    pub base_points: i64,
    /// The limit that cut `points` below the multiplied award (the tightest one).
    pub limited_by: Option<Limit>,
    pub skipped: Option<Skip>,
}

impl AwardDecision {
    fn skipped(skip: Skip) -> Self {
        Self {
            skipped: Some(skip),
            ..Self::default()
        }
    }
}

impl EarningRule {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_key(&self.key, "key")?;
        validate_chars(&self.name, MAX_NAME_CHARS, "name")?;
        validate_event(&self.event, "event")?;
        validate_filters(&self.filters, "filters")?;
        validate_award(&self.award, "award")?;
        if let Some(growth) = &self.growth {
            validate_award(growth, "growth")?;
        }
        optional_in_range(self.caps.per_day, MAX_POINTS, "caps.per_day")?;
        optional_in_range(self.caps.per_week, MAX_POINTS, "caps.per_week")?;
        optional_in_range(self.caps.per_lifetime, MAX_POINTS, "caps.per_lifetime")?;
        optional_in_range(self.budget, MAX_BUDGET, "budget")
    }
}

fn validate_award(award: &Award, field: &str) -> Result<(), FieldError> {
    match award {
        Award::Fixed { points } => in_range(*points, MAX_POINTS, &format!("{field}.points")),
        Award::PerUnit {
            prop,
            points,
            per,
            max_points,
        } => {
            validate_chars(prop, MAX_PROP_CHARS, &format!("{field}.prop"))?;
            in_range(*points, MAX_POINTS, &format!("{field}.points"))?;
            in_range(*per, MAX_PER, &format!("{field}.per"))?;
            optional_in_range(*max_points, MAX_POINTS, &format!("{field}.max_points"))
        }
    }
}

/// Growth value one trusted event adds under one rule (0 when the rule has no
/// growth, is inactive, or the event does not match or lacks the prop).
pub fn growth(rule: &EarningRule, event_name: &str, props: &Map<String, Value>) -> i64 {
    match &rule.growth {
        Some(award) if rule.active && matches(rule, event_name, props) => {
            base_points(award, props).unwrap_or(0).max(0)
        }
        _ => 0,
    }
}

/// Whether an event is one the rule listens to and passes all its filters
/// (activity aside).
pub fn matches(rule: &EarningRule, event_name: &str, props: &Map<String, Value>) -> bool {
    rule.event == event_name && all_match(&rule.filters, props)
}

/// Points for one trusted event under one rule. The tier multiplier (permille,
/// 1000 = ×1, rounded down) applies before the limits, so a gold member
/// reaches the same daily cap sooner rather than getting past it; each limit
/// cuts the award to what is left of it, so the last award before a cap is
/// partial and the next is 0 with `limited_by` set.
pub fn award(
    rule: &EarningRule,
    event_name: &str,
    props: &Map<String, Value>,
    usage: &RuleUsage,
    multiplier_permille: u32,
) -> AwardDecision {
    if !rule.active {
        return AwardDecision::skipped(Skip::Inactive);
    }
    if rule.event != event_name {
        return AwardDecision::skipped(Skip::EventMismatch);
    }
    if !all_match(&rule.filters, props) {
        return AwardDecision::skipped(Skip::FilterMismatch);
    }
    let Some(base_points) = base_points(&rule.award, props) else {
        return AwardDecision::skipped(Skip::BadProp);
    };
    let multiplied = if rule.tier_multiplier {
        clamp_i64(i128::from(base_points) * i128::from(multiplier_permille) / 1000)
    } else {
        base_points
    };
    if multiplied <= 0 {
        return AwardDecision {
            base_points,
            ..AwardDecision::skipped(Skip::Zero)
        };
    }
    let limits = [
        (Limit::PerDay, rule.caps.per_day, usage.today),
        (Limit::PerWeek, rule.caps.per_week, usage.this_week),
        (Limit::PerLifetime, rule.caps.per_lifetime, usage.lifetime),
        (Limit::Budget, rule.budget, usage.budget_used),
    ];
    let mut points = multiplied;
    let mut limited_by = None;
    for (limit, cap, used) in limits {
        if let Some(cap) = cap {
            let left = cap.saturating_sub(used).max(0);
            if left < points {
                points = left;
                limited_by = Some(limit);
            }
        }
    }
    AwardDecision {
        points,
        base_points,
        limited_by,
        skipped: None,
    }
}

/// The local day and the Monday that starts its ISO week, for an instant: the
/// keys the store files per-day and per-week usage under.
pub fn period_keys(at_us: i64, zone: &AppTimeZone) -> (Date, Date) {
    let day = local_day(at_us, zone);
    (day, week_start(day))
}

fn local_day(at_us: i64, zone: &AppTimeZone) -> Date {
    from_micros(at_us).to_zoned(zone.zone().clone()).date()
}

fn week_start(day: Date) -> Date {
    let back = i64::from(day.weekday().to_monday_zero_offset());
    day.checked_sub(jiff::Span::new().days(back)).unwrap_or(day)
}

/// None when a per-unit prop is unusable; an award is never negative.
fn base_points(award: &Award, props: &Map<String, Value>) -> Option<i64> {
    match award {
        Award::Fixed { points } => Some((*points).max(0)),
        Award::PerUnit {
            prop,
            points,
            per,
            max_points,
        } => {
            let amount = match props.get(prop) {
                Some(Value::Number(n)) => exact_integer(n)?,
                _ => return None,
            };
            if amount < 0 || amount > i128::from(i64::MAX) || *per <= 0 {
                return None;
            }
            let raw = amount / i128::from(*per) * i128::from((*points).max(0));
            let capped = max_points.map_or(raw, |max| raw.min(i128::from(max.max(0))));
            Some(clamp_i64(capped))
        }
    }
}

fn clamp_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// A JSON number as an exact integer, if it is one (`1000` or `1000.0`).
/// Floating point only recognises an integral value here; it never feeds arithmetic.
fn exact_integer(n: &Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    // 2^63: beyond it an f64 is still integral but no longer a sensible amount.
    (f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18).then_some(f as i128)
}

fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    match (exact_integer(a), exact_integer(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn scalar_eq(actual: &Value, wanted: &Value) -> bool {
    match (actual, wanted) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Some(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        _ => false,
    }
}

fn filter_matches(filter: &PropFilter, props: &Map<String, Value>) -> bool {
    let Some(actual) = props.get(&filter.prop).filter(|v| !v.is_null()) else {
        return filter.op == FilterOp::Ne;
    };
    let wanted = &filter.value;
    match filter.op {
        FilterOp::Eq => scalar_eq(actual, wanted),
        FilterOp::Ne => !scalar_eq(actual, wanted),
        FilterOp::In => wanted
            .as_array()
            .is_some_and(|values| values.iter().any(|v| scalar_eq(actual, v))),
        op => {
            let (Value::Number(a), Value::Number(b)) = (actual, wanted) else {
                return false;
            };
            compare_numbers(a, b).is_some_and(|order| match op {
                FilterOp::Gte => order.is_ge(),
                FilterOp::Lte => order.is_le(),
                FilterOp::Gt => order.is_gt(),
                _ => order.is_lt(),
            })
        }
    }
}

fn all_match(filters: &[PropFilter], props: &Map<String, Value>) -> bool {
    filters.iter().all(|f| filter_matches(f, props))
}

// ---------------------------------------------------------------- validation

fn validate_key(key: &str, field: &str) -> Result<(), FieldError> {
    let allowed = |c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-');
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.chars().all(allowed) {
        let message = format!("must be 1 to {MAX_KEY_CHARS} of a-z, 0-9, '_' and '-'");
        return Err(FieldError::new("invalid_key", field, message));
    }
    Ok(())
}

/// Names are shown in Chinese, so limits count characters, not bytes.
fn validate_chars(text: &str, max: usize, field: &str) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > max {
        let message = format!("must be 1 to {max} characters, got {chars}");
        return Err(FieldError::new("invalid_length", field, message));
    }
    Ok(())
}

/// `$` events are recorded by the SDK on the device: never trusted, never earning.
fn validate_event(event: &str, field: &str) -> Result<(), FieldError> {
    crate::ids::EventName::parse(event).map_err(|e| e.for_field(field))?;
    if event.starts_with('$') {
        let message = "events starting with '$' are automatic client events and earn nothing";
        return Err(FieldError::new("reserved_event", field, message));
    }
    Ok(())
}

fn in_range(value: i64, max: i64, field: &str) -> Result<(), FieldError> {
    match value {
        ..=0 => Err(FieldError::new("not_positive", field, "must be positive")),
        v if v > max => Err(FieldError::new(
            "too_large",
            field,
            format!("must be at most {max}"),
        )),
        _ => Ok(()),
    }
}

fn optional_in_range(value: Option<i64>, max: i64, field: &str) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| in_range(v, max, field))
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// A value that cannot suit its op is reported on the op (`filters[1].op`):
/// the operator picked the wrong comparison more often than the wrong value.
fn validate_filters(filters: &[PropFilter], field: &str) -> Result<(), FieldError> {
    if filters.len() > MAX_FILTERS {
        let message = format!("at most {MAX_FILTERS} filters, got {}", filters.len());
        return Err(FieldError::new("too_many", field, message));
    }
    for (i, filter) in filters.iter().enumerate() {
        let at = format!("{field}[{i}]");
        validate_chars(&filter.prop, MAX_PROP_CHARS, &format!("{at}.prop"))?;
        let value = &filter.value;
        let needs = match filter.op {
            FilterOp::In if !value.is_array() => Some("an array of values"),
            FilterOp::Gte | FilterOp::Lte | FilterOp::Gt | FilterOp::Lt if !value.is_number() => {
                Some("a number")
            }
            FilterOp::Eq | FilterOp::Ne if !is_scalar(value) => Some("a string, number or boolean"),
            _ => None,
        };
        if let Some(needs) = needs {
            let op = format!("{:?}", filter.op).to_lowercase();
            let message = format!("`{op}` needs {needs} as its value");
            return Err(FieldError::new(
                "op_value_mismatch",
                format!("{at}.op"),
                message,
            ));
        }
        let values = value.as_array().map_or(&[][..], Vec::as_slice);
        if filter.op == FilterOp::In && (values.is_empty() || values.len() > MAX_IN_VALUES) {
            let message = format!("must list 1 to {MAX_IN_VALUES} values");
            return Err(FieldError::new(
                "invalid_length",
                format!("{at}.value"),
                message,
            ));
        }
        if let Some(j) = values.iter().position(|v| !is_scalar(v)) {
            let message = "must be a string, number or boolean";
            return Err(FieldError::new(
                "invalid_type",
                format!("{at}.value[{j}]"),
                message,
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- sign-in

/// Daily sign-in (签到): points grow with the streak of consecutive local days.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInConfig {
    /// Points on streak day 1, 2, …; past the end the last value repeats.
    pub points_by_day: Vec<i64>,
    /// After the last day, start the table over at day 1 (a weekly cycle).
    #[serde(default)]
    pub cycle: bool,
}

/// A user's last sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInState {
    /// The local day of the last sign-in.
    pub last_day: Date,
    /// Consecutive local days signed in up to `last_day` (it keeps counting
    /// through cycles, for "连续签到 N 天").
    pub streak: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SignInOutcome {
    pub state: SignInState,
    pub points: i64,
    /// The 1-based entry of `points_by_day` that paid: the place in the cycle.
    pub streak_day: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("already signed in today")]
    AlreadyToday,
}

impl SignInConfig {
    pub fn validate(&self) -> Result<(), FieldError> {
        let days = self.points_by_day.len();
        if days == 0 || days > MAX_SIGN_IN_DAYS {
            let message = format!("must list 1 to {MAX_SIGN_IN_DAYS} days, got {days}");
            return Err(FieldError::new("invalid_length", "points_by_day", message));
        }
        for (i, points) in self.points_by_day.iter().enumerate() {
            in_range(*points, MAX_SIGN_IN_POINTS, &format!("points_by_day[{i}]"))?;
        }
        Ok(())
    }

    /// The table entry (1-based) and points for the `streak`-th consecutive day.
    fn day_and_points(&self, streak: u32) -> (u32, i64) {
        let days = u32::try_from(self.points_by_day.len()).unwrap_or(u32::MAX);
        if days == 0 {
            return (streak, 0);
        }
        let streak = streak.max(1);
        let day = if self.cycle {
            (streak - 1) % days + 1
        } else {
            streak.min(days)
        };
        let points = self.points_by_day[day as usize - 1];
        (day, points)
    }
}

/// Signs a user in at `now_us`. A previous sign-in on this local day or later
/// (a zone change or a clock going back) is `AlreadyToday`, so no path pays a
/// day twice; yesterday continues the streak; anything older starts over.
pub fn sign_in(
    config: &SignInConfig,
    last: Option<SignInState>,
    now_us: i64,
    zone: &AppTimeZone,
) -> Result<SignInOutcome, SignInError> {
    let today = local_day(now_us, zone);
    let streak = match last {
        Some(last) if last.last_day >= today => return Err(SignInError::AlreadyToday),
        Some(last) if last.last_day.tomorrow().ok() == Some(today) => last.streak.saturating_add(1),
        _ => 1,
    };
    let (streak_day, points) = config.day_and_points(streak);
    Ok(SignInOutcome {
        state: SignInState {
            last_day: today,
            streak,
        },
        points,
        streak_day,
    })
}

/// The streak as a user sees it now: still alive if they signed in today or
/// yesterday, 0 once a day was missed.
pub fn current_streak(state: Option<&SignInState>, now_us: i64, zone: &AppTimeZone) -> u32 {
    let today = local_day(now_us, zone);
    match state {
        Some(s) if s.last_day >= today || s.last_day.tomorrow().ok() == Some(today) => s.streak,
        _ => 0,
    }
}

// ---------------------------------------------------------------- tasks

/// A task: complete it (once, or once per period) and get `points` once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub key: String,
    pub name: String,
    pub kind: TaskKind,
    pub points: i64,
    #[serde(default = "yes")]
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskKind {
    /// Done by the first matching event, e.g. the first paid order.
    Once {
        event: String,
        #[serde(default)]
        filters: Vec<PropFilter>,
    },
    /// Done once every listed prop has been seen non-empty, across any number
    /// of the event's occurrences (complete your profile step by step).
    OnceAllProps { event: String, props: Vec<String> },
    /// Done at the `target`-th matching event of a local period, once per period.
    Count {
        event: String,
        #[serde(default)]
        filters: Vec<PropFilter>,
        target: i64,
        period: TaskPeriod,
    },
}

impl TaskKind {
    pub fn event(&self) -> &str {
        match self {
            Self::Once { event, .. }
            | Self::OnceAllProps { event, .. }
            | Self::Count { event, .. } => event,
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Self::Once { .. } => "once",
            Self::OnceAllProps { .. } => "once_all_props",
            Self::Count { .. } => "count",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPeriod {
    Day,
    /// The ISO week, Monday to Sunday in the app's zone.
    Week,
    Lifetime,
}

/// A user's progress on one task, saved by the store as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskState {
    /// Matching events in `period_start`'s period (count tasks).
    pub count: i64,
    /// The listed props seen non-empty so far (once_all_props tasks).
    pub seen_props: BTreeSet<String>,
    /// The local day, or the Monday of the week, that `count` and `completed`
    /// belong to; `None` for tasks that never reset.
    pub period_start: Option<Date>,
    /// Rewarded: for good, or for `period_start`'s period.
    pub completed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TaskProgress {
    pub done: bool,
    pub progress: i64,
    pub target: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub state: TaskState,
    /// Award `task.points` now: true for exactly one event per completion.
    pub completed_now: bool,
}

impl TaskDef {
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_key(&self.key, "key")?;
        if self.key == SIGN_IN_KEY {
            let message = "`sign_in` is the daily sign-in's key in the task list";
            return Err(FieldError::new("reserved_key", "key", message));
        }
        validate_chars(&self.name, MAX_NAME_CHARS, "name")?;
        in_range(self.points, MAX_POINTS, "points")?;
        validate_event(self.kind.event(), "kind.event")?;
        match &self.kind {
            TaskKind::Once { filters, .. } => validate_filters(filters, "kind.filters"),
            TaskKind::OnceAllProps { props, .. } => {
                if props.is_empty() || props.len() > MAX_FILTERS {
                    let message = format!("must list 1 to {MAX_FILTERS} props");
                    return Err(FieldError::new("invalid_length", "kind.props", message));
                }
                for (i, prop) in props.iter().enumerate() {
                    let field = format!("kind.props[{i}]");
                    validate_chars(prop, MAX_PROP_CHARS, &field)?;
                    if props[..i].contains(prop) {
                        return Err(FieldError::new("duplicate", field, "is listed twice"));
                    }
                }
                Ok(())
            }
            TaskKind::Count {
                filters, target, ..
            } => {
                validate_filters(filters, "kind.filters")?;
                in_range(*target, MAX_TASK_TARGET, "kind.target")
            }
        }
    }
}

/// The start of the period an instant falls in; `None` for lifetime.
fn period_start(period: TaskPeriod, now_us: i64, zone: &AppTimeZone) -> Option<Date> {
    let (day, week) = period_keys(now_us, zone);
    match period {
        TaskPeriod::Day => Some(day),
        TaskPeriod::Week => Some(week),
        TaskPeriod::Lifetime => None,
    }
}

/// A profile field counts once it holds something: not null, not blank text,
/// not an empty array or object.
fn is_filled(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Where a user stands on a task at `now_us` (a count task from an earlier
/// period shows as not started).
pub fn task_progress(
    task: &TaskDef,
    state: &TaskState,
    now_us: i64,
    zone: &AppTimeZone,
) -> TaskProgress {
    match &task.kind {
        TaskKind::Once { .. } => TaskProgress {
            done: state.completed,
            progress: i64::from(state.completed),
            target: 1,
        },
        TaskKind::OnceAllProps { props, .. } => {
            let target = props.len() as i64;
            let seen = props
                .iter()
                .filter(|p| state.seen_props.contains(*p))
                .count() as i64;
            TaskProgress {
                done: state.completed,
                progress: if state.completed { target } else { seen },
                target,
            }
        }
        TaskKind::Count { target, period, .. } => {
            let current = state.period_start == period_start(*period, now_us, zone);
            TaskProgress {
                done: current && state.completed,
                progress: if current {
                    state.count.clamp(0, *target)
                } else {
                    0
                },
                target: *target,
            }
        }
    }
}

/// Takes one trusted event into a task's state. An event from a period
/// earlier than the saved one (it arrived late) changes nothing: the saved
/// state no longer knows whether that period was rewarded.
pub fn advance(
    task: &TaskDef,
    state: Option<TaskState>,
    event_name: &str,
    props: &Map<String, Value>,
    now_us: i64,
    zone: &AppTimeZone,
) -> Advance {
    let mut state = state.unwrap_or_default();
    if !task.active || task.kind.event() != event_name {
        return Advance {
            state,
            completed_now: false,
        };
    }
    let completed_now = match &task.kind {
        TaskKind::Once { filters, .. } => {
            let now_done = !state.completed && all_match(filters, props);
            state.completed |= now_done;
            now_done
        }
        TaskKind::OnceAllProps { props: wanted, .. } => {
            if state.completed {
                false
            } else {
                for prop in wanted {
                    if props.get(prop).is_some_and(is_filled) {
                        state.seen_props.insert(prop.clone());
                    }
                }
                state.completed = wanted.iter().all(|p| state.seen_props.contains(p));
                state.completed
            }
        }
        TaskKind::Count {
            filters,
            target,
            period,
            ..
        } => {
            let current = period_start(*period, now_us, zone);
            let late = matches!((current, state.period_start), (Some(c), Some(s)) if c < s);
            if late {
                return Advance {
                    state,
                    completed_now: false,
                };
            }
            if current != state.period_start {
                state = TaskState {
                    period_start: current,
                    ..TaskState::default()
                };
            }
            if all_match(filters, props) {
                state.count = state.count.saturating_add(1);
            }
            let now_done = !state.completed && state.count >= *target;
            state.completed |= now_done;
            now_done
        }
    };
    Advance {
        state,
        completed_now,
    }
}

/// One line of `GET /v1/users/{id}/tasks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    pub key: String,
    pub name: String,
    /// `sign_in`, `once`, `once_all_props` or `count`.
    pub kind: &'static str,
    /// What completing it pays; for the sign-in, what the next sign-in pays.
    pub points: i64,
    pub progress: i64,
    pub target: i64,
    /// Done (this period, for count tasks; today, for the sign-in).
    pub done: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<TaskPeriod>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_today: Option<bool>,
    /// The live streak (see [`current_streak`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streak: Option<u32>,
    /// Points of the next sign-in: today's if not signed yet, else tomorrow's
    /// if the streak continues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_points: Option<i64>,
}

/// The task list a user sees: the sign-in first (when configured), then the
/// active tasks in their configured order. `states` is keyed by task key;
/// a missing state means not started.
pub fn task_list(
    tasks: &[TaskDef],
    states: &BTreeMap<String, TaskState>,
    sign_in: Option<(&SignInConfig, Option<&SignInState>)>,
    now_us: i64,
    zone: &AppTimeZone,
) -> Vec<TaskView> {
    let mut views = Vec::with_capacity(tasks.len() + 1);
    if let Some((config, state)) = sign_in {
        let today = local_day(now_us, zone);
        let signed_today = state.is_some_and(|s| s.last_day >= today);
        let streak = current_streak(state, now_us, zone);
        let (place, _) = config.day_and_points(streak);
        let (_, next_points) = config.day_and_points(streak.saturating_add(1));
        let target = config.points_by_day.len() as i64;
        // A finished cycle shows empty until today's sign-in starts the next.
        let cycle_restarts = config.cycle && !signed_today && i64::from(place) == target;
        let progress = if streak == 0 || cycle_restarts {
            0
        } else {
            i64::from(place)
        };
        views.push(TaskView {
            key: SIGN_IN_KEY.to_string(),
            name: SIGN_IN_NAME.to_string(),
            kind: "sign_in",
            points: next_points,
            progress,
            target,
            done: signed_today,
            period: Some(TaskPeriod::Day),
            signed_today: Some(signed_today),
            streak: Some(streak),
            next_points: Some(next_points),
        });
    }
    let not_started = TaskState::default();
    for task in tasks.iter().filter(|t| t.active) {
        let state = states.get(&task.key).unwrap_or(&not_started);
        let p = task_progress(task, state, now_us, zone);
        views.push(TaskView {
            key: task.key.clone(),
            name: task.name.clone(),
            kind: task.kind.as_str(),
            points: task.points,
            progress: p.progress,
            target: p.target,
            done: p.done,
            period: match &task.kind {
                TaskKind::Count { period, .. } => Some(*period),
                _ => None,
            },
            signed_today: None,
            streak: None,
            next_points: None,
        });
    }
    views
}
#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;
    use serde_json::json;

    type Change = fn(&mut EarningRule);

    fn at(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_microsecond()
    }

    fn sh() -> AppTimeZone {
        AppTimeZone::default()
    }

    fn props(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn filter(prop: &str, op: FilterOp, value: Value) -> PropFilter {
        let prop = prop.into();
        PropFilter { prop, op, value }
    }

    fn rule(award: Award) -> EarningRule {
        serde_json::from_value(json!({"key": "order_points", "name": "下单得积分",
            "event": "order_paid", "award": award}))
        .unwrap()
    }

    fn per_unit(points: i64, per: i64, max_points: Option<i64>) -> Award {
        let prop = "amount_fen".into();
        Award::PerUnit {
            prop,
            points,
            per,
            max_points,
        }
    }

    fn usage(today: i64, this_week: i64, lifetime: i64, budget_used: i64) -> RuleUsage {
        RuleUsage {
            today,
            this_week,
            lifetime,
            budget_used,
        }
    }

    /// (points, limited_by, skipped) for an `order_paid` event.
    fn run(
        rule: &EarningRule,
        p: Value,
        used: RuleUsage,
        permille: u32,
    ) -> (i64, Option<Limit>, Option<Skip>) {
        let d = award(rule, "order_paid", &props(p), &used, permille);
        (d.points, d.limited_by, d.skipped)
    }

    fn paid(rule: &EarningRule, p: Value) -> (i64, Option<Limit>, Option<Skip>) {
        run(rule, p, RuleUsage::default(), 1000)
    }

    #[test]
    fn filters_compare_numbers_numerically_and_strings_by_equality() {
        use FilterOp::*;
        let p = props(json!({"amount_fen": 10000, "channel": "app", "score": 4.5,
                             "code": "100", "coupon": null, "vip": true}));
        let cases = [
            ("amount_fen", Eq, json!(10000.0), true),
            ("amount_fen", Gte, json!(10000), true),
            ("amount_fen", Gt, json!(10000), false),
            ("amount_fen", Lt, json!(10000.5), true),
            ("score", Gt, json!(4), true),
            ("score", Lte, json!(4.5), true),
            ("code", Eq, json!(100), false), // a string never equals a number
            ("code", Gte, json!(1), false),  // ordering needs a number
            ("code", Ne, json!(100), true),
            ("channel", Eq, json!("app"), true),
            ("channel", Eq, json!("App"), false),
            ("vip", Eq, json!(true), true),
            ("channel", In, json!(["h5", "app"]), true),
            ("amount_fen", In, json!([1, 10000.0]), true),
            ("channel", In, json!(["h5"]), false),
        ];
        for (prop, op, value, expected) in cases {
            let f = filter(prop, op, value.clone());
            assert_eq!(filter_matches(&f, &p), expected, "{prop} {op:?} {value}");
        }
        // A missing or null prop matches only `ne`.
        for prop in ["missing", "coupon"] {
            let check = |op, value| filter_matches(&filter(prop, op, value), &p);
            assert!(!check(Eq, json!("x")) && !check(Lt, json!(1)) && !check(In, json!(["x"])));
            assert!(check(Ne, json!("x")), "{prop}");
        }
    }

    #[test]
    fn per_unit_awards_whole_units_of_fen() {
        let r = rule(per_unit(1, 100, None));
        assert_eq!(paid(&r, json!({"amount_fen": 1999})), (19, None, None));
        assert_eq!(paid(&r, json!({"amount_fen": 2000.0})), (20, None, None));
        assert_eq!(
            paid(&r, json!({"amount_fen": 99})),
            (0, None, Some(Skip::Zero))
        );
        let bad = [
            json!(-5),
            json!(10.5),
            json!("1000"),
            json!(null),
            json!(u64::MAX),
        ];
        for amount in bad {
            let got = paid(&r, json!({ "amount_fen": amount }));
            assert_eq!(got, (0, None, Some(Skip::BadProp)), "{amount}");
        }
        assert_eq!(paid(&r, json!({})).2, Some(Skip::BadProp));
        let capped = rule(per_unit(2, 100, Some(500)));
        assert_eq!(paid(&capped, json!({"amount_fen": 12345})).0, 246);
        assert_eq!(paid(&capped, json!({"amount_fen": 1_000_000})).0, 500);
    }

    #[test]
    fn tier_multiplier_rounds_down_before_caps() {
        let mut r = rule(Award::Fixed { points: 15 });
        let with = |r: &EarningRule, permille| run(r, json!({}), RuleUsage::default(), permille);
        assert_eq!(with(&r, 1500).0, 15, "this rule ignores multipliers");
        r.tier_multiplier = true;
        assert_eq!((with(&r, 1500).0, with(&r, 1234).0), (22, 18));
        assert_eq!(with(&r, 0), (0, None, Some(Skip::Zero)));
        let d = award(&r, "order_paid", &Map::new(), &RuleUsage::default(), 1234);
        assert_eq!(d.base_points, 15);
        r.caps.per_day = Some(20);
        assert_eq!(with(&r, 2000), (20, Some(Limit::PerDay), None));
    }

    #[test]
    fn each_cap_and_the_budget_cut_partial_awards() {
        let mut r = rule(Award::Fixed { points: 50 });
        r.caps = Caps {
            per_day: Some(100),
            per_week: Some(300),
            per_lifetime: Some(1000),
        };
        r.budget = Some(100_000);
        let cases = [
            (usage(0, 0, 0, 0), 50, None),
            (usage(90, 0, 0, 0), 10, Some(Limit::PerDay)),
            (usage(0, 280, 0, 0), 20, Some(Limit::PerWeek)),
            (usage(0, 0, 970, 0), 30, Some(Limit::PerLifetime)),
            (usage(0, 0, 0, 99_960), 40, Some(Limit::Budget)),
            (usage(95, 298, 0, 0), 2, Some(Limit::PerWeek)), // the tightest is named
            (usage(100, 0, 0, 99_990), 0, Some(Limit::PerDay)),
            (usage(0, 0, 0, 200_000), 0, Some(Limit::Budget)),
        ];
        for (used, points, limit) in cases {
            assert_eq!(
                run(&r, json!({}), used, 1000),
                (points, limit, None),
                "{used:?}"
            );
        }
    }

    #[test]
    fn inactive_other_events_and_filter_misses_are_skipped() {
        let mut r = rule(Award::Fixed { points: 5 });
        r.filters = vec![filter("channel", FilterOp::Eq, json!("app"))];
        let app = props(json!({"channel": "app"}));
        assert!(matches(&r, "order_paid", &app) && !matches(&r, "order_refunded", &app));
        assert_eq!(
            paid(&r, json!({"channel": "h5"})).2,
            Some(Skip::FilterMismatch)
        );
        let other = award(&r, "order_refunded", &app, &RuleUsage::default(), 1000);
        assert_eq!(other.skipped, Some(Skip::EventMismatch));
        r.active = false;
        assert_eq!(paid(&r, json!({"channel": "app"})).2, Some(Skip::Inactive));
    }

    #[test]
    fn weeks_start_on_monday_at_local_midnight() {
        // 2026-11-23 is a Monday; 16:00Z is midnight in Shanghai.
        let monday = date(2026, 11, 23);
        assert_eq!(
            period_keys(at("2026-11-22T16:00:00Z"), &sh()),
            (monday, monday)
        );
        let sunday = period_keys(at("2026-11-22T15:59:59.999999Z"), &sh());
        assert_eq!(sunday, (date(2026, 11, 22), date(2026, 11, 16)));
        let next_sunday = period_keys(at("2026-11-29T15:59:59Z"), &sh());
        assert_eq!(next_sunday, (date(2026, 11, 29), monday));
        let utc = AppTimeZone::parse("UTC").unwrap();
        assert_eq!(
            period_keys(at("2026-11-22T16:00:00Z"), &utc).1,
            date(2026, 11, 16)
        );
    }

    #[test]
    fn streaks_continue_reset_and_refuse_a_second_sign_in_per_local_day() {
        let config = SignInConfig {
            points_by_day: vec![5, 10, 20],
            cycle: false,
        };
        let go = |last, t: &str| sign_in(&config, last, at(t), &sh());
        let first = go(None, "2026-11-22T15:59:00Z").unwrap();
        assert_eq!(
            (first.state.streak, first.points, first.streak_day),
            (1, 5, 1)
        );
        assert_eq!(first.state.last_day, date(2026, 11, 22));
        // Two minutes later it is Monday in Shanghai: a new day.
        let second = go(Some(first.state), "2026-11-22T16:01:00Z").unwrap();
        assert_eq!((second.state.streak, second.points), (2, 10));
        // Monday 23:59 local is still Monday; a clock going back pays nothing either.
        for t in ["2026-11-23T15:59:00Z", "2026-11-20T00:00:00Z"] {
            assert_eq!(go(Some(second.state), t), Err(SignInError::AlreadyToday));
        }
        let third = go(Some(second.state), "2026-11-24T01:00:00Z").unwrap();
        let fourth = go(Some(third.state), "2026-11-25T01:00:00Z").unwrap();
        assert_eq!(
            (third.points, fourth.points),
            (20, 20),
            "the last value repeats"
        );
        assert_eq!((fourth.state.streak, fourth.streak_day), (4, 3));
        // Missing Thursday starts over on Friday.
        let friday = go(Some(fourth.state), "2026-11-27T01:00:00Z").unwrap();
        assert_eq!((friday.state.streak, friday.points), (1, 5));

        let streak_at = |t: &str| current_streak(Some(&fourth.state), at(t), &sh());
        assert_eq!(streak_at("2026-11-25T10:00:00Z"), 4, "signed today");
        assert_eq!(streak_at("2026-11-26T15:59:59Z"), 4, "signed yesterday");
        assert_eq!(streak_at("2026-11-26T16:00:00Z"), 0, "missed a day");
        assert_eq!(current_streak(None, at("2026-11-26T16:00:00Z"), &sh()), 0);
    }

    #[test]
    fn a_cycle_starts_the_table_over() {
        let config = SignInConfig {
            points_by_day: vec![1, 2, 7],
            cycle: true,
        };
        let mut state = None;
        let mut paid = vec![];
        for day in 1..=5 {
            let now = at(&format!("2026-12-0{day}T02:00:00Z"));
            let outcome = sign_in(&config, state, now, &sh()).unwrap();
            paid.push((outcome.streak_day, outcome.points));
            state = Some(outcome.state);
        }
        assert_eq!(paid, [(1, 1), (2, 2), (3, 7), (1, 1), (2, 2)]);
        assert_eq!(state.unwrap().streak, 5);
    }

    fn task(key: &str, kind: Value) -> TaskDef {
        let def = json!({"key": key, "name": "任务", "points": 100, "kind": kind});
        serde_json::from_value(def).unwrap()
    }

    /// Feeds events at the given times through `advance`; which ones completed it.
    fn feed(
        task: &TaskDef,
        state: &mut Option<TaskState>,
        events: &[(&str, Value, &str)],
    ) -> Vec<bool> {
        let mut completions = vec![];
        for (name, p, t) in events {
            let a = advance(task, state.take(), name, &props(p.clone()), at(t), &sh());
            completions.push(a.completed_now);
            *state = Some(a.state);
        }
        completions
    }

    #[test]
    fn once_tasks_complete_once() {
        let first_order = task(
            "first_order",
            json!({"kind": "once", "event": "order_paid",
            "filters": [{"prop": "amount_fen", "op": "gte", "value": 100}]}),
        );
        let t = "2026-11-23T02:00:00Z";
        let (small, big) = (json!({"amount_fen": 50}), json!({"amount_fen": 500}));
        let events = [
            ("order_paid", small, t),
            ("page_view", big.clone(), t),
            ("order_paid", big.clone(), t),
            ("order_paid", big, t),
        ];
        let mut state = None;
        assert_eq!(
            feed(&first_order, &mut state, &events),
            [false, false, true, false]
        );
        let p = task_progress(&first_order, &state.unwrap(), at(t), &sh());
        assert_eq!(
            p,
            TaskProgress {
                done: true,
                progress: 1,
                target: 1
            }
        );
    }

    #[test]
    fn count_tasks_complete_once_per_local_period() {
        let daily = task(
            "share_twice",
            json!({"kind": "count", "event": "shared",
            "target": 2, "period": "day"}),
        );
        // Sunday 23:00 and 23:30 local; Monday 00:10, 00:20 and 00:30 local.
        let times = [
            "2026-11-22T15:00:00Z",
            "2026-11-22T15:30:00Z",
            "2026-11-22T16:10:00Z",
            "2026-11-22T16:20:00Z",
            "2026-11-22T16:30:00Z",
        ];
        let events: Vec<_> = times.iter().map(|t| ("shared", json!({}), *t)).collect();
        let mut state = None;
        let completions = feed(&daily, &mut state, &events);
        assert_eq!(completions, [false, true, false, true, false]);
        let saved = state.clone().unwrap();
        assert_eq!(
            (saved.count, saved.period_start),
            (3, Some(date(2026, 11, 23)))
        );
        // A late Sunday event changes nothing: Sunday was already paid.
        let late = [("shared", json!({}), "2026-11-22T15:45:00Z")];
        assert_eq!(feed(&daily, &mut state, &late), [false]);
        assert_eq!(state.as_ref(), Some(&saved));
        let progress = |t: &str| task_progress(&daily, &saved, at(t), &sh());
        let monday = progress("2026-11-23T10:00:00Z");
        assert_eq!((monday.done, monday.progress, monday.target), (true, 2, 2));
        let tuesday = progress("2026-11-23T16:00:00Z");
        assert_eq!((tuesday.done, tuesday.progress), (false, 0));

        let weekly = task(
            "weekly",
            json!({"kind": "count", "event": "shared",
            "target": 1, "period": "week"}),
        );
        let times = [
            "2026-11-23T02:00:00Z",
            "2026-11-29T15:00:00Z",
            "2026-11-29T16:00:00Z",
        ];
        let events: Vec<_> = times.iter().map(|t| ("shared", json!({}), *t)).collect();
        assert_eq!(feed(&weekly, &mut None, &events), [true, false, true]);
    }

    #[test]
    fn a_profile_completes_when_every_prop_was_seen() {
        let profile = task(
            "complete_profile",
            json!({"kind": "once_all_props",
            "event": "profile_updated", "props": ["nickname", "avatar", "phone"]}),
        );
        let t = "2026-11-23T02:00:00Z";
        let mut state = None;
        let mut step = |p: Value| {
            let done = feed(&profile, &mut state, &[("profile_updated", p, t)])[0];
            let progress = task_progress(&profile, state.as_ref().unwrap(), at(t), &sh());
            (done, progress.progress, progress.target, progress.done)
        };
        assert_eq!(
            step(json!({"nickname": "小明", "phone": "  "})),
            (false, 1, 3, false)
        );
        let second = json!({"avatar": "https://x/y.png", "phone": null, "extra": 1});
        assert_eq!(step(second), (false, 2, 3, false));
        assert_eq!(step(json!({"phone": "13800000000"})), (true, 3, 3, true));
        assert_eq!(step(json!({"phone": "13900000000"})), (false, 3, 3, true));
        assert!(!state.unwrap().seen_props.contains("extra"));
    }

    #[test]
    fn the_task_list_shows_sign_in_and_active_tasks() {
        let config = SignInConfig {
            points_by_day: vec![5, 10, 20],
            cycle: false,
        };
        let signed = SignInState {
            last_day: date(2026, 11, 22),
            streak: 1,
        };
        let mut hidden = task("hidden", json!({"kind": "once", "event": "order_paid"}));
        hidden.active = false;
        let first = task(
            "first_order",
            json!({"kind": "once", "event": "order_paid"}),
        );
        let done = TaskState {
            completed: true,
            ..TaskState::default()
        };
        let states = BTreeMap::from([("first_order".to_string(), done)]);
        let monday = at("2026-11-23T02:00:00Z");
        let sign = Some((&config, Some(&signed)));
        let list = task_list(&[hidden, first], &states, sign, monday, &sh());
        assert_eq!(list.len(), 2);
        let view = serde_json::to_value(&list).unwrap();
        assert_eq!(
            view[0],
            json!({"key": "sign_in", "name": SIGN_IN_NAME, "kind": "sign_in",
            "points": 10, "progress": 1, "target": 3, "done": false, "period": "day",
            "signed_today": false, "streak": 1, "next_points": 10})
        );
        assert_eq!(
            view[1],
            json!({"key": "first_order", "name": "任务", "kind": "once",
            "points": 100, "progress": 1, "target": 1, "done": true})
        );
    }

    fn field_of(result: Result<(), FieldError>) -> String {
        result.unwrap_err().field.unwrap()
    }

    #[test]
    fn rule_validation_names_the_offending_field() {
        let good = rule(per_unit(1, 100, None));
        assert_eq!(good.validate(), Ok(()));
        let cases: [(Change, &str); 12] = [
            (|r| r.award = per_unit(1, 0, None), "award.per"),
            (|r| r.award = per_unit(1, 100, Some(-1)), "award.max_points"),
            (|r| r.award = Award::Fixed { points: 0 }, "award.points"),
            (
                |r| {
                    r.award = Award::Fixed {
                        points: MAX_POINTS + 1,
                    }
                },
                "award.points",
            ),
            (
                |r| r.filters.push(filter("x", FilterOp::Eq, json!([1]))),
                "filters[0].op",
            ),
            (
                |r| r.filters = vec![filter("x", FilterOp::Eq, json!(1)); 11],
                "filters",
            ),
            (|r| r.key = "Order".into(), "key"),
            (|r| r.key = "k".repeat(33), "key"),
            (|r| r.name = "积".repeat(41), "name"),
            (|r| r.event = "$page_view".into(), "event"),
            (|r| r.caps.per_day = Some(0), "caps.per_day"),
            (|r| r.budget = Some(-1), "budget"),
        ];
        for (change, field) in cases {
            let mut r = good.clone();
            change(&mut r);
            assert_eq!(field_of(r.validate()), field);
        }
        let mut r = good.clone();
        r.filters = vec![filter("channel", FilterOp::Eq, json!("app"))];
        r.filters
            .push(filter("channel", FilterOp::Gte, json!("app")));
        assert_eq!(r.validate().unwrap_err().code, "op_value_mismatch");
        assert_eq!(field_of(r.validate()), "filters[1].op");
        r.filters[1] = filter("channel", FilterOp::In, json!(["a", {"b": 1}]));
        assert_eq!(field_of(r.validate()), "filters[1].value[1]");
        r.filters[1] = filter("channel", FilterOp::In, json!([]));
        assert_eq!(field_of(r.validate()), "filters[1].value");
        let mut r = good;
        r.name = "积".repeat(40);
        assert_eq!(
            r.validate(),
            Ok(()),
            "40 characters are 120 bytes, and fine"
        );
    }

    #[test]
    fn sign_in_and_task_validation_name_the_offending_field() {
        let bad_day = SignInConfig {
            points_by_day: vec![1, 2, 0],
            cycle: false,
        };
        assert_eq!(field_of(bad_day.validate()), "points_by_day[2]");
        let empty = SignInConfig {
            points_by_day: vec![],
            cycle: true,
        };
        assert_eq!(field_of(empty.validate()), "points_by_day");
        let sign_in_key = task("sign_in", json!({"kind": "once", "event": "x"}));
        assert_eq!(sign_in_key.validate().unwrap_err().code, "reserved_key");
        let cases = [
            (
                json!({"kind": "count", "event": "s", "target": 1, "period": "day",
                    "filters": [{"prop": "n", "op": "in", "value": 3}]}),
                "kind.filters[0].op",
            ),
            (
                json!({"kind": "count", "event": "s", "target": 0, "period": "week"}),
                "kind.target",
            ),
            (
                json!({"kind": "once_all_props", "event": "p", "props": ["a", "a"]}),
                "kind.props[1]",
            ),
            (
                json!({"kind": "once_all_props", "event": "p", "props": []}),
                "kind.props",
            ),
            (json!({"kind": "once", "event": "$share"}), "kind.event"),
        ];
        for (kind, field) in cases {
            assert_eq!(field_of(task("t", kind).validate()), field);
        }
        let mut t = task("t", json!({"kind": "once", "event": "order_paid"}));
        t.points = 0;
        assert_eq!(field_of(t.validate()), "points");
    }

    #[test]
    fn rules_read_from_json_and_refuse_misspelt_fields() {
        let r: EarningRule = serde_json::from_value(json!({
            "key": "order_points", "name": "消费积分", "event": "order_paid",
            "filters": [{"prop": "channel", "op": "in", "value": ["app", "h5"]}],
            "award": {"kind": "per_unit", "prop": "amount_fen", "points": 1, "per": 100},
            "caps": {"per_day": 1000}, "budget": 10000000, "tier_multiplier": true
        }))
        .unwrap();
        assert!(r.active && r.validate().is_ok());
        let fixed = json!({"kind": "fixed", "points": 1});
        let typos = [
            json!({"key": "k", "name": "n", "event": "e", "award": fixed, "caps": {"per_dya": 1}}),
            json!({"key": "k", "name": "n", "event": "e", "award": {"kind": "fixed", "pionts": 1}}),
        ];
        for typo in typos {
            assert!(serde_json::from_value::<EarningRule>(typo).is_err());
        }
        let state = TaskState {
            count: 2,
            period_start: Some(date(2026, 11, 23)),
            ..TaskState::default()
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<TaskState>(&text).unwrap(), state);
        assert_eq!(
            serde_json::from_str::<TaskState>("{}").unwrap(),
            TaskState::default()
        );
    }

    proptest! {
        #[test]
        fn awards_never_exceed_what_is_left(
            points in 0i64..2_000_000,
            permille in 0u32..5000,
            multiply in any::<bool>(),
            caps in proptest::array::uniform4(proptest::option::of(1i64..=MAX_POINTS)),
            used in proptest::array::uniform4(prop_oneof![any::<i64>(), -10i64..3_000_000]),
        ) {
            let mut r = rule(Award::Fixed { points });
            r.tier_multiplier = multiply;
            r.caps = Caps { per_day: caps[0], per_week: caps[1], per_lifetime: caps[2] };
            r.budget = caps[3];
            let d = award(&r, "order_paid", &Map::new(), &usage(used[0], used[1], used[2], used[3]), permille);
            let multiplied = if multiply { points * i64::from(permille) / 1000 } else { points };
            prop_assert!(d.points >= 0 && d.points <= multiplied);
            for (cap, used) in caps.iter().zip(used) {
                if let Some(cap) = cap {
                    let left = (i128::from(*cap) - i128::from(used)).max(0);
                    prop_assert!(i128::from(d.points) <= left);
                }
            }
            prop_assert_eq!(d.limited_by.is_some(), d.points < multiplied);
        }
    }
}
