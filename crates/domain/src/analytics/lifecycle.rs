//! Lifecycle: each period's active users split into new, returning and
//! resurrecting, beside the users lost since the previous period (dormant).
//!
//! Definitions (as PostHog's lifecycle): new = first active in this period;
//! returning = active in this and the previous period; resurrecting = active in
//! this period, not in the previous one, and not new; dormant = active in the
//! previous period but not in this one. More dormant than returning plus
//! resurrecting is a leaking bucket.

use super::day::LocalDay;
use super::index::ActivityIndex;
use super::range::{DayRange, Period};
use roaring::RoaringBitmap;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LifecyclePeriod {
    pub date: String,
    pub active: Option<u64>,
    pub new: Option<u64>,
    pub returning: Option<u64>,
    pub resurrecting: Option<u64>,
    /// A loss: users active in the previous period and not in this one.
    pub dormant: Option<u64>,
    /// False while the period is still running (its numbers still move).
    pub complete: bool,
}

fn union_of_days(index: &ActivityIndex, start: LocalDay, period: Period) -> RoaringBitmap {
    let mut union = RoaringBitmap::new();
    for day in start.through(start.plus(period.days() - 1)) {
        union |= index.active(day);
    }
    union
}

pub fn lifecycle(
    index: &ActivityIndex,
    range: DayRange,
    period: Period,
    today: LocalDay,
) -> Vec<LifecyclePeriod> {
    let starts: Vec<LocalDay> = period.starts(range).collect();
    let Some(&first) = starts.first() else {
        return Vec::new();
    };
    let mut previous = union_of_days(index, first.plus(-period.days()), period);
    starts
        .into_iter()
        .map(|start| {
            let active = union_of_days(index, start, period);
            let new = start
                .through(start.plus(period.days() - 1))
                .map(|day| index.first_active(day).len())
                .sum::<u64>();
            let returning = active.intersection_len(&previous);
            let started = start <= today;
            let row = LifecyclePeriod {
                date: start.to_string(),
                active: started.then(|| active.len()),
                new: started.then_some(new),
                returning: started.then_some(returning),
                resurrecting: started.then(|| active.len() - returning - new),
                dormant: started.then(|| previous.len() - returning),
                complete: start.plus(period.days() - 1) < today,
            };
            previous = active;
            row
        })
        .collect()
}
