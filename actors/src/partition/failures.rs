//! How a partition meets storage failures (see the contract in `mod.rs`):
//! fail-stop after a failed fsync, whatever the flush policy; after a failed
//! write, refuse it and serve on, reopening the log in place when the failed
//! write could not be undone.

use actix::prelude::*;

use super::log::Log;
use super::Partition;
use crate::error::{BrokerError, ErrorCode};

impl Partition {
    /// The `interval` policy's fsync (and `never`'s, which only lets files
    /// close): of what was written since the last one, without holding up
    /// appends. A failure stops writes like `always`'s.
    pub(super) fn sync_in_background(&mut self, ctx: &mut Context<Self>) {
        let Some(log) = self.log.as_mut() else { return };
        let files = log.take_unsynced();
        self.sync_files(files, ctx);
    }

    /// Fsyncs `files` without waiting. The writer answers in order, so any
    /// fsync asked for later (an append's, under `always`) is answered only
    /// after these are synced.
    pub(super) fn sync_files(&mut self, files: Vec<crate::fs::FileRef>, ctx: &mut Context<Self>) {
        if files.is_empty() {
            return;
        }
        let synced = self.writer.sync(files);
        ctx.spawn(synced.into_actor(self).map(|result, act, _| {
            if let Err(err) = result {
                act.refuse_writes(&err);
            }
        }));
    }

    /// After a failed fsync: nothing written since the last good one may be
    /// durable, so no further write is acknowledged (fail-stop).
    pub(super) fn refuse_writes(&mut self, err: &BrokerError) {
        if !self.failed {
            self.failed = true;
            tracing::error!(%err, topic = %self.topic, partition = self.partition, "fsync failed; refusing further writes");
        }
    }

    /// Refuses a write once an fsync of this partition or of any file of the
    /// data directory has failed: the kernel may have dropped dirty pages of
    /// any file, and with `interval` or `never` the partition's own next fsync
    /// could be far off or never come.
    pub(super) fn check_fsync_health(&mut self) -> Result<(), BrokerError> {
        if let Some(reason) = self.writer.failure() {
            let err = BrokerError::new(ErrorCode::KAFKA_STORAGE_ERROR, format!("fsync failed: {reason}"));
            self.refuse_writes(&err);
        }
        if self.failed {
            let reason = self.writer.failure().unwrap_or("of this partition's files");
            return Err(BrokerError::new(
                ErrorCode::KAFKA_STORAGE_ERROR,
                format!("an fsync failed ({reason}); writes are refused until the broker is restarted"),
            ));
        }
        Ok(())
    }

    /// Reopens the log in place after a failed write it could not undo
    /// ([`Log::reopen`]: the refused bytes are cut first, then recovery checks
    /// the tail as after a clean stop, and indexes removed after a failed
    /// index write are rebuilt). If that fails too (the cut fails again, or
    /// rebuilding an index needs disk space) the old log keeps serving reads,
    /// without the refused batch, and the next append tries again.
    pub(super) fn reopen(&mut self, ctx: &mut Context<Self>) -> Result<(), BrokerError> {
        let reopened = match self.log.as_mut() {
            Some(log) => {
                log.set_config(self.config.log_config());
                log.reopen().map(|files| (log.log_end_offset(), files))
            }
            None => Log::open(&self.dir, self.config.log_config(), true)
                .map(|log| (log.log_end_offset(), self.log.insert(log).take_unsynced())),
        };
        match reopened {
            Ok((end, files)) => {
                self.sync_files(files, ctx);
                if end < self.high_watermark {
                    tracing::error!(topic = %self.topic, partition = self.partition, end, high_watermark = self.high_watermark, "the reopened log ends before the high watermark");
                    self.high_watermark = end;
                }
                self.needs_reopen = false;
                tracing::info!(topic = %self.topic, partition = self.partition, log_end_offset = end, "reopened the log after a failed write");
                Ok(())
            }
            Err(err) => {
                self.needs_reopen = true;
                tracing::warn!(%err, topic = %self.topic, partition = self.partition, "cannot reopen the log after a failed write; reads go on, writes are refused");
                Err(BrokerError::new(
                    ErrorCode::KAFKA_STORAGE_ERROR,
                    format!("an earlier write failed and the log cannot be reopened yet: {err}"),
                ))
            }
        }
    }
}
