//! Time zones and timestamps. Timestamps are stored in UTC; every day boundary
//! and every time shown to a person is in the app's own zone.

use crate::FieldError;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt;

/// The zone an app lives in when none is given: most mini-program users are in China.
pub const DEFAULT_TIMEZONE: &str = "Asia/Shanghai";

/// A validated IANA time zone, kept with the name it was configured with.
#[derive(Clone)]
pub struct AppTimeZone {
    name: String,
    zone: TimeZone,
}

impl AppTimeZone {
    /// Accepts IANA names only (`Asia/Shanghai`, `America/Los_Angeles`, `UTC`);
    /// fixed offsets such as `+08:00` are refused because they ignore daylight saving.
    pub fn parse(name: &str) -> Result<Self, FieldError> {
        let looks_like_iana = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'))
            && !name.starts_with('+')
            && !name.starts_with('-');
        let zone = looks_like_iana
            .then(|| TimeZone::get(name).ok())
            .flatten()
            .ok_or_else(|| {
                FieldError::new(
                    "invalid_timezone",
                    "timezone",
                    format!("{name:?} is not an IANA time zone name such as \"Asia/Shanghai\""),
                )
            })?;
        Ok(Self {
            name: name.to_string(),
            zone,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// RFC 3339 with the zone's offset at that instant, e.g. `2026-11-23T08:00:00+08:00`.
    pub fn format_rfc3339(&self, at: Timestamp) -> String {
        at.to_zoned(self.zone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
            .to_string()
    }
}

impl Default for AppTimeZone {
    fn default() -> Self {
        Self::parse(DEFAULT_TIMEZONE).expect("the default zone is in the bundled database")
    }
}

impl fmt::Debug for AppTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AppTimeZone").field(&self.name).finish()
    }
}

impl PartialEq for AppTimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Microseconds since the Unix epoch: the one integer representation of an
/// instant in both stores, so SQL over raw events compares plain integers.
pub fn to_micros(at: Timestamp) -> i64 {
    at.as_microsecond()
}

pub fn from_micros(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iana_names_are_accepted_and_offsets_refused() {
        assert_eq!(
            AppTimeZone::parse("Asia/Shanghai").unwrap().name(),
            "Asia/Shanghai"
        );
        assert!(AppTimeZone::parse("America/Los_Angeles").is_ok());
        assert!(AppTimeZone::parse("UTC").is_ok());
        for bad in [
            "",
            "+08:00",
            "Mars/Olympus",
            "../etc/passwd",
            "Asia/Shang hai",
        ] {
            let err = AppTimeZone::parse(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("timezone"), "{bad}");
        }
    }

    #[test]
    fn formats_in_the_zone_with_its_offset() {
        let at: Timestamp = "2026-11-23T00:30:00Z".parse().unwrap();
        let shanghai = AppTimeZone::default();
        assert_eq!(shanghai.format_rfc3339(at), "2026-11-23T08:30:00+08:00");
        let la = AppTimeZone::parse("America/Los_Angeles").unwrap();
        assert_eq!(la.format_rfc3339(at), "2026-11-22T16:30:00-08:00");
        let fractional: Timestamp = "2026-11-23T00:30:00.25Z".parse().unwrap();
        assert_eq!(
            shanghai.format_rfc3339(fractional),
            "2026-11-23T08:30:00.25+08:00"
        );
    }

    #[test]
    fn micros_round_trip() {
        let at: Timestamp = "2026-03-08T09:59:59.123456Z".parse().unwrap();
        assert_eq!(from_micros(to_micros(at)), at);
    }
}
