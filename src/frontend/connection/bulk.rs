//! Work on large requests: decoding a large frame and encoding a large batch.
//!
//! It runs on a pool of its own threads, one per core but one (at least
//! one), started at the first job: never on an arbiter, where a frame of
//! megabytes would hold up every other connection of that arbiter for the
//! milliseconds it takes. On Linux the pool's threads run at a lower CPU
//! priority (nice 10): when a burst of large requests and the small requests
//! of other clients want the same cores, the arbiters, where small requests
//! are served, come first. Jobs past the pool's size wait their turn; the
//! requests they belong to wait with them, in their connection's order.

use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// The pool's queue of jobs.
fn queue() -> &'static Mutex<mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (jobs, queued) = mpsc::channel::<Job>();
        let queued = std::sync::Arc::new(Mutex::new(queued));
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        for n in 0..cores.saturating_sub(1).max(1) {
            let queued = queued.clone();
            let started = std::thread::Builder::new().name(format!("herald-bulk-{n}")).spawn(move || {
                lower_priority();
                loop {
                    // Never poisoned: no job runs while it is held.
                    let job = match queued.lock() {
                        Ok(queued) => queued.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    let Ok(job) = job else { return };
                    // A job that panics (a bug) loses its result, which its
                    // caller sees as `NotRun`, not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            });
            if let Err(err) = started {
                tracing::error!(%err, "cannot start a bulk-work thread");
            }
        }
        Mutex::new(jobs)
    })
}

/// Nice 10 for the calling thread, on Linux; elsewhere nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority only read and set this thread's own
    // scheduling priority.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// The pool could not run a job: its threads are gone (none could start).
#[derive(Debug, thiserror::Error)]
#[error("no bulk-work thread took the job")]
pub struct NotRun;

/// Runs `work` on the pool and waits for its result.
///
/// # Errors
///
/// [`NotRun`] if no pool thread took it.
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, NotRun> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    let sent = match queue().lock() {
        Ok(jobs) => jobs.send(job),
        Err(poisoned) => poisoned.into_inner().send(job),
    };
    sent.map_err(|_| NotRun)?;
    result.await.map_err(|_| NotRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_off_the_caller_thread_and_a_panic_costs_only_its_result() {
        let caller = std::thread::current().id();
        let (ran_on, name) =
            run(|| (std::thread::current().id(), std::thread::current().name().map(str::to_owned))).await.unwrap();
        assert_ne!(ran_on, caller);
        assert!(name.is_some_and(|n| n.starts_with("herald-bulk-")));

        let panicked = run(|| -> u32 { panic!("a bug in a job") }).await;
        assert!(panicked.is_err(), "a panicking job has no result");
        // The pool still runs jobs afterwards.
        assert_eq!(run(|| 7).await.unwrap(), 7);
    }
}
