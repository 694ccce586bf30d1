//! Funnels: ordered steps (an event name and optional property equalities),
//! each to be done after the previous one and within a conversion window of the
//! first. Computed from raw events, which the store fetches by name and time.

use super::range::DayRange;
use crate::ids::EventName;
use crate::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MIN_STEPS: usize = 2;
pub const MAX_STEPS: usize = 10;
/// The longest conversion window: 90 days.
pub const MAX_WINDOW_SECONDS: i64 = 90 * 86_400;
pub const DEFAULT_WINDOW: &str = "7d";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelStep {
    pub event: String,
    /// Top-level props that must equal these values (strings, numbers, booleans).
    #[serde(rename = "where", skip_serializing_if = "Map::is_empty")]
    pub filters: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepInput {
    event: String,
    #[serde(default, rename = "where")]
    filters: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StepSpec {
    Name(String),
    Full(StepInput),
}

impl FunnelStep {
    fn matches(&self, name: &str, props: Option<&Map<String, Value>>) -> bool {
        name == self.event
            && (self.filters.is_empty()
                || props.is_some_and(|props| {
                    self.filters
                        .iter()
                        .all(|(key, want)| props.get(key) == Some(want))
                }))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunnelQuery {
    pub steps: Vec<FunnelStep>,
    pub window_us: i64,
    pub window: String,
    /// Users enter on a first step done within these local days.
    pub range: DayRange,
}

impl FunnelQuery {
    /// Whether any step needs event props (the store then fetches them).
    pub fn needs_props(&self) -> bool {
        self.steps.iter().any(|s| !s.filters.is_empty())
    }

    /// The distinct event names of the steps.
    pub fn event_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.steps.iter().map(|s| s.event.clone()).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Parses `steps`: a JSON array whose items are event names or
/// `{"event": "...", "where": {"prop": value}}`, or a plain comma-separated list of names.
pub fn parse_steps(text: &str) -> Result<Vec<FunnelStep>, FieldError> {
    let specs: Vec<StepSpec> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            FieldError::new(
                "invalid_steps",
                "steps",
                format!("steps is not a JSON array of event names or {{\"event\", \"where\"}} objects: {e}"),
            )
        })?
    } else {
        text.split(',')
            .map(|name| StepSpec::Name(name.trim().to_string()))
            .collect()
    };
    if !(MIN_STEPS..=MAX_STEPS).contains(&specs.len()) {
        return Err(FieldError::new(
            "invalid_steps",
            "steps",
            format!(
                "a funnel has {MIN_STEPS} to {MAX_STEPS} steps, not {}",
                specs.len()
            ),
        ));
    }
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| {
            let (event, filters) = match spec {
                StepSpec::Name(name) => (name, Map::new()),
                StepSpec::Full(input) => (input.event, input.filters),
            };
            let field = format!("steps[{i}]");
            EventName::parse(&event).map_err(|e| e.for_field(format!("{field}.event")))?;
            if let Some((key, _)) = filters
                .iter()
                .find(|(_, v)| v.is_array() || v.is_object() || v.is_null())
            {
                return Err(FieldError::new(
                    "invalid_filter",
                    format!("{field}.where.{key}"),
                    "a filter value is a string, number or boolean",
                ));
            }
            Ok(FunnelStep { event, filters })
        })
        .collect()
}

/// Parses a window such as `30m`, `24h` or `7d`.
pub fn parse_window(text: Option<&str>) -> Result<(String, i64), FieldError> {
    let text = text.unwrap_or(DEFAULT_WINDOW);
    let bad = || {
        FieldError::new(
            "invalid_window",
            "window",
            format!("{text:?} is not a window such as \"30m\", \"24h\" or \"7d\" (at most 90d)"),
        )
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let count: i64 = number.parse().map_err(|_| bad())?;
    let unit_seconds = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let seconds = count.checked_mul(unit_seconds).ok_or_else(bad)?;
    if seconds <= 0 || seconds > MAX_WINDOW_SECONDS {
        return Err(bad());
    }
    Ok((text.to_string(), seconds * 1_000_000))
}

/// A stored event a funnel reads: the store returns them ordered by user, time
/// and arrival, which is also the order ties between equal times are broken in.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelEvent {
    pub user: u32,
    pub time_us: i64,
    pub name: String,
    pub props: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelStepResult {
    pub event: String,
    #[serde(rename = "where", skip_serializing_if = "Map::is_empty")]
    pub filters: Map<String, Value>,
    pub users: u64,
    /// Share of the first step's users who reached this step.
    pub conversion: Option<f64>,
    /// Share of the previous step's users who reached this step.
    pub step_conversion: Option<f64>,
}

/// Counts users by the furthest step they reached from any first step in range.
///
/// `entry_us` is `[start of range.from, start of the day after range.to)` in UTC.
pub fn evaluate(
    query: &FunnelQuery,
    entry_us: (i64, i64),
    events: &[FunnelEvent],
) -> Vec<FunnelStepResult> {
    let mut reached = vec![0u64; query.steps.len()];
    for user_events in events.chunk_by(|a, b| a.user == b.user) {
        let furthest = furthest_step(query, entry_us, user_events);
        for count in reached.iter_mut().take(furthest) {
            *count += 1;
        }
    }
    query
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| FunnelStepResult {
            event: step.event.clone(),
            filters: step.filters.clone(),
            users: reached[i],
            conversion: ratio(reached[i], reached[0]),
            step_conversion: ratio(reached[i], reached[i.saturating_sub(1)]),
        })
        .collect()
}

/// How many steps (0 to all) one user's time-ordered events complete.
fn furthest_step(
    query: &FunnelQuery,
    (entry_from, entry_to): (i64, i64),
    events: &[FunnelEvent],
) -> usize {
    let steps = &query.steps;
    let mut best = 0;
    for (i, start) in events.iter().enumerate() {
        if !(entry_from..entry_to).contains(&start.time_us)
            || !steps[0].matches(&start.name, start.props.as_ref())
        {
            continue;
        }
        // From this start, taking each next step at its earliest occurrence is
        // optimal: a later occurrence can only leave less of the window.
        let deadline = start.time_us + query.window_us;
        let mut done = 1;
        for event in &events[i + 1..] {
            if done == steps.len() || event.time_us > deadline {
                break;
            }
            if steps[done].matches(&event.name, event.props.as_ref()) {
                done += 1;
            }
        }
        best = best.max(done);
        if best == steps.len() {
            break;
        }
    }
    best
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The instants a funnel needs events from: entries in the range, steps up to a window later.
pub fn event_span(query: &FunnelQuery, zone: &jiff::tz::TimeZone) -> ((i64, i64), (i64, i64)) {
    let entry = (
        query.range.from.start_micros(zone),
        query.range.to.plus(1).start_micros(zone),
    );
    (entry, (entry.0, entry.1 + query.window_us))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::day::LocalDay;

    fn query(steps: &str, window: &str) -> FunnelQuery {
        let (window, window_us) = parse_window(Some(window)).unwrap();
        let day = LocalDay::from_number(20_000);
        FunnelQuery {
            steps: parse_steps(steps).unwrap(),
            window_us,
            window,
            range: DayRange::new(day, day).unwrap(),
        }
    }

    fn event(user: u32, seconds: i64, name: &str, props: Option<Value>) -> FunnelEvent {
        FunnelEvent {
            user,
            time_us: seconds * 1_000_000,
            name: name.into(),
            props: props.and_then(|p| p.as_object().cloned()),
        }
    }

    #[test]
    fn steps_parse_from_a_list_or_json_and_errors_name_the_step() {
        assert_eq!(parse_steps("a, b").unwrap().len(), 2);
        let steps =
            parse_steps(r#"["view_item", {"event": "order_paid", "where": {"channel": "share"}}]"#)
                .unwrap();
        assert_eq!(steps[1].filters["channel"], "share");
        assert_eq!(
            parse_steps("a").unwrap_err().field.as_deref(),
            Some("steps")
        );
        assert_eq!(
            parse_steps("a,B b").unwrap_err().field.as_deref(),
            Some("steps[1].event")
        );
        assert_eq!(
            parse_steps(r#"["a", {"event": "b", "where": {"x": [1]}}]"#)
                .unwrap_err()
                .field
                .as_deref(),
            Some("steps[1].where.x")
        );
        assert_eq!(
            parse_steps("[1,2]").unwrap_err().field.as_deref(),
            Some("steps")
        );
    }

    #[test]
    fn windows_parse_with_units_and_bounds() {
        assert_eq!(parse_window(None).unwrap().1, 7 * 86_400_000_000);
        assert_eq!(parse_window(Some("30m")).unwrap().1, 1_800_000_000);
        for bad in ["0d", "91d", "7", "d", "-1h", "7w", ""] {
            assert_eq!(
                parse_window(Some(bad)).unwrap_err().field.as_deref(),
                Some("window"),
                "{bad}"
            );
        }
    }

    #[test]
    fn users_count_at_the_furthest_step_reached_in_order_within_the_window() {
        let q = query("view,cart,paid", "1h");
        let entry = (0, 86_400_000_000);
        let events = vec![
            // user 1: all three steps in order within an hour
            event(1, 10, "view", None),
            event(1, 20, "cart", None),
            event(1, 30, "paid", None),
            // user 2: paid before cart, so only two steps count
            event(2, 10, "view", None),
            event(2, 20, "paid", None),
            event(2, 30, "cart", None),
            // user 3: cart too late for the first view, but a second view starts again
            event(3, 10, "view", None),
            event(3, 4_000, "view", None),
            event(3, 4_100, "cart", None),
            // user 4: never viewed in the entry range
            event(4, 90_000, "view", None),
            event(4, 90_010, "cart", None),
        ];
        let result = evaluate(&q, entry, &events);
        let users: Vec<u64> = result.iter().map(|r| r.users).collect();
        assert_eq!(users, [3, 3, 1]);
        assert_eq!(result[2].conversion, Some(1.0 / 3.0));
    }

    #[test]
    fn property_filters_must_all_match() {
        let q = query(
            r#"["view", {"event": "paid", "where": {"channel": "share", "vip": true}}]"#,
            "1d",
        );
        let entry = (0, 86_400_000_000);
        let events = vec![
            event(1, 1, "view", None),
            event(
                1,
                2,
                "paid",
                Some(serde_json::json!({"channel": "share", "vip": true})),
            ),
            event(2, 1, "view", None),
            event(2, 2, "paid", Some(serde_json::json!({"channel": "share"}))),
        ];
        let users: Vec<u64> = evaluate(&q, entry, &events)
            .iter()
            .map(|r| r.users)
            .collect();
        assert_eq!(users, [2, 1]);
    }

    #[test]
    fn one_event_completes_one_step_even_when_steps_repeat_a_name() {
        let q = query("view,view", "1h");
        let once = vec![event(1, 1, "view", None)];
        assert_eq!(evaluate(&q, (0, 100_000_000), &once)[1].users, 0);
        let twice = vec![event(1, 1, "view", None), event(1, 1, "view", None)];
        assert_eq!(evaluate(&q, (0, 100_000_000), &twice)[1].users, 1);
    }
}
