//! Records, SQL and the pure judging of earning rules, tasks and the daily
//! sign-in, shared by both stores.
//!
//! Trusted events (sent with the secret key) whose name some rule or task
//! listens to are queued by ingest in the same transaction; a background
//! loop judges them. For each event, every active rule that matches awards
//! points within its caps and budget (× the member's tier multiplier when the
//! rule says so), every task it advances is saved, and a task completed now
//! pays once; the queue row goes in the same transaction, so an event is
//! judged exactly once whatever crashes.

use crate::points::Cause;
use huiliu_domain::earning::{
    self, AwardDecision, EarningRule, RuleUsage, SignInConfig, SignInState, TaskDef, TaskState,
};
use huiliu_domain::time::AppTimeZone;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What the stored definitions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Rule,
    Task,
    SignIn,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Task => "task",
            Self::SignIn => "sign_in",
        }
    }
}

/// App $1's definitions of kind $2, in order: key, body.
pub const ITEMS: &str = "SELECT item_key, body FROM loyalty_items
    WHERE app_seq = $1 AND kind = $2 ORDER BY position, item_key";

/// Stores a definition: app $1, kind $2, key $3, body $4, at $5 (a new one goes last).
pub const PUT_ITEM: &str = "INSERT INTO loyalty_items (app_seq, kind, item_key, body, position, updated_us)
    VALUES ($1, $2, $3, $4, $5, $5)
    ON CONFLICT (app_seq, kind, item_key) DO UPDATE SET body = excluded.body, updated_us = excluded.updated_us";

/// Drops definition $3 of kind $2 (app $1).
pub const DELETE_ITEM: &str =
    "DELETE FROM loyalty_items WHERE app_seq = $1 AND kind = $2 AND item_key = $3";

/// Forgets app $1's listened-to event names (rewritten after every change).
pub const CLEAR_AWARD_EVENTS: &str = "DELETE FROM award_events WHERE app_seq = $1";

/// Listens to event $2 for app $1.
pub const ADD_AWARD_EVENT: &str = "INSERT INTO award_events (app_seq, event_name) VALUES ($1, $2)
    ON CONFLICT (app_seq, event_name) DO NOTHING";

/// App $1's listened-to event names.
pub const AWARD_EVENTS: &str = "SELECT event_name FROM award_events WHERE app_seq = $1";

/// A queued event: app $1, user $2 … as the judge reads it: user_index,
/// event_id, name, props, time_us, the app's time zone.
pub const QUEUED_EVENT: &str =
    "SELECT e.user_index, e.event_id, e.name, e.props, e.time_us, a.timezone
    FROM events e JOIN apps a ON a.seq = e.app_seq WHERE e.app_seq = $1 AND e.seq = $2";

/// Drops queued event $2 of app $1.
pub const DEQUEUE: &str = "DELETE FROM award_queue WHERE app_seq = $1 AND event_seq = $2";

/// Rule $3's usage for user $2 and the app (-1) of app $1: period, points.
pub const RULE_USAGE: &str = "SELECT user_index, period, points FROM rule_usage
    WHERE app_seq = $1 AND user_index IN ($2, -1) AND rule_key = $3";

/// Adds $5 points to rule $3's usage in period $4 (app $1, user $2 or -1).
pub const ADD_USAGE: &str = "INSERT INTO rule_usage (app_seq, user_index, rule_key, period, points)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (app_seq, user_index, rule_key, period) DO UPDATE SET points = rule_usage.points + excluded.points";

/// User $2's task and sign-in states (app $1): key, state.
pub const TASK_STATES: &str =
    "SELECT task_key, state FROM task_states WHERE app_seq = $1 AND user_index = $2";

/// Stores user $2's state of task $3 (app $1): state $4 at $5.
pub const PUT_TASK_STATE: &str = "INSERT INTO task_states (app_seq, user_index, task_key, state, updated_us)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (app_seq, user_index, task_key) DO UPDATE SET state = excluded.state, updated_us = excluded.updated_us";

