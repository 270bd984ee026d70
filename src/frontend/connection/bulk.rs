//! Work on large requests: decoding a large frame and encoding a large batch.
//!
//! It runs on tokio's blocking threads, so that it never holds up the other
//! actors of an arbiter (a megabyte-sized frame takes milliseconds to decode),
//! and at most one fewer such job runs at once than the machine has cores
//! (at least one), so that a burst of large requests always leaves a core to
//! the arbiters, where small requests are served. Jobs past that wait their
//! turn; the requests they belong to wait with them, in their connection's
//! order.

use std::sync::OnceLock;

use tokio::sync::Semaphore;
use tokio::task::JoinError;

/// The turns of the process's large-request work: one per core but one.
fn turns() -> &'static Semaphore {
    static TURNS: OnceLock<Semaphore> = OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Semaphore::new(cores.saturating_sub(1).max(1))
    })
}

/// Runs `work` on a blocking thread once a turn is free.
///
/// # Errors
///
/// The work panicked, or the runtime is shutting down.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, JoinError> {
    // The semaphore is never closed, so a turn always comes.
    let _turn = turns().acquire().await;
    actix_rt::task::spawn_blocking(work).await
}
