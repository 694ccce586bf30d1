//! Backend-neutral bookkeeping for one ingest batch, so both stores apply the same rules.

use huiliu_domain::events::ValidEvent;

/// The users a batch mentions, sorted: a fixed order keeps row locks from deadlocking.
pub fn distinct_users(events: &[ValidEvent]) -> Vec<&str> {
    let mut users: Vec<&str> = events.iter().map(|e| e.user_id.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    users
}
