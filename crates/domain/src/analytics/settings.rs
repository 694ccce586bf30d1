//! Per-app choices that shape the activity index: which events count as a user
//! being active, and which event names get day bitmaps of their own.

use crate::ids::EventName;
use crate::FieldError;
use serde::{Deserialize, Serialize};

/// At most this many names in each list: every tracked name costs a bitmap per day.
pub const MAX_LISTED_EVENTS: usize = 32;

/// Event names starting with this are recorded by huiliu itself (messages sent,
/// points earned…) and never count as the user being active.
pub const INTERNAL_EVENT_PREFIX: char = '$';

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// Only these events count as activity; `None` means every event the app sends.
    #[serde(default)]
    pub activity_events: Option<Vec<String>>,
    /// Events that never count as activity (e.g. a background `heartbeat`).
    #[serde(default)]
    pub excluded_events: Vec<String>,
    /// Events with a bitmap of their own per day (e.g. `order_paid`), for segments and reports.
    #[serde(default)]
    pub tracked_events: Vec<String>,
}

impl AnalyticsSettings {
    /// Validates every name; errors name the list and position (`tracked_events[2]`).
    pub fn validated(self) -> Result<Self, FieldError> {
        if let Some(names) = &self.activity_events {
            check_names("activity_events", names)?;
            if names.is_empty() {
                return Err(FieldError::new(
                    "invalid_settings",
                    "activity_events",
                    "an empty list would make nobody active; use null for every event",
                ));
            }
        }
        check_names("excluded_events", &self.excluded_events)?;
        check_names("tracked_events", &self.tracked_events)?;
        Ok(self)
    }

    /// Whether an event with this name makes its user active on its day.
    pub fn counts_as_activity(&self, name: &str) -> bool {
        !name.starts_with(INTERNAL_EVENT_PREFIX)
            && !self.excluded_events.iter().any(|n| n == name)
            && self
                .activity_events
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
    }

    pub fn is_tracked(&self, name: &str) -> bool {
        self.tracked_events.iter().any(|n| n == name)
    }
}

fn check_names(list: &str, names: &[String]) -> Result<(), FieldError> {
    if names.len() > MAX_LISTED_EVENTS {
        return Err(FieldError::new(
            "too_many_events",
            list,
            format!("at most {MAX_LISTED_EVENTS} event names"),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let field = format!("{list}[{i}]");
        EventName::parse(name).map_err(|e| e.for_field(&field))?;
        if names[..i].contains(name) {
            return Err(FieldError::new(
                "duplicate_event",
                &field,
                format!("{name:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_every_event_but_huiliu_s_own_is_activity() {
        let settings = AnalyticsSettings::default();
        assert!(settings.counts_as_activity("app_launch"));
        assert!(!settings.counts_as_activity("$message_sent"));
    }

    #[test]
    fn an_allow_list_and_exclusions_narrow_activity() {
        let settings = AnalyticsSettings {
            activity_events: Some(vec!["app_launch".into(), "order_paid".into()]),
            excluded_events: vec!["order_paid".into()],
            tracked_events: vec![],
        };
        assert!(settings.counts_as_activity("app_launch"));
        assert!(!settings.counts_as_activity("order_paid"));
        assert!(!settings.counts_as_activity("view_item"));
    }

    #[test]
    fn invalid_lists_name_the_entry() {
        let bad = AnalyticsSettings {
            tracked_events: vec!["ok".into(), "Not Valid".into()],
            ..Default::default()
        };
        assert_eq!(
            bad.validated().unwrap_err().field.as_deref(),
            Some("tracked_events[1]")
        );
        let twice = AnalyticsSettings {
            excluded_events: vec!["a".into(), "a".into()],
            ..Default::default()
        };
        assert_eq!(
            twice.validated().unwrap_err().field.as_deref(),
            Some("excluded_events[1]")
        );
        let empty = AnalyticsSettings {
            activity_events: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(
            empty.validated().unwrap_err().field.as_deref(),
            Some("activity_events")
        );
    }
}
