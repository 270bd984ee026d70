//! Ctrl-C and SIGTERM for the long-running commands (`consume`, `produce`):
//! instead of dying where they stand, they finish the step in progress,
//! commit or flush what they have done, leave their group and exit 0.
//!
//! A second signal while stopping ends the process at once (exit status 130),
//! for an operator who does not want to wait for a broker that is gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

/// Set once SIGINT or SIGTERM arrives.
#[derive(Clone)]
pub struct Stop {
    requested: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Stop {
    /// Starts listening for SIGINT and SIGTERM (on the current runtime).
    pub fn listen() -> std::io::Result<Stop> {
        let stop = Stop { requested: Arc::new(AtomicBool::new(false)), notify: Arc::new(Notify::new()) };
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let flag = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if flag.requested.swap(true, Ordering::SeqCst) {
                    std::process::exit(130);
                }
                flag.notify.notify_waiters();
            }
        });
        Ok(stop)
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        if self.requested() {
            return;
        }
        notified.await;
    }
}
