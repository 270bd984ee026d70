//! Retrying a step of an extension's work until it succeeds.

use std::future::Future;
use std::time::Duration;

use herald_actors::error::BrokerError;

/// The longest wait between two tries of [`retry_until_ok`].
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Runs `step` until it succeeds, waiting 50 ms after the first failure and
/// twice as long after each further one, up to [`MAX_RETRY_WAIT`]; each
/// failure is logged at WARN with `what`. For work that must never be given
/// up (records a router took must reach their destination), where an error
/// (a full disk, a topic being re-created) is expected to pass.
pub async fn retry_until_ok<T, F, Fut>(what: &str, mut step: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let mut wait = Duration::from_millis(50);
    loop {
        match step().await {
            Ok(done) => return done,
            Err(err) => {
                tracing::warn!(%err, what, retry_in_ms = wait.as_millis() as u64, "extension step failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
}
