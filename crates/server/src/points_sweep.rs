//! The points sweep: on every node, every few seconds, writes what time decided
//! in the ledger — expiry entries for lots whose expiry instant passed (expiry
//! instants are local midnights in the app's zone, so this is the daily expiry
//! run), holds released when they timed out (a redemption whose server died
//! between hold and capture), and cached figures refreshed when a pending earn
//! vested. Balances read and written in between are exact anyway: every read
//! and write settles the same things for its own user first. It also judges
//! again the members whose tier grace (保级) ended, so stored tiers follow
//! without anyone reading them.

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
        let now = huiliu_domain::time::to_micros(jiff::Timestamp::now());
        if let Err(error) = store.tiers_sweep(now, BATCH).await {
            tracing::warn!(%error, "tier sweep failed");
        }
        loop {
            let now = huiliu_domain::time::to_micros(jiff::Timestamp::now());
            match store.points_sweep(now, BATCH).await {
                Ok(n) if n < BATCH as usize => break,
                Ok(_) if shutdown.is_cancelled() => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "points sweep failed");
                    break;
                }
            }
        }
    }
}