/// The key the sign-in state is kept under among task states.
pub const SIGN_IN_STATE_KEY: &str = "$sign_in";

/// Usage periods of a rule at an instant: the local day, the ISO week, all time.
pub fn periods(at_us: i64, zone: &AppTimeZone) -> [String; 3] {
    let (day, week) = earning::period_keys(at_us, zone);
    [format!("d{day}"), format!("w{week}"), "life".to_string()]
}

/// A rule's usage from its rows (user_index, period, points).
pub fn usage_of(rows: &[(i64, String, i64)], periods: &[String; 3]) -> RuleUsage {
    let mut usage = RuleUsage::default();
    for (user, period, points) in rows {
        if *user == -1 {
            usage.budget_used += points;
        } else if *period == periods[0] {
            usage.today += points;
        } else if *period == periods[1] {
            usage.this_week += points;
        } else if *period == periods[2] {
            usage.lifetime += points;
        }
    }
    usage
}

/// The app's definitions, parsed.
#[derive(Debug, Clone)]
pub struct Definitions {
    pub rules: Vec<EarningRule>,
    pub tasks: Vec<TaskDef>,
    pub sign_in: Option<SignInConfig>,
    /// When the points they award expire: the app's policy, read once.
    pub expiry: huiliu_domain::points::ExpiryPolicy,
}

impl Definitions {
    pub fn parse(
        rules: &[(String, String)],
        tasks: &[(String, String)],
        sign_in: &[(String, String)],
    ) -> Result<Self, crate::StoreError> {
        fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, crate::StoreError> {
            serde_json::from_str(text).map_err(crate::StoreError::internal)
        }
        Ok(Self {
            rules: rules
                .iter()
                .map(|(_, b)| parse(b))
                .collect::<Result<_, _>>()?,
            tasks: tasks
                .iter()
                .map(|(_, b)| parse(b))
                .collect::<Result<_, _>>()?,
            sign_in: sign_in.first().map(|(_, b)| parse(b)).transpose()?,
            expiry: huiliu_domain::points::ExpiryPolicy::Never,
        })
    }

    /// The event names the active rules and tasks listen to.
    pub fn award_events(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.active)
            .map(|r| r.event.clone())
            .chain(
                self.tasks
                    .iter()
                    .filter(|t| t.active)
                    .map(|t| t.kind.event().to_string()),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// The event being judged.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub user_index: i64,
    pub event_id: String,
    pub name: String,
    pub props: Map<String, Value>,
    pub time_us: i64,
    pub zone: AppTimeZone,
}

impl QueuedEvent {
    pub fn from_row(
        (user_index, event_id, name, props, time_us, zone): (
            i64,
            String,
            String,
            String,
            i64,
            String,
        ),
    ) -> Result<Self, crate::StoreError> {
        let props = match serde_json::from_str(&props) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let zone = AppTimeZone::parse(&zone).map_err(|e| crate::StoreError::internal(e.message))?;
        Ok(Self {
            user_index,
            event_id,
            name,
            props,
            time_us,
            zone,
        })
    }
}

/// A rule's award for an event, to write as an earn and as usage.
pub struct RuleAward<'a> {
    pub rule: &'a EarningRule,
    pub decision: AwardDecision,
}

impl RuleAward<'_> {
    pub fn cause(&self) -> Cause {
        Cause::new("rule", Some(self.rule.key.clone()))
    }

    pub fn reason(&self, event_id: &str) -> String {
        format!("{} (event {event_id})", self.rule.name)
            .chars()
            .take(200)
            .collect()
    }
}

/// What a task did with an event: its new state and whether it pays now.
pub struct TaskStep<'a> {
    pub task: &'a TaskDef,
    pub state: TaskState,
    pub completed_now: bool,
}

