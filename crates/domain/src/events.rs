//! Behaviour events: the rules an incoming event must satisfy, and batch-level dedupe.

use crate::ids::{EventId, EventName, UserId};
use crate::FieldError;
use jiff::{SignedDuration, Timestamp};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Most events one request may carry.
pub const MAX_BATCH_EVENTS: usize = 1000;
/// Largest request body accepted for a batch, in bytes.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Largest `props` object, in bytes of JSON text.
pub const MAX_PROPS_BYTES: usize = 8 * 1024;
/// How far back an event may lie: older history belongs to a fresh import, not to live traffic.
pub const MAX_PAST: SignedDuration = SignedDuration::from_hours(365 * 24);
/// How far ahead an event may lie: a day covers any device clock skew.
pub const MAX_FUTURE: SignedDuration = SignedDuration::from_hours(24);

/// Who sent an event, which decides what it may cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventSource {
    /// Sent with the secret key from the company's backend: trusted.
    Server,
    /// Sent with the publishable key from the mini-program: analytics only.
    Client,
    /// Read from a history file by `huiliu import`: analytics only, never rewarded.
    Import,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Server => "server",
            EventSource::Client => "client",
            EventSource::Import => "import",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "server" => Some(Self::Server),
            "client" => Some(Self::Client),
            "import" => Some(Self::Import),
            _ => None,
        }
    }

    /// Only events from the company's own backend may earn points or qualify referrals.
    pub fn is_trusted(self) -> bool {
        self == EventSource::Server
    }
}

/// An event that passed every rule. `props` is the JSON object exactly as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub id: EventId,
    pub user_id: UserId,
    pub name: EventName,
    pub time: Timestamp,
    pub props: String,
}

/// Parses and checks one event object. Errors name the field inside the event
/// (`time`, `props`, …); the caller places them under `events[i]`.
pub fn parse_event(raw: &str, now: Timestamp) -> Result<ValidEvent, FieldError> {
    let object: RawObject = serde_json::from_str(raw).map_err(|error| {
        let (code, message) = if error.is_data() {
            (
                "invalid_type",
                "each event must be a JSON object".to_string(),
            )
        } else {
            ("invalid_json", format!("not valid JSON: {error}"))
        };
        FieldError {
            code,
            message,
            field: None,
        }
    })?;
    let mut id = None;
    let mut user_id = None;
    let mut name = None;
    let mut time = None;
    let mut props = None;
    for (key, value) in object.0 {
        let slot = match key.as_ref() {
            "id" => &mut id,
            "user_id" => &mut user_id,
            "name" => &mut name,
            "time" => &mut time,
            "props" => &mut props,
            other => {
                return Err(FieldError::new(
                    "unknown_field",
                    other,
                    "is not an event field (expected id, user_id, name, time, props)",
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(FieldError::new("duplicate_field", key, "appears twice"));
        }
    }

    let id = EventId::parse(required_string("id", id)?)?;
    let user_id = UserId::parse(required_string("user_id", user_id)?)?;
    let name = EventName::parse(required_string("name", name)?)?;
    let time = parse_event_time(&required_string("time", time)?, now)?;
    let props = parse_props(props)?;
    Ok(ValidEvent {
        id,
        user_id,
        name,
        time,
        props,
    })
}

fn required_string<'a>(field: &str, raw: Option<&'a RawValue>) -> Result<Cow<'a, str>, FieldError> {
    let raw = raw.ok_or_else(|| FieldError::new("missing_field", field, "is required"))?;
    serde_json::from_str::<Cow<str>>(raw.get())
        .map_err(|_| FieldError::new("invalid_type", field, "must be a string"))
}

/// An event time must carry its UTC offset: a bare local time is ambiguous
/// across zones and daylight-saving changes.
pub fn parse_event_time(value: &str, now: Timestamp) -> Result<Timestamp, FieldError> {
    let time: Timestamp = value.parse().map_err(|_| {
        FieldError::new(
            "invalid_time",
            "time",
            format!(
                "{value:?} is not an RFC 3339 time with an offset, e.g. 2026-11-23T08:00:00+08:00"
            ),
        )
    })?;
    let earliest = now.checked_sub(MAX_PAST).unwrap_or(Timestamp::MIN);
    let latest = now.checked_add(MAX_FUTURE).unwrap_or(Timestamp::MAX);
    if time < earliest {
        return Err(FieldError::new(
            "time_out_of_range",
            "time",
            "is more than 365 days in the past",
        ));
    }
    if time > latest {
        return Err(FieldError::new(
            "time_out_of_range",
            "time",
            "is more than 1 day in the future",
        ));
    }
    Ok(time)
}

fn parse_props(raw: Option<&RawValue>) -> Result<String, FieldError> {
    let Some(raw) = raw else {
        return Ok("{}".to_string());
    };
    let text = raw.get().trim();
    if text == "null" {
        return Ok("{}".to_string());
    }
    // RawValue is already valid JSON, so an opening brace means an object.
    if !text.starts_with('{') {
        return Err(FieldError::new(
            "invalid_type",
            "props",
            "must be a JSON object",
        ));
    }
    if text.len() > MAX_PROPS_BYTES {
        return Err(FieldError::new(
            "too_large",
            "props",
            format!("is {} bytes; the limit is {MAX_PROPS_BYTES}", text.len()),
        ));
    }
    Ok(text.to_string())
}

/// Keeps the first occurrence of each event id in a batch and counts the rest,
/// so a client that repeats an event within one request stores it once.
pub fn dedupe_within_batch(events: Vec<(usize, ValidEvent)>) -> (Vec<(usize, ValidEvent)>, usize) {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(events.len());
        events
            .iter()
            .map(|(_, event)| seen.insert(event.id.as_str()))
            .collect()
    };
    let total = events.len();
    let unique: Vec<_> = events
        .into_iter()
        .zip(keep)
        .filter_map(|(event, first)| first.then_some(event))
        .collect();
    let duplicates = total - unique.len();
    (unique, duplicates)
}

