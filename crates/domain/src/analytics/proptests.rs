//! The bitmap reports against naive set arithmetic over random activity.

use super::active::active_series;
use super::lifecycle::lifecycle;
use super::one_and_done::one_and_done;
use super::retention::{retention, RetentionMode, RetentionQuery};
use super::{ActivityIndex, AnalyticsSettings, DayRange, DeltaBuilder, LocalDay, Period};
use jiff::tz::TimeZone;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const BASE_DAY: i32 = 20_400; // a Monday: 2025-11-10
const DAY_US: i64 = 86_400_000_000;

/// Naive model: the set of active days per user.
fn model(activity: &[(u32, i32)]) -> BTreeMap<u32, BTreeSet<i32>> {
    let mut days: BTreeMap<u32, BTreeSet<i32>> = BTreeMap::new();
    for &(user, day) in activity {
        days.entry(user).or_default().insert(BASE_DAY + day);
    }
    days
}

fn index(activity: &[(u32, i32)]) -> ActivityIndex {
    let zone = TimeZone::UTC;
    let settings = AnalyticsSettings::default();
    let mut builder = DeltaBuilder::new(&zone, &settings);
    for &(user, day) in activity {
        builder.add(
            user,
            i64::from(BASE_DAY + day) * DAY_US + 3_600_000_000,
            "launch",
        );
    }
    let mut index = ActivityIndex::default();
    for row in builder.finish().bitmaps {
        index.apply(row);
    }
    index
}

fn period_of(day: i32, period: Period) -> i32 {
    match period {
        Period::Day => day,
        Period::Week => LocalDay::from_number(day).week_start().number(),
    }
}

fn active_in(days: &BTreeSet<i32>, first: i32, last: i32) -> bool {
    days.range(first..=last).next().is_some()
}

fn activity() -> impl Strategy<Value = Vec<(u32, i32)>> {
    prop::collection::vec((0u32..40, 0i32..50), 0..200)
}

proptest! {
    #[test]
    fn active_users_match_sets(activity in activity(), today in 0i32..60, from in 0i32..50, len in 0i32..20) {
        let users = model(&activity);
        let index = index(&activity);
        let today = BASE_DAY + today;
        let range = DayRange::new(LocalDay::from_number(BASE_DAY + from), LocalDay::from_number(BASE_DAY + from + len)).unwrap();
        for day in active_series(&index, range, LocalDay::from_number(today)) {
            let d = LocalDay::parse(&day.date, "d").unwrap().number();
            if d > today {
                prop_assert_eq!(day.dau, None);
                continue;
            }
            let count = |width: i32| users.values().filter(|days| active_in(days, d - width + 1, d)).count() as u64;
            prop_assert_eq!(day.dau, Some(count(1)));
            prop_assert_eq!(day.wau, Some(count(7)));
            prop_assert_eq!(day.mau, Some(count(30)));
            let new = users.values().filter(|days| days.first() == Some(&d)).count() as u64;
            prop_assert_eq!(day.new, Some(new));
        }
    }

    #[test]
    fn retention_matches_sets(activity in activity(), today in 0i32..60, from in 0i32..50, len in 0i32..20, max in 0u32..30, weekly in any::<bool>(), unbounded in any::<bool>()) {
        let users = model(&activity);
        let index = index(&activity);
        let period = if weekly { Period::Week } else { Period::Day };
        let mode = if unbounded { RetentionMode::Unbounded } else { RetentionMode::NDay };
        let today = BASE_DAY + today;
        let range = DayRange::new(LocalDay::from_number(BASE_DAY + from), LocalDay::from_number(BASE_DAY + from + len)).unwrap();
        let step = period.days();
        let rows = retention(&index, RetentionQuery { range, max_periods: max, period, mode }, LocalDay::from_number(today));
        prop_assert_eq!(rows.len(), period.starts(range).count());
        for row in rows {
            let start = LocalDay::parse(&row.date, "d").unwrap().number();
            let cohort: Vec<&BTreeSet<i32>> = users.values().filter(|days| period_of(*days.first().unwrap(), period) == start).collect();
            prop_assert_eq!(row.size, cohort.len() as u64);
            prop_assert_eq!(row.retained[0], Some(cohort.len() as u64));
            for k in 1..=max as i32 {
                let first = start + k * step;
                let cell = row.retained[k as usize];
                if first + step > today {
                    prop_assert_eq!(cell, None);
                    continue;
                }
                let last = if unbounded { i32::MAX } else { first + step - 1 };
                let expected = cohort.iter().filter(|days| active_in(days, first, last)).count() as u64;
                prop_assert_eq!(cell, Some(expected), "cohort {} k {}", start, k);
            }
        }
    }

    #[test]
    fn lifecycle_matches_sets(activity in activity(), today in 0i32..60, from in 0i32..50, len in 0i32..20, weekly in any::<bool>()) {
        let users = model(&activity);
        let index = index(&activity);
        let period = if weekly { Period::Week } else { Period::Day };
        let today = BASE_DAY + today;
        let range = DayRange::new(LocalDay::from_number(BASE_DAY + from), LocalDay::from_number(BASE_DAY + from + len)).unwrap();
        let step = period.days();
        for row in lifecycle(&index, range, period, LocalDay::from_number(today)) {
            let start = LocalDay::parse(&row.date, "d").unwrap().number();
            if start > today {
                prop_assert_eq!(row.active, None);
                continue;
            }
            let now = |days: &&BTreeSet<i32>| active_in(days, start, start + step - 1);
            let before = |days: &&BTreeSet<i32>| active_in(days, start - step, start - 1);
            let is_new = |days: &&BTreeSet<i32>| period_of(*days.first().unwrap(), period) == start;
            let count = |f: &dyn Fn(&&BTreeSet<i32>) -> bool| users.values().filter(|d| f(d)).count() as u64;
            prop_assert_eq!(row.new, Some(count(&|d| is_new(d))));
            prop_assert_eq!(row.returning, Some(count(&|d| now(d) && before(d))));
            prop_assert_eq!(row.resurrecting, Some(count(&|d| now(d) && !before(d) && !is_new(d))));
            prop_assert_eq!(row.dormant, Some(count(&|d| before(d) && !now(d))));
        }
    }

    #[test]
    fn one_and_done_matches_sets(activity in activity(), today in 0i32..60, min_age in 1u32..20) {
        let users = model(&activity);
        let index = index(&activity);
        let today = BASE_DAY + today;
        let range = DayRange::new(LocalDay::from_number(BASE_DAY - 10), LocalDay::from_number(today)).unwrap();
        let report = one_and_done(&index, range, min_age, LocalDay::from_number(today));
        let eligible: Vec<&BTreeSet<i32>> = users.values().filter(|d| *d.first().unwrap() <= today - min_age as i32).collect();
        prop_assert_eq!(report.users, eligible.len() as u64);
        prop_assert_eq!(report.never_returned, eligible.iter().filter(|d| d.len() == 1).count() as u64);
        for cohort in &report.cohorts {
            let day = LocalDay::parse(&cohort.date, "d").unwrap().number();
            let members: Vec<_> = eligible.iter().filter(|d| *d.first().unwrap() == day).collect();
            prop_assert_eq!(cohort.size, members.len() as u64);
            prop_assert_eq!(cohort.never_returned, members.iter().filter(|d| d.len() == 1).count() as u64);
        }
    }
}
