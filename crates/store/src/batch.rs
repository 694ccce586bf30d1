//! Backend-neutral bookkeeping for one ingest batch, so both stores apply the same rules.

use huiliu_domain::events::ValidEvent;
use huiliu_domain::time::to_micros;
use std::collections::{BTreeMap, HashSet};

/// The users a batch mentions, sorted: a fixed order keeps row locks from deadlocking.
pub fn distinct_users(events: &[ValidEvent]) -> Vec<&str> {
    let mut users: Vec<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    users
}

/// How the accepted events of a batch move one user's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserActivity<'a> {
    pub user_id: &'a str,
    pub first_us: i64,
    pub last_us: i64,
    pub count: i64,
}

/// Summarises the events the store accepted, per user, sorted by user id.
pub fn activity_of_accepted<'a>(
    events: &'a [ValidEvent],
    accepted_ids: &HashSet<String>,
) -> Vec<UserActivity<'a>> {
    let mut by_user: BTreeMap<&str, UserActivity> = BTreeMap::new();
    for event in events
        .iter()
        .filter(|e| accepted_ids.contains(e.id.as_str()))
    {
        let time = to_micros(event.time);
        let user = event.user_id.as_str();
        by_user
            .entry(user)
            .and_modify(|a| {
                a.first_us = a.first_us.min(time);
                a.last_us = a.last_us.max(time);
                a.count += 1;
            })
            .or_insert(UserActivity {
                user_id: user,
                first_us: time,
                last_us: time,
                count: 1,
            });
    }
    by_user.into_values().collect()
}
