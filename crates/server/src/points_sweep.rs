//! The points sweep: on every node, every few seconds, writes what time decided
//! in the ledger — expiry entries for lots whose expiry instant passed (expiry
//! instants are local midnights in the app's zone, so this is the daily expiry
//! run), holds released when they timed out (a redemption whose server died
//! between hold and capture), and cached figures refreshed when a pending earn
//! vested. Balances read and written in between are exact anyway: every read
//! and write settles the same things for its own user first. It also judges
//! again the members whose tier grace (保级) ended, so stored tiers follow
//! without anyone reading them.

use crate::background::drain;
use huiliu_store::Store;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_EVERY: Duration = Duration::from_secs(30);
/// Accounts per store call: bounds one SQLite writer job.
const BATCH: u32 = 256;

pub async fn run<S: Store>(store: S, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let store = &store;
        let finished = drain("tier sweep", BATCH, &shutdown, |now, limit| {
            store.tiers_sweep(now, limit)
        })
        .await
            && drain("points sweep", BATCH, &shutdown, |now, limit| {
                store.points_sweep(now, limit)
            })
            .await;
        if !finished {
            return;
        }
    }
}