/// A JSON object kept as its keys and unparsed values, in order, duplicates included.
struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(5));
                while let Some(entry) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(RawObject(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T00:00:00Z".parse().unwrap()
    }

    fn field_of(raw: &str) -> (String, &'static str) {
        let err = parse_event(raw, now()).unwrap_err();
        (err.field.unwrap_or_default(), err.code)
    }

    #[test]
    fn a_complete_event_parses() {
        let event = parse_event(
            r#"{"id":"e1","user_id":"u1","name":"order_paid","time":"2026-11-22T23:59:59+08:00","props":{"amount_fen":1999}}"#,
            now(),
        )
        .unwrap();
        assert_eq!(
            event.time,
            "2026-11-22T15:59:59Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(event.props, r#"{"amount_fen":1999}"#);
    }

    #[test]
    fn props_default_to_an_empty_object() {
        let event = parse_event(
            r#"{"id":"e1","user_id":"u1","name":"launch","time":"2026-11-22T12:00:00Z"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(event.props, "{}");
    }

    #[test]
    fn each_rule_names_its_field() {
        let base = |extra: &str| format!(r#"{{"id":"e1","user_id":"u1","name":"launch",{extra}}}"#);
        assert_eq!(
            field_of(&base(r#""time":"2026-11-22T12:00:00""#)),
            ("time".into(), "invalid_time")
        );
        assert_eq!(
            field_of(&base(r#""time":"2025-11-01T12:00:00Z""#)),
            ("time".into(), "time_out_of_range")
        );
        assert_eq!(
            field_of(&base(r#""time":"2026-11-24T12:00:00Z""#)),
            ("time".into(), "time_out_of_range")
        );
        assert_eq!(
            field_of(&base(r#""time":12"#)),
            ("time".into(), "invalid_type")
        );
        assert_eq!(
            field_of(&base(r#""time":"2026-11-22T12:00:00Z","props":[1]"#)),
            ("props".into(), "invalid_type")
        );
        assert_eq!(
            field_of(&base(r#""time":"2026-11-22T12:00:00Z","colour":"red""#)),
            ("colour".into(), "unknown_field")
        );
        assert_eq!(
            field_of(r#"{"user_id":"u1","name":"launch","time":"2026-11-22T12:00:00Z"}"#),
            ("id".into(), "missing_field")
        );
        assert_eq!(
            field_of(
                r#"{"id":"e","id":"f","user_id":"u1","name":"launch","time":"2026-11-22T12:00:00Z"}"#
            ),
            ("id".into(), "duplicate_field")
        );
        let big = format!(
            r#""time":"2026-11-22T12:00:00Z","props":{{"x":"{}"}}"#,
            "a".repeat(MAX_PROPS_BYTES)
        );
        assert_eq!(field_of(&base(&big)), ("props".into(), "too_large"));
        assert_eq!(
            parse_event("[1,2]", now()).unwrap_err().code,
            "invalid_type"
        );
        assert_eq!(
            parse_event("{\"id\":", now()).unwrap_err().code,
            "invalid_json"
        );
    }

    #[test]
    fn the_time_window_edges_are_inclusive() {
        let earliest = now().checked_sub(MAX_PAST).unwrap();
        assert!(parse_event_time(&earliest.to_string(), now()).is_ok());
        let latest = now().checked_add(MAX_FUTURE).unwrap();
        assert!(parse_event_time(&latest.to_string(), now()).is_ok());
    }

    #[test]
    fn duplicates_within_a_batch_keep_the_first() {
        let make = |id: &str, user: &str| ValidEvent {
            id: EventId::parse(id).unwrap(),
            user_id: UserId::parse(user).unwrap(),
            name: EventName::parse("launch").unwrap(),
            time: now(),
            props: "{}".into(),
        };
        let (unique, duplicates) = dedupe_within_batch(vec![
            (0, make("a", "u1")),
            (1, make("b", "u1")),
            (2, make("a", "u2")),
        ]);
        assert_eq!(duplicates, 1);
        assert_eq!(
            unique.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(unique[0].1.user_id.as_str(), "u1");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn now() -> Timestamp {
        "2026-11-23T00:00:00Z".parse().unwrap()
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_accepted_events_obey_every_limit(raw in ".{0,300}") {
            if let Ok(event) = parse_event(&raw, now()) {
                prop_assert!((1..=128).contains(&event.id.as_str().chars().count()));
                let props_ok = event.props.starts_with('{') && event.props.len() <= MAX_PROPS_BYTES;
                prop_assert!(props_ok);
            }
        }

        #[test]
        fn json_shaped_input_is_accepted_exactly_when_each_field_is_valid(
            id in "[a-z0-9-]{0,130}",
            name in "[a-zA-Z0-9_.$ ]{0,66}",
            hours_ago in -48i64..(400 * 24),
            with_offset in any::<bool>(),
        ) {
            let at = now() - SignedDuration::from_hours(hours_ago);
            let time = if with_offset { at.to_string() } else { at.to_string().trim_end_matches('Z').to_string() };
            let raw = serde_json::json!({"id": id, "user_id": "u", "name": name, "time": time}).to_string();
            let expected_ok = (1..=128).contains(&id.len())
                && EventName::parse(name.as_str()).is_ok()
                && with_offset
                && (-24..=365 * 24).contains(&hours_ago);
            prop_assert_eq!(parse_event(&raw, now()).is_ok(), expected_ok, "{}", raw);
        }

        #[test]
        fn dedupe_keeps_each_first_occurrence_in_order(ids in proptest::collection::vec(0u8..20, 0..60)) {
            let events: Vec<(usize, ValidEvent)> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (i, ValidEvent {
                    id: EventId::parse(id.to_string()).unwrap(),
                    user_id: UserId::parse("u").unwrap(),
                    name: EventName::parse("launch").unwrap(),
                    time: now(),
                    props: "{}".into(),
                }))
                .collect();
            let (unique, duplicates) = dedupe_within_batch(events);
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<usize> = ids.iter().enumerate().filter(|(_, id)| seen.insert(**id)).map(|(i, _)| i).collect();
            prop_assert_eq!(unique.iter().map(|(i, _)| *i).collect::<Vec<_>>(), expected);
            prop_assert_eq!(duplicates, ids.len() - seen.len());
        }
    }
}