/// The tasks `event` advances, given the user's states.
pub fn task_steps<'a>(
    definitions: &'a Definitions,
    states: &BTreeMap<String, TaskState>,
    event: &QueuedEvent,
) -> Vec<TaskStep<'a>> {
    definitions
        .tasks
        .iter()
        .filter(|t| t.active && t.kind.event() == event.name)
        .map(|task| {
            let advance = earning::advance(
                task,
                states.get(&task.key).cloned(),
                &event.name,
                &event.props,
                event.time_us,
                &event.zone,
            );
            TaskStep {
                task,
                state: advance.state,
                completed_now: advance.completed_now,
            }
        })
        .collect()
}

/// Parses stored task states; the sign-in's is kept apart.
pub fn task_states_of(
    rows: Vec<(String, String)>,
) -> Result<(BTreeMap<String, TaskState>, Option<StoredSignIn>), crate::StoreError> {
    let mut tasks = BTreeMap::new();
    let mut sign_in = None;
    for (key, state) in rows {
        if key == SIGN_IN_STATE_KEY {
            sign_in = Some(serde_json::from_str(&state).map_err(crate::StoreError::internal)?);
        } else {
            tasks.insert(
                key,
                serde_json::from_str(&state).map_err(crate::StoreError::internal)?,
            );
        }
    }
    Ok((tasks, sign_in))
}

/// What `POST /v1/users/{id}/sign-in` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedIn {
    /// False when the user had signed in today already (nothing new awarded).
    pub signed_in_now: bool,
    /// Points today's sign-in paid.
    pub points: i64,
    pub streak: u32,
    /// The place in the points table that paid.
    pub streak_day: u32,
    pub balance: i64,
    /// The earn entry of today's sign-in.
    pub transaction_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInOutcome {
    Done(SignedIn),
    UnknownUser,
    /// The app has no sign-in configured.
    NotConfigured,
}

/// The sign-in state as stored: the domain's state and today's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredSignIn {
    #[serde(flatten)]
    pub state: SignInState,
    pub points: i64,
    pub streak_day: u32,
    pub transaction_id: Option<String>,
}

/// The tasks view of a user.
pub fn task_views(
    definitions: &Definitions,
    rows: Vec<(String, String)>,
    now_us: i64,
    zone: &AppTimeZone,
) -> Result<Vec<earning::TaskView>, crate::StoreError> {
    let (tasks, sign_in) = task_states_of(rows)?;
    Ok(earning::task_list(
        &definitions.tasks,
        &tasks,
        definitions
            .sign_in
            .as_ref()
            .map(|c| (c, sign_in.as_ref().map(|s| &s.state))),
        now_us,
        zone,
    ))
}

/// Growth value (成长值) the rules give `event`: (rule, growth) for each that does.
pub fn rule_growth<'a>(
    definitions: &'a Definitions,
    event: &QueuedEvent,
) -> Vec<(&'a EarningRule, i64)> {
    definitions
        .rules
        .iter()
        .map(|rule| (rule, earning::growth(rule, &event.name, &event.props)))
        .filter(|(_, growth)| *growth > 0)
        .collect()
}

/// The awards of every active rule `event` matches, given each rule's usage.
pub fn rule_awards<'a>(
    definitions: &'a Definitions,
    event: &QueuedEvent,
    usage: impl Fn(&EarningRule) -> RuleUsage,
    multiplier_permille: u32,
) -> Vec<RuleAward<'a>> {
    definitions
        .rules
        .iter()
        .filter(|r| r.active && earning::matches(r, &event.name, &event.props))
        .map(|rule| {
            let permille = if rule.tier_multiplier {
                multiplier_permille
            } else {
                1000
            };
            RuleAward {
                rule,
                decision: earning::award(rule, &event.name, &event.props, &usage(rule), permille),
            }
        })
        .filter(|a| a.decision.points > 0)
        .collect()
}
