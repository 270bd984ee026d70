//! The partition's admin side: [`SetConfig`] (a topic's settings changed by
//! `alter_topic_config`) and [`DeleteRecords`] (`delete_records`, Kafka's
//! DeleteRecords). Split from the partition's reads and writes; the same
//! actor.

use std::path::PathBuf;

use actix::prelude::*;

use super::Partition;
use crate::error::{BrokerError, ErrorCode};
use crate::topic_config::TopicConfig;

/// Follow changed topic settings from now on: the largest batch and the
/// timestamp type at the next append, the roll settings at the next append
/// (a smaller `segment_max_bytes` rolls the active segment then), and the
/// retention settings at once (a retention pass runs now).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetConfig(pub TopicConfig);

impl Handler<SetConfig> for Partition {
    type Result = ();

    fn handle(&mut self, msg: SetConfig, _: &mut Context<Self>) {
        self.config = msg.0;
        if let Some(log) = self.log.as_mut() {
            log.set_config(self.config.log_config());
        }
        self.enforce_retention();
    }
}

/// `offset` of [`DeleteRecords`] meaning the high watermark.
pub const TO_HIGH_WATERMARK: i64 = -1;

/// Delete the records before `offset` (-1: the high watermark): the log start
/// offset moves there, durably, before the answer, which is the new log start
/// offset. An offset at or below the current start changes nothing.
///
/// The checkpoint is written on a blocking thread while the partition handles
/// nothing else (`AtomicResponse`): two deletes then never store their
/// checkpoints out of order, and no fetch runs between the checkpoint and the
/// start moving in memory. Appends wait out that one fsync.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct DeleteRecords {
    pub offset: i64,
}

impl Handler<DeleteRecords> for Partition {
    type Result = AtomicResponse<Self, Result<i64, BrokerError>>;

    fn handle(&mut self, msg: DeleteRecords, _: &mut Context<Self>) -> Self::Result {
        let target = match self.check_delete_records(msg.offset) {
            Ok(Ok(target)) => target,
            Ok(Err(unchanged)) => return AtomicResponse::new(Box::pin(fut::ready(Ok(unchanged)))),
            Err(err) => return AtomicResponse::new(Box::pin(fut::ready(Err(err)))),
        };
        let checkpoint = match self.log() {
            Ok(log) => log.start_checkpoint(),
            Err(err) => return AtomicResponse::new(Box::pin(fut::ready(Err(err)))),
        };
        let stored = actix_rt::task::spawn_blocking(move || checkpoint.store(target));
        AtomicResponse::new(Box::pin(stored.into_actor(self).map(move |stored, act, _| {
            let stored = stored.map_err(|err| BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string()))?;
            if let Err(err) = stored {
                tracing::error!(%err, topic = %act.topic, partition = act.partition, "delete records failed; nothing changed");
                return Err(err.into());
            }
            let log = act.log_mut()?;
            let removed = log.moved_start(target);
            let start = log.log_start_offset();
            match removed {
                Ok(removed) => {
                    tracing::info!(topic = %act.topic, partition = act.partition, log_start_offset = start, segments = removed.len() / 3, "deleted records");
                    remove_in_background(removed);
                }
                Err(err) => {
                    tracing::warn!(%err, topic = %act.topic, partition = act.partition, log_start_offset = start, "deleted records; a segment below the new start is left for the retention pass");
                }
            }
            Ok(start)
        })))
    }
}

impl Partition {
    /// The start a delete-records request moves the log to (`Ok(Ok)`), the
    /// current start when it changes nothing (`Ok(Err)`), or its refusal.
    fn check_delete_records(&mut self, offset: i64) -> Result<Result<i64, i64>, BrokerError> {
        self.check_fsync_health()?;
        self.check_serves_clients()?;
        let high_watermark = self.high_watermark;
        let start = self.log()?.log_start_offset();
        let target = if offset == TO_HIGH_WATERMARK { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&target) {
            return Err(BrokerError::new(
                ErrorCode::OFFSET_OUT_OF_RANGE,
                format!(
                    "cannot delete records before offset {offset}: it must be between 0 and the high watermark \
                     {high_watermark}, or -1 for the high watermark"
                ),
            ));
        }
        Ok(if target <= start { Err(start) } else { Ok(target) })
    }
}

/// Deletes files renamed to `.deleted` off the event loop (deleting can block).
fn remove_in_background(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for path in paths {
            if let Err(err) = std::fs::remove_file(&path) {
                tracing::warn!(%err, path = %path.display(), "cannot delete a segment file below the log start offset");
            }
        }
    });
}
