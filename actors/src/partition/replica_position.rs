//! Where a follower's log stands, for the broker's fetcher: its log end
//! and the latest leader epoch its log holds (what it asks the leader about
//! before it fetches, to truncate a divergent tail: KIP-101/279).

use actix::prelude::*;

use super::Partition;
use crate::error::BrokerError;

/// A partition's log end and the latest leader epoch in its epoch cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub log_end_offset: i64,
    /// `None` when its log holds no epoch (empty, or written alone).
    pub latest_epoch: Option<i32>,
}

#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Position, BrokerError>")]
pub struct FollowerPosition;

impl Handler<FollowerPosition> for Partition {
    type Result = Result<Position, BrokerError>;

    fn handle(&mut self, _: FollowerPosition, _: &mut Context<Self>) -> Self::Result {
        let log_end_offset = self.log()?.log_end_offset();
        let latest_epoch = self.replica.epochs.as_ref().and_then(|e| e.latest_epoch());
        Ok(Position { log_end_offset, latest_epoch })
    }
}
