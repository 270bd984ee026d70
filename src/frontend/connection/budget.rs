//! What a connection's memory is counted in, and what a request read from the
//! socket holds until it is answered.
//!
//! - [`ConnectionBytes`]: the bytes one connection holds: request frames read
//!   and not yet answered, the room reserved for fetch responses under way,
//!   and responses not yet written to the socket. The reader stops reading
//!   while it is at `max_connection_bytes` or above; charges never wait, so a
//!   response can always be queued, and the total overshoots the bound by at
//!   most what was under way when it was reached.
//! - The held share: a second [`ConnectionBytes`] of half
//!   `max_connection_bytes`, from which each parked long poll reserves its
//!   response room (its `max_bytes`, capped) on top of its charge above. A
//!   long poll that does not fit is answered at once instead of parked, so
//!   parked polls completing together stay within the bound, and the other
//!   half is left for the requests read meanwhile (parking must not stop
//!   the reader, see the `in_flight` module).
//! - The broker-wide budget of request bytes is a semaphore of
//!   `max_inflight_request_bytes` permits: the reader takes a frame's length
//!   once its length prefix has arrived, before it buffers the body, and
//!   waits while they are not free. Small frames (up to
//!   `reader::SMALL_FRAME_BYTES`) take none, so that large frames cannot
//!   hold up other clients' small requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit};

/// The bytes one connection holds. See the module documentation.
#[derive(Debug)]
pub struct ConnectionBytes {
    used: AtomicUsize,
    max: usize,
    freed: Notify,
}

impl ConnectionBytes {
    pub fn new(max: usize) -> Arc<ConnectionBytes> {
        Arc::new(ConnectionBytes { used: AtomicUsize::new(0), max, freed: Notify::new() })
    }

    /// Counts `bytes` until the returned charge is dropped. Never waits.
    pub fn charge(self: &Arc<Self>, bytes: usize) -> Charge {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        Charge { owner: Arc::clone(self), bytes }
    }

    /// Bytes counted now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Bytes left before the bound; 0 at or past it.
    pub fn room(&self) -> usize {
        self.max.saturating_sub(self.used())
    }

    /// Waits until the connection is below its bound.
    pub async fn below_bound(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between wakes it.
            freed.as_mut().enable();
            if self.used() < self.max {
                return;
            }
            freed.await;
        }
    }
}

/// Bytes counted against a connection until dropped.
#[derive(Debug)]
pub struct Charge {
    owner: Arc<ConnectionBytes>,
    bytes: usize,
}

impl Charge {
    /// The bytes counted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.owner.used.fetch_sub(self.bytes, Ordering::AcqRel);
            self.owner.freed.notify_waiters();
        }
    }
}

/// What a request read from the socket holds until it is answered (or, for a
/// request the broker may hold, until it is dispatched): its read-ahead
/// permit, its bytes in the broker-wide budget (none for a small frame) and
/// its bytes in its connection's.
#[derive(Debug)]
pub struct Admission {
    pub read_ahead: OwnedSemaphorePermit,
    pub request_bytes: Option<OwnedSemaphorePermit>,
    pub connection_bytes: Charge,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_bound_holds_the_reader_until_bytes_are_released() {
        let bytes = ConnectionBytes::new(100);
        let first = bytes.charge(60);
        let second = bytes.charge(60);
        assert_eq!((bytes.used(), bytes.room()), (120, 0));
        let waiting = tokio::time::timeout(Duration::from_millis(20), bytes.below_bound()).await;
        assert!(waiting.is_err(), "over the bound, the reader waits");
        drop(first);
        assert_eq!(bytes.used(), 60);
        tokio::time::timeout(Duration::from_secs(1), bytes.below_bound()).await.expect("below the bound again");
        drop(second);
        assert_eq!(bytes.used(), 0);
    }

    #[tokio::test]
    async fn a_release_wakes_a_waiting_reader() {
        let bytes = ConnectionBytes::new(10);
        let charge = bytes.charge(10);
        let waiter = {
            let bytes = Arc::clone(&bytes);
            tokio::spawn(async move { bytes.below_bound().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(charge);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("woken").expect("joined");
    }
}
