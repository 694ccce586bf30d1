//! The few numbers a manager reads first: yesterday's active users, how sticky
//! the product is, how many come back after 1, 7 and 30 days, and how many
//! never come back at all.

use super::active::active_series;
use super::day::LocalDay;
use super::index::ActivityIndex;
use super::lifecycle::{lifecycle, LifecyclePeriod};
use super::one_and_done::one_and_done;
use super::range::{DayRange, Period};
use super::retention::{retention, RetentionMode, RetentionQuery};
use serde::Serialize;

/// Cohorts averaged for the retention headline: the 60 days before today.
const COHORT_DAYS: i32 = 60;
/// Retention columns the headline reports.
pub const HEADLINE_DAYS: [usize; 3] = [1, 7, 30];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    /// The last complete local day.
    pub date: String,
    pub dau: u64,
    pub wau: u64,
    pub mau: u64,
    pub stickiness: Option<f64>,
    pub new_users: u64,
    /// Day-k retention over the cohorts of the last 60 days that have reached day k,
    /// weighted by cohort size, for k = 1, 7, 30.
    pub retention: Vec<(usize, Option<f64>)>,
    /// Share of users (cohorts at least 30 days old) never active after their first day.
    pub one_and_done: Option<f64>,
    /// The last complete week's lifecycle.
    pub last_week: Option<LifecyclePeriod>,
}

pub fn headline(index: &ActivityIndex, today: LocalDay) -> Headline {
    let yesterday = today.plus(-1);
    let day = active_series(
        index,
        DayRange {
            from: yesterday,
            to: yesterday,
        },
        today,
    )
    .remove(0);
    let cohorts = retention(
        index,
        RetentionQuery {
            range: DayRange {
                from: today.plus(-COHORT_DAYS),
                to: yesterday,
            },
            max_periods: 30,
            period: Period::Day,
            mode: RetentionMode::NDay,
        },
        today,
    );
    let retention = HEADLINE_DAYS
        .iter()
        .map(|&k| {
            let (kept, size) = cohorts
                .iter()
                .filter_map(|c| c.retained[k].map(|kept| (kept, c.size)))
                .fold((0, 0), |(a, b), (kept, size)| (a + kept, b + size));
            (k, (size > 0).then(|| kept as f64 / size as f64))
        })
        .collect();
    let everything = DayRange {
        from: today.plus(-super::range::MAX_RANGE_DAYS),
        to: today,
    };
    let last_monday = today.week_start().plus(-7);
    Headline {
        date: yesterday.to_string(),
        dau: day.dau.unwrap_or(0),
        wau: day.wau.unwrap_or(0),
        mau: day.mau.unwrap_or(0),
        stickiness: day.stickiness,
        new_users: day.new.unwrap_or(0),
        retention,
        one_and_done: one_and_done(index, everything, 30, today).share,
        last_week: lifecycle(
            index,
            DayRange {
                from: last_monday,
                to: last_monday,
            },
            Period::Week,
            today,
        )
        .pop(),
    }
}
