//! Validated query parameters shared by every analytics report.

use super::day::LocalDay;
use crate::FieldError;

/// The longest span one report may cover.
pub const MAX_RANGE_DAYS: i32 = 400;

/// An inclusive range of local days, at most [`MAX_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: LocalDay,
    pub to: LocalDay,
}

impl DayRange {
    /// Parses `from`/`to` (`YYYY-MM-DD`); an absent end takes its default.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        default_from: impl FnOnce(LocalDay) -> LocalDay,
        default_to: LocalDay,
    ) -> Result<Self, FieldError> {
        let to = match to {
            Some(text) => LocalDay::parse(text, "to")?,
            None => default_to,
        };
        let from = match from {
            Some(text) => LocalDay::parse(text, "from")?,
            None => default_from(to),
        };
        Self::new(from, to)
    }

    pub fn new(from: LocalDay, to: LocalDay) -> Result<Self, FieldError> {
        if from > to {
            return Err(FieldError::new(
                "invalid_range",
                "from",
                format!("from ({from}) is after to ({to})"),
            ));
        }
        if to.days_since(from) >= MAX_RANGE_DAYS {
            return Err(FieldError::new(
                "range_too_long",
                "to",
                format!("a report covers at most {MAX_RANGE_DAYS} days; {from} to {to} is longer"),
            ));
        }
        Ok(Self { from, to })
    }

    pub fn days(self) -> impl Iterator<Item = LocalDay> {
        self.from.through(self.to)
    }
}

/// Day or week: the unit of cohorts and lifecycle periods. Weeks run Monday to Sunday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Period {
    #[default]
    Day,
    Week,
}

impl Period {
    pub fn parse(text: Option<&str>) -> Result<Self, FieldError> {
        match text {
            None | Some("day") => Ok(Period::Day),
            Some("week") => Ok(Period::Week),
            Some(other) => Err(FieldError::new(
                "invalid_enum",
                "period",
                format!("{other:?} is not one of \"day\", \"week\""),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
        }
    }

    pub fn days(self) -> i32 {
        match self {
            Period::Day => 1,
            Period::Week => 7,
        }
    }

    /// The first day of the period containing `day`.
    pub fn start_of(self, day: LocalDay) -> LocalDay {
        match self {
            Period::Day => day,
            Period::Week => day.week_start(),
        }
    }

    /// Period starts from the one containing `range.from` to the one containing `range.to`.
    pub fn starts(self, range: DayRange) -> impl Iterator<Item = LocalDay> {
        let first = self.start_of(range.from);
        let last = self.start_of(range.to);
        let step = self.days();
        (0..)
            .map(move |i| first.plus(i * step))
            .take_while(move |start| *start <= last)
    }
}

/// Parses an optional unsigned integer parameter within `range`.
pub fn parse_count(
    text: Option<&str>,
    field: &str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, FieldError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            FieldError::new(
                "out_of_range",
                field,
                format!(
                    "{text:?} is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> LocalDay {
        LocalDay::parse(text, "d").unwrap()
    }

    #[test]
    fn ranges_are_ordered_and_bounded() {
        let today = day("2026-11-24");
        let range = DayRange::parse(None, None, |to| to.plus(-29), today).unwrap();
        assert_eq!((range.from, range.to), (day("2026-10-26"), today));
        let err =
            DayRange::parse(Some("2026-11-25"), Some("2026-11-24"), |t| t, today).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("from"));
        assert!(DayRange::parse(Some("2025-10-21"), Some("2026-11-24"), |t| t, today).is_ok());
        let err =
            DayRange::parse(Some("2025-10-20"), Some("2026-11-24"), |t| t, today).unwrap_err();
        assert_eq!(err.code, "range_too_long");
    }

    #[test]
    fn week_periods_cover_the_range_from_its_monday() {
        let range = DayRange::new(day("2026-11-04"), day("2026-11-23")).unwrap();
        let starts: Vec<String> = Period::Week.starts(range).map(|d| d.to_string()).collect();
        assert_eq!(
            starts,
            ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
        );
        assert_eq!(
            Period::parse(Some("month")).unwrap_err().field.as_deref(),
            Some("period")
        );
    }

    #[test]
    fn counts_are_bounded() {
        assert_eq!(parse_count(None, "max_day", 30, 0..=180).unwrap(), 30);
        assert_eq!(
            parse_count(Some("180"), "max_day", 30, 0..=180).unwrap(),
            180
        );
        for bad in ["181", "-1", "x", ""] {
            assert_eq!(
                parse_count(Some(bad), "max_day", 30, 0..=180)
                    .unwrap_err()
                    .field
                    .as_deref(),
                Some("max_day")
            );
        }
    }
}
