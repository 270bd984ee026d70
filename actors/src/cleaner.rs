//! The broker's log cleaner: one thread per process that runs the
//! cleanings of compacted partitions (`partition/cleaner.rs`), one at a time.
//!
//! Why a thread and not an actor: a cleaning reads and rewrites whole
//! segments, seconds of blocking file work, which must never run on an
//! arbiter (it would stall every partition placed there). One thread bounds
//! the disk bandwidth and memory (one offset map) compaction takes, as
//! Kafka's `log.cleaner.threads = 1` default does.
//!
//! Contract: a partition actor whose topic compacts offers a cleaning on its
//! retention tick when its dirty ratio reaches the topic's
//! `min_cleanable_dirty_ratio` and it has none pending ([`Cleaner::submit`]);
//! the thread takes, among the pending ones, the one with the highest dirty
//! ratio, runs it, and sends the outcome back; the partition actor then
//! swaps the rewritten segments in (`partition/log_clean.rs`), a few renames
//! and the reopen of each segment. If the partition is gone by then, the
//! outcome is dropped and its `.cleaned` files are removed at the next open.
//! Nothing acknowledged depends on this thread: if a cleaning fails, it is
//! logged and offered again at a later tick.

use std::sync::{Condvar, Mutex, OnceLock};

use tokio::sync::oneshot;

use crate::partition::cleaner::{self, CleanJob, CleanOutcome};
use crate::partition::log::LogError;

/// The offset map's default bound (`[log] cleaner_buffer_bytes`).
pub const DEFAULT_BUFFER_BYTES: usize = 32 << 20;

struct Pending {
    job: CleanJob,
    reply: oneshot::Sender<Result<CleanOutcome, LogError>>,
}

/// The process's cleaner thread and its queue.
pub struct Cleaner {
    queue: Mutex<Vec<Pending>>,
    ready: Condvar,
    buffer_bytes: Mutex<usize>,
}

impl Cleaner {
    /// The process's cleaner; its thread starts at the first call.
    pub fn global() -> &'static Cleaner {
        static CLEANER: OnceLock<Cleaner> = OnceLock::new();
        static STARTED: OnceLock<()> = OnceLock::new();
        let cleaner = CLEANER.get_or_init(|| Cleaner {
            queue: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            buffer_bytes: Mutex::new(DEFAULT_BUFFER_BYTES),
        });
        STARTED.get_or_init(|| {
            let spawned = std::thread::Builder::new().name("herald-cleaner".into()).spawn(move || cleaner.run());
            if let Err(err) = spawned {
                tracing::error!(%err, "cannot start the log cleaner thread; compacted topics are not cleaned");
            }
        });
        cleaner
    }

    /// Sets the offset map's bound for cleanings from now on.
    pub fn set_buffer_bytes(&self, bytes: usize) {
        *self.buffer_bytes.lock().unwrap_or_else(|e| e.into_inner()) = bytes;
    }

    /// The offset map's bound.
    pub fn buffer_bytes(&self) -> usize {
        *self.buffer_bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`; the receiver gets its outcome (or is dropped if the
    /// thread could not start).
    pub fn submit(&self, job: CleanJob) -> oneshot::Receiver<Result<CleanOutcome, LogError>> {
        let (reply, outcome) = oneshot::channel();
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(Pending { job, reply });
        self.ready.notify_one();
        outcome
    }

    fn run(&self) {
        loop {
            let pending = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while queue.is_empty() {
                    queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
                let dirtiest = (0..queue.len()).max_by_key(|&i| queue[i].job.dirty_permille).unwrap_or(0);
                queue.swap_remove(dirtiest)
            };
            if pending.reply.is_closed() {
                continue;
            }
            let started = std::time::Instant::now();
            let outcome = cleaner::clean(&pending.job);
            match &outcome {
                Ok(done) => tracing::info!(
                    dir = %pending.job.dir.display(),
                    bytes_read = done.bytes_read,
                    records_removed = done.records_removed,
                    segments = done.cleaned.len(),
                    cleaned_to = done.state.cleaned_to,
                    ms = started.elapsed().as_millis() as u64,
                    "cleaned a partition's log"
                ),
                Err(err) => tracing::error!(%err, dir = %pending.job.dir.display(), "log cleaning failed"),
            }
            let _ = pending.reply.send(outcome);
        }
    }
}
