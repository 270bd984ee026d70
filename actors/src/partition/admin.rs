//! The partition's admin side: [`SetConfig`] (a topic's settings changed by
//! `alter_topic_config`), [`DeleteRecords`] (`delete_records`, Kafka's
//! DeleteRecords) and a follower's log start following its leader's
//! ([`FollowLeaderStart`]). Split from the partition's reads and writes; the
//! same actor.

use std::path::PathBuf;

use actix::prelude::*;

use super::replica::Role;
use super::Partition;
use crate::error::{BrokerError, ErrorCode};
use crate::topic_config::TopicConfig;

/// Follow changed topic settings from now on: the largest batch and the
/// timestamp type at the next append, the roll settings at the next append
/// (a smaller `segment_max_bytes` rolls the active segment then), the
/// retention settings at once (a retention pass runs now), and a leader's
/// `min_insync_replicas` from the next produce.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetConfig(pub TopicConfig);

impl Handler<SetConfig> for Partition {
    type Result = ();

    fn handle(&mut self, msg: SetConfig, _: &mut Context<Self>) {
        self.config = msg.0;
        // A leader's min_insync_replicas follows the topic's from the next produce.
        if let Role::Leader(leading) = &mut self.replica.role {
            leading.min_insync_replicas = self.config.min_insync_replicas;
        }
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
        AtomicResponse::new(self.move_start(target, "deleted records"))
    }
}

/// A follower's log start follows its leader's (as Kafka's followers do):
/// each replica fetch answer carries the leader's log start, and a follower
/// whose own is lower moves it up to the leader's, at most to its own high
/// watermark (it never trims what it may not have yet). Sent by the
/// partition to itself, so that the move runs as [`DeleteRecords`] does:
/// the checkpoint stored with nothing else handled meanwhile.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(super) struct FollowLeaderStart {
    pub offset: i64,
}

impl Handler<FollowLeaderStart> for Partition {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: FollowLeaderStart, _: &mut Context<Self>) -> Self::Result {
        let done = || AtomicResponse::new(Box::pin(fut::ready(())));
        let Some(target) = self.leader_start_to_follow(msg.offset) else { return done() };
        if self.check_fsync_health().is_err() {
            return done();
        }
        AtomicResponse::new(Box::pin(self.move_start(target, "followed the leader's log start").map(|_, _, _| ())))
    }
}

impl Partition {
    /// Where a follower's log start moves to follow `leader_start`; `None`
    /// when it stays (not a follower, or already there).
    fn leader_start_to_follow(&self, leader_start: i64) -> Option<i64> {
        if !matches!(self.replica.role, Role::Follower { .. }) {
            return None;
        }
        let start = self.log.as_ref()?.log_start_offset();
        let target = leader_start.min(self.high_watermark);
        (target > start).then_some(target)
    }

    /// Has a follower's log start follow `leader_start` (hook of
    /// `AppendAsFollower`, after the append).
    pub(super) fn follow_leader_start(&self, leader_start: i64, ctx: &mut Context<Self>) {
        if let Some(offset) = self.leader_start_to_follow(leader_start) {
            ctx.address().do_send(FollowLeaderStart { offset });
        }
    }

    /// Stores `target` as the log start, then moves the log's start there
    /// and removes the whole segments below it; answers the new start.
    fn move_start(&mut self, target: i64, what: &'static str) -> ResponseActFuture<Self, Result<i64, BrokerError>> {
        let checkpoint = match self.log() {
            Ok(log) => log.start_checkpoint(),
            Err(err) => return Box::pin(fut::ready(Err(err))),
        };
        let stored = actix_rt::task::spawn_blocking(move || checkpoint.store(target));
        Box::pin(stored.into_actor(self).map(move |stored, act, _| {
            let stored = stored.map_err(|err| BrokerError::new(ErrorCode::UNKNOWN_SERVER_ERROR, err.to_string()))?;
            if let Err(err) = stored {
                tracing::error!(%err, topic = %act.topic, partition = act.partition, "{what}: failed; nothing changed");
                return Err(err.into());
            }
            let log = act.log_mut()?;
            let removed = log.moved_start(target);
            let start = log.log_start_offset();
            match removed {
                Ok(removed) => {
                    tracing::info!(topic = %act.topic, partition = act.partition, log_start_offset = start, segments = removed.len() / 3, "{what}");
                    remove_in_background(removed);
                }
                Err(err) => {
                    tracing::warn!(%err, topic = %act.topic, partition = act.partition, log_start_offset = start, "{what}; a segment below the new start is left for the retention pass");
                }
            }
            Ok(start)
        }))
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
