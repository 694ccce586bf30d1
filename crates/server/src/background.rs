//! What the background loops (points sweep, award loop) share: working a
//! store call off in batches until it has nothing more to do.

use huiliu_store::StoreResult;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// Calls `step` with the current time (one store call taking at most `batch`
/// items) until a call takes fewer than `batch`, or fails (logged as `what`;
/// the next round tries again). False when shutdown came first.
pub(crate) async fn drain<F, Fut>(
    what: &str,
    batch: u32,
    shutdown: &CancellationToken,
    mut step: F,
) -> bool
where
    F: FnMut(i64, u32) -> Fut,
    Fut: Future<Output = StoreResult<usize>>,
{
    loop {
        let now = huiliu_domain::time::to_micros(jiff::Timestamp::now());
        match step(now, batch).await {
            Ok(n) if n < batch as usize => return true,
            Ok(_) if shutdown.is_cancelled() => return false,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "{what} failed; trying again in the next round");
                return true;
            }
        }
    }
}
