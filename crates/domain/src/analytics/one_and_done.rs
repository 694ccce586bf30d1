//! One-and-done: among cohorts old enough to have had the chance to come back,
//! the share of users never active again after their first local day. The
//! articles' first decision anchor: if most users never return, no recall or
//! reward lever will fix it.

use super::day::LocalDay;
use super::index::ActivityIndex;
use super::range::DayRange;
use roaring::RoaringBitmap;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneAndDoneCohort {
    pub date: String,
    pub size: u64,
    /// Users never active after their first day.
    pub never_returned: u64,
    /// never_returned / size; `None` for an empty cohort.
    pub share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneAndDone {
    pub min_age_days: u32,
    pub users: u64,
    pub never_returned: u64,
    pub share: Option<f64>,
    pub cohorts: Vec<OneAndDoneCohort>,
}

/// The last cohort day old enough for `min_age_days` on `today`.
pub fn youngest_eligible(today: LocalDay, min_age_days: u32) -> LocalDay {
    today.plus(-(min_age_days as i32))
}

/// `range` should end no later than [`youngest_eligible`]; younger cohorts are left out.
pub fn one_and_done(
    index: &ActivityIndex,
    range: DayRange,
    min_age_days: u32,
    today: LocalDay,
) -> OneAndDone {
    let last = range.to.min(youngest_eligible(today, min_age_days));
    let mut cohorts = Vec::new();
    if range.from <= last {
        // Walk back from the latest activity, keeping everyone active from `day` on;
        // a cohort's returners are its members active from the day after it on.
        let latest = index
            .active_span()
            .map_or(last.plus(1), |(_, l)| l.max(last.plus(1)));
        let mut from_here_on = RoaringBitmap::new();
        let mut day = latest;
        while day > range.from {
            from_here_on |= index.active(day);
            let cohort_day = day.plus(-1);
            if cohort_day <= last {
                let members = index.first_active(cohort_day);
                let returned = members.intersection_len(&from_here_on);
                cohorts.push(cohort(cohort_day, members.len(), members.len() - returned));
            }
            day = day.plus(-1);
        }
        cohorts.reverse();
    }
    let users = cohorts.iter().map(|c| c.size).sum();
    let never_returned = cohorts.iter().map(|c| c.never_returned).sum();
    OneAndDone {
        min_age_days,
        users,
        never_returned,
        share: ratio(never_returned, users),
        cohorts,
    }
}

fn cohort(day: LocalDay, size: u64, never_returned: u64) -> OneAndDoneCohort {
    OneAndDoneCohort {
        date: day.to_string(),
        size,
        never_returned,
        share: ratio(never_returned, size),
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}
