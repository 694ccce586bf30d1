//! Cohort retention: users grouped by the local day (or week) of their first
//! activity, and how many of them are active again k periods later.

use super::day::LocalDay;
use super::index::ActivityIndex;
use super::range::{DayRange, Period};
use crate::FieldError;
use roaring::RoaringBitmap;
use serde::Serialize;

/// The largest `max_day` a request may ask for.
pub const MAX_PERIODS: u32 = 180;

/// How a later period counts a cohort member as retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetentionMode {
    /// Active in period k itself ("return on").
    #[default]
    NDay,
    /// Active in period k or any later one ("return on or after").
    Unbounded,
}

impl RetentionMode {
    pub fn parse(text: Option<&str>) -> Result<Self, FieldError> {
        match text {
            None | Some("n_day") | Some("nday") => Ok(RetentionMode::NDay),
            Some("unbounded") => Ok(RetentionMode::Unbounded),
            Some(other) => Err(FieldError::new(
                "invalid_enum",
                "mode",
                format!("{other:?} is not one of \"n_day\", \"unbounded\""),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::NDay => "n_day",
            RetentionMode::Unbounded => "unbounded",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionQuery {
    pub range: DayRange,
    pub max_periods: u32,
    pub period: Period,
    pub mode: RetentionMode,
}

/// One row of the matrix. `retained[0]` is the cohort's size; a later cell is
/// `None` while its period has not fully passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    pub date: String,
    pub size: u64,
    pub retained: Vec<Option<u64>>,
}

/// The union of one period's day bitmaps (a day period borrows its only bitmap).
fn period_union<'a>(
    start: LocalDay,
    period: Period,
    bitmap_of: impl Fn(LocalDay) -> &'a RoaringBitmap,
) -> std::borrow::Cow<'a, RoaringBitmap> {
    match period {
        Period::Day => std::borrow::Cow::Borrowed(bitmap_of(start)),
        Period::Week => {
            let mut union = RoaringBitmap::new();
            for day in start.through(start.plus(6)) {
                union |= bitmap_of(day);
            }
            std::borrow::Cow::Owned(union)
        }
    }
}

pub fn retention(index: &ActivityIndex, query: RetentionQuery, today: LocalDay) -> Vec<Cohort> {
    let step = query.period.days();
    let max = query.max_periods as i32;
    let starts: Vec<LocalDay> = query.period.starts(query.range).collect();
    let cohorts: Vec<_> = starts
        .iter()
        .map(|&start| period_union(start, query.period, |d| index.first_active(d)))
        .collect();
    // A period counts once its last day is over.
    let complete = |start: LocalDay| start.plus(step - 1) < today;
    let mut rows: Vec<Cohort> = starts
        .iter()
        .zip(&cohorts)
        .map(|(start, users)| Cohort {
            date: start.to_string(),
            size: users.len(),
            retained: std::iter::once(Some(users.len()))
                .chain((1..=max).map(|_| None))
                .collect(),
        })
        .collect();
    match query.mode {
        RetentionMode::NDay => {
            // Every later period any cohort needs, each built once.
            let Some(&first) = starts.first() else {
                return rows;
            };
            let last = starts[starts.len() - 1].plus(max * step);
            let periods: Vec<_> = (0..)
                .map(|i| first.plus(i * step))
                .take_while(|start| *start <= last)
                .map(|start| {
                    complete(start).then(|| period_union(start, query.period, |d| index.active(d)))
                })
                .collect();
            for (c, (row, users)) in rows.iter_mut().zip(&cohorts).enumerate() {
                if users.is_empty() {
                    for k in 1..=max as usize {
                        row.retained[k] = periods[c + k].as_ref().map(|_| 0);
                    }
                    continue;
                }
                for k in 1..=max as usize {
                    row.retained[k] = periods[c + k]
                        .as_ref()
                        .map(|active| users.intersection_len(active));
                }
            }
        }
        RetentionMode::Unbounded => {
            // Walk periods from the latest activity backwards, keeping the union of
            // everything from the current period on: one running bitmap serves every cell.
            let Some((_, last_active)) = index.active_span() else {
                for (row, start) in rows.iter_mut().zip(&starts) {
                    for (k, cell) in row.retained.iter_mut().enumerate().skip(1) {
                        *cell = complete(start.plus(k as i32 * step)).then_some(0);
                    }
                }
                return rows;
            };
            let first_needed = starts[0].plus(step);
            let last_needed = starts[starts.len() - 1].plus(max * step);
            let mut from_here_on = RoaringBitmap::new();
            let mut day = query.period.start_of(last_active.max(last_needed));
            while day >= first_needed {
                from_here_on |= period_union(day, query.period, |d| index.active(d)).as_ref();
                if day <= last_needed && complete(day) {
                    for (c, start) in starts.iter().enumerate() {
                        let k = day.days_since(*start) / step;
                        if (1..=max).contains(&k) {
                            rows[c].retained[k as usize] =
                                Some(cohorts[c].intersection_len(&from_here_on));
                        }
                    }
                }
                day = day.plus(-step);
            }
        }
    }
    rows
}
