//! Figures computed from the generated events alone, the way huiliu computes
//! them from ingested events: activity per local day in the app's zone.

use crate::event::{EventKind, Source};
use crate::sim::Simulation;
use crate::DayOfEvents;
use serde::Serialize;

/// Days of inactivity after which a user counts as dormant in [`Summary`].
const DORMANT_AFTER_DAYS: u32 = 14;

#[derive(Debug, Clone, Copy)]
struct Seen {
    first: u32,
    last: u32,
    /// Bit k: active on local day `first + k` (k < 64).
    days: u64,
    /// [`Source::index`] of the first launch.
    source: u8,
}

/// Accumulates [`DayOfEvents`] and reports retention-style figures.
#[derive(Debug, Default, Clone)]
pub struct Measure {
    users: Vec<Seen>,
    day: u32,
    events: u64,
    sources: [u64; 3],
    orders: u64,
    revenue_fen: i64,
    prompts: u64,
    accepted: u64,
    message_opens: u64,
    shares: u64,
}

/// What a simulated population looks like; every share is a fraction 0…1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub days: u32,
    pub users: u64,
    pub events: u64,
    pub events_per_user: f64,
    /// Users whose first launch came from organic / paid / shared arrivals.
    pub organic_users: u64,
    pub paid_users: u64,
    pub shared_users: u64,
    /// Share of arrivals that came through another user's share.
    pub shared_share: f64,
    /// Cohorts at least this many days old count for `one_and_done`.
    pub one_and_done_min_age_days: u32,
    /// Users never active again after their first local day.
    pub one_and_done: Option<f64>,
    /// Share of each eligible cohort active on local day 1, 7 and 30 after arrival.
    pub day1: Option<f64>,
    pub day7: Option<f64>,
    pub day30: Option<f64>,
    /// Day-7 retention of users from each source: how good shared users are.
    pub day7_by_source: BySource,
    pub orders: u64,
    pub revenue_fen: i64,
    pub subscribe_prompts: u64,
    pub subscribe_accepts: u64,
    pub message_opens: u64,
    pub shares: u64,
    /// Users inactive for the last 14 days of the period (among those who
    /// arrived at least 14 days before its end).
    pub dormant: Option<f64>,
    /// Share of the same users who are dormant and still hold a subscription credit.
    pub dormant_with_credit: Option<f64>,
}

/// One figure per arrival source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BySource {
    pub organic: Option<f64>,
    pub paid: Option<f64>,
    pub shared: Option<f64>,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Measure {
    pub fn new() -> Measure {
        Measure::default()
    }

    /// Adds the next day; days must come in order, as `next_day` returns them.
    pub fn add_day(&mut self, day: &DayOfEvents) {
        let today = self.day;
        for event in &day.events {
            let user = event.user as usize;
            if user >= self.users.len() {
                self.users.resize(
                    user + 1,
                    Seen {
                        first: u32::MAX,
                        last: 0,
                        days: 0,
                        source: 0,
                    },
                );
            }
            let seen = &mut self.users[user];
            if seen.first == u32::MAX {
                seen.first = today;
            }
            seen.last = today;
            let k = today - seen.first;
            if k < 64 {
                seen.days |= 1 << k;
            }
            self.events += 1;
            match event.kind {
                EventKind::Launch {
                    first: Some(source),
                    ..
                } => {
                    self.sources[source.index()] += 1;
                    self.users[user].source = source.index() as u8;
                }
                EventKind::OrderPaid { amount_fen, .. } => {
                    self.orders += 1;
                    self.revenue_fen += amount_fen;
                }
                EventKind::SubscribePrompt { accepted, .. } => {
                    self.prompts += 1;
                    self.accepted += u64::from(accepted);
                }
                EventKind::MessageOpen { .. } => self.message_opens += 1,
                EventKind::Share { .. } => self.shares += 1,
                _ => {}
            }
        }
        self.day += 1;
    }

    /// The figures so far. With the simulation at hand, dormant users still
    /// holding a credit are counted too (events alone do not show credits
    /// spent on unopened messages).
    pub fn summary(&self, simulation: Option<&Simulation>) -> Summary {
        let days = self.day;
        let last = days.saturating_sub(1);
        let users = self.users.iter().filter(|s| s.first != u32::MAX);
        let min_age = 30.min(last);
        let retained_from = |k: u32, source: Option<Source>| {
            let (mut size, mut active) = (0u64, 0u64);
            let from = source.map(|s| s.index() as u8);
            for seen in self
                .users
                .iter()
                .filter(|s| s.first != u32::MAX && from.is_none_or(|f| f == s.source))
            {
                if seen.first + k <= last {
                    size += 1;
                    active += (seen.days >> k) & 1;
                }
            }
            ratio(active, size)
        };
        let retained = |k: u32| retained_from(k, None);
        let (mut eligible, mut never_back) = (0u64, 0u64);
        let (mut old_enough, mut dormant, mut dormant_credit) = (0u64, 0u64, 0u64);
        let mut count = 0u64;
        for (user, seen) in users.enumerate() {
            count += 1;
            if min_age > 0 && seen.first + min_age <= last {
                eligible += 1;
                never_back += u64::from(seen.last == seen.first);
            }
            if seen.first + DORMANT_AFTER_DAYS <= last {
                old_enough += 1;
                if seen.last + DORMANT_AFTER_DAYS <= last {
                    dormant += 1;
                    let holds = simulation
                        .and_then(|s| s.user_truth(user as u32))
                        .is_some_and(|t| t.credits.iter().any(|c| *c > 0));
                    dormant_credit += u64::from(holds);
                }
            }
        }
        let [organic, paid, shared] = self.sources;
        Summary {
            days,
            users: count,
            events: self.events,
            events_per_user: ratio(self.events, count).unwrap_or(0.0),
            organic_users: organic,
            paid_users: paid,
            shared_users: shared,
            shared_share: ratio(shared, organic + paid + shared).unwrap_or(0.0),
            one_and_done_min_age_days: min_age,
            one_and_done: ratio(never_back, eligible),
            day1: retained(1),
            day7: retained(7),
            day30: retained(30),
            day7_by_source: BySource {
                organic: retained_from(7, Some(Source::Organic)),
                paid: retained_from(7, Some(Source::Paid)),
                shared: retained_from(7, Some(Source::Shared)),
            },
            orders: self.orders,
            revenue_fen: self.revenue_fen,
            subscribe_prompts: self.prompts,
            subscribe_accepts: self.accepted,
            message_opens: self.message_opens,
            shares: self.shares,
            dormant: ratio(dormant, old_enough),
            dormant_with_credit: simulation.and_then(|_| ratio(dormant_credit, old_enough)),
        }
    }
}
