//! The partition actor's side of log compaction: offering cleanings to the
//! broker's cleaner thread (`crate::cleaner`), installing their outcome, and
//! refusing keyless records in a compacted topic.

use actix::prelude::*;

use super::Partition;
use crate::batch;
use crate::cleaner::Cleaner;
use crate::error::{BrokerError, ErrorCode};
use crate::now_ms;

impl Partition {
    /// On the retention tick: when the topic compacts, no cleaning of this
    /// partition is pending, and its dirty ratio reached the topic's
    /// `min_cleanable_dirty_ratio`, hands a cleaning to the cleaner thread
    /// and installs its outcome when it comes back.
    pub(super) fn offer_cleaning(&mut self, ctx: &mut Context<Self>) {
        if !self.config.cleanup_policy.compacts() || self.cleaning {
            return;
        }
        let Some(log) = self.log.as_ref() else { return };
        let now = now_ms();
        let view = log.clean_view(self.high_watermark, now, self.config.min_compaction_lag_ms);
        if view.dirty_bytes == 0 || view.dirty_permille() < u64::from(self.config.min_cleanable_dirty_permille) {
            return;
        }
        let cleaner = Cleaner::global();
        let job = view.job(log, cleaner.buffer_bytes(), now, self.config.delete_retention_ms);
        let outcome = cleaner.submit(job);
        self.cleaning = true;
        ctx.spawn(outcome.into_actor(self).map(|outcome, act, ctx| {
            act.cleaning = false;
            let Ok(Ok(outcome)) = outcome else { return };
            let Some(log) = act.log.as_mut() else {
                for cleaned in &outcome.cleaned {
                    drop(std::fs::remove_file(&cleaned.cleaned_path));
                }
                return;
            };
            let (bytes_read, removed) = (outcome.bytes_read, outcome.records_removed);
            match log.install_cleaned(outcome) {
                Ok(installed) => {
                    act.stats.cleaned(bytes_read, removed, now_ms());
                    let emptied = installed.removed.len() / 3;
                    if !installed.removed.is_empty() {
                        // Deleting files can block; keep it off the event loop.
                        let paths = installed.removed.clone();
                        std::thread::spawn(move || {
                            for path in paths {
                                if let Err(err) = std::fs::remove_file(&path) {
                                    tracing::warn!(%err, path = %path.display(), "cannot delete an emptied segment's file");
                                }
                            }
                        });
                    }
                    tracing::info!(
                        topic = %act.topic,
                        partition = act.partition,
                        segments = installed.segments,
                        bytes_before = installed.bytes_before,
                        bytes_after = installed.bytes_after,
                        emptied,
                        "swapped cleaned segments in"
                    );
                }
                Err(err) => {
                    // A rename may have happened: the log in memory may no
                    // longer match the disk. Open it again from the disk.
                    tracing::error!(%err, topic = %act.topic, partition = act.partition, "installing a cleaning failed; reopening the log");
                    act.log = None;
                    act.open(ctx);
                }
            }
        }));
    }

    /// Refuses a batch holding a record without a key when the topic
    /// compacts (as Kafka does): the cleaner could never replace it.
    pub(super) fn check_keys(&self, batch: &[u8]) -> Result<(), BrokerError> {
        if !self.config.cleanup_policy.compacts() {
            return Ok(());
        }
        let records =
            batch::decode_all(batch).map_err(|err| BrokerError::new(ErrorCode::CORRUPT_MESSAGE, err.to_string()))?;
        match records.iter().position(|r| r.key.is_none()) {
            None => Ok(()),
            Some(n) => Err(BrokerError::new(
                ErrorCode::INVALID_RECORD,
                format!(
                    "record {n} has no key; topic {} is compacted (cleanup_policy {}), so every record needs one",
                    self.topic,
                    self.config.cleanup_policy.name()
                ),
            )),
        }
    }
}
