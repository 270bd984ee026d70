//! Read buffers for fetch responses, used again once written.
//!
//! A fetch reads stored batches into one buffer that travels, uncopied, to
//! the connection's writer and the socket. Allocated fresh each time, a
//! buffer of a megabyte or more is a new memory mapping (the broker returns
//! large allocations to the operating system, see `server.rs`): its pages are
//! faulted in and zeroed on the way in and unmapped on the way out, which
//! was most of the broker's CPU on a consume. The writer gives each written
//! body back with [`give_back`]; a read takes one with [`take`].
//!
//! Bounded: at most [`MAX_POOL_BYTES`] of capacity are kept, only buffers
//! between [`MIN_POOLED`] and [`MAX_POOLED`] bytes, and a buffer still shared
//! (another holder of its bytes) is never taken back.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Smaller buffers are cheap to allocate: not kept.
pub const MIN_POOLED: usize = 64 << 10;
/// Larger buffers (over a default frame) are not kept.
pub const MAX_POOLED: usize = 16 << 20;
/// The capacity the pool keeps at most, all buffers together.
pub const MAX_POOL_BYTES: usize = 32 << 20;

struct Pool {
    free: Vec<BytesMut>,
    bytes: usize,
}

/// A bounded set of buffers (see the module documentation); the broker uses
/// one, through [`take`] and [`give_back`].
pub struct BufferPool(Mutex<Pool>);

impl BufferPool {
    pub const fn new() -> BufferPool {
        BufferPool(Mutex::new(Pool { free: Vec::new(), bytes: 0 }))
    }

    /// See [`take`].
    pub fn take(&self, max_bytes: usize) -> BytesMut {
        if max_bytes < MIN_POOLED {
            return BytesMut::new();
        }
        let Ok(mut pool) = self.0.lock() else { return BytesMut::new() };
        let fits = pool.free.iter().position(|b| b.capacity() >= max_bytes.min(MAX_POOLED));
        match fits {
            Some(index) => {
                let buffer = pool.free.swap_remove(index);
                pool.bytes -= buffer.capacity();
                buffer
            }
            None => BytesMut::new(),
        }
    }

    /// See [`give_back`].
    pub fn give_back(&self, bytes: Bytes) {
        if bytes.len() < MIN_POOLED || bytes.len() > MAX_POOLED {
            return;
        }
        let Ok(mut buffer) = bytes.try_into_mut() else { return };
        let capacity = buffer.capacity();
        if !(MIN_POOLED..=MAX_POOLED).contains(&capacity) {
            return;
        }
        buffer.clear();
        let Ok(mut pool) = self.0.lock() else { return };
        if pool.bytes + capacity <= MAX_POOL_BYTES {
            pool.bytes += capacity;
            pool.free.push(buffer);
        }
    }

    #[cfg(test)]
    fn kept_bytes(&self) -> usize {
        self.0.lock().map_or(0, |p| p.bytes)
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        BufferPool::new()
    }
}

static POOL: BufferPool = BufferPool::new();

/// An empty buffer for a read of up to `max_bytes`: a kept one that can hold
/// them when there is one, otherwise a new one that grows as it is filled.
pub fn take(max_bytes: usize) -> BytesMut {
    POOL.take(max_bytes)
}

/// Keeps `bytes`' buffer for a later [`take`] when nothing else holds it and
/// the pool has room; otherwise it is freed as usual.
pub fn give_back(bytes: Bytes) {
    POOL.give_back(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_buffer_is_used_again_and_a_shared_one_is_not() {
        let pool = BufferPool::new();
        let mut first = pool.take(1 << 20);
        first.resize(1 << 20, 7);
        let frozen = first.freeze();
        let address = frozen.as_ptr();
        pool.give_back(frozen);
        let again = pool.take(1 << 20);
        assert_eq!(again.as_ptr(), address, "the same memory");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);

        let mut shared = BytesMut::with_capacity(1 << 20);
        shared.resize(1 << 20, 1);
        let shared = shared.freeze();
        let other = shared.clone();
        pool.give_back(shared);
        assert_eq!(pool.kept_bytes(), 0, "still held elsewhere: not kept");
        drop(other);
    }

    #[test]
    fn small_and_huge_buffers_are_not_kept_and_the_pool_is_bounded() {
        let pool = BufferPool::new();
        pool.give_back(Bytes::from(vec![0u8; 1024]));
        pool.give_back(Bytes::from(vec![0u8; MAX_POOLED + 1]));
        assert_eq!(pool.kept_bytes(), 0);
        for _ in 0..(MAX_POOL_BYTES / (1 << 20)) * 2 {
            pool.give_back(Bytes::from(vec![0u8; 1 << 20]));
        }
        assert!(pool.kept_bytes() > 0 && pool.kept_bytes() <= MAX_POOL_BYTES);
    }
}
