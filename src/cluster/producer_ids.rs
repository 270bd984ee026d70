//! Producer ids in a cluster: unique across every broker, so that two
//! producers never share one on a partition. Each broker reserves a block
//! of ids in `/latest_producer_id_block` (Kafka's ZooKeeper layout) with a
//! write conditional on the version it read, then hands them out; a block
//! is never handed out twice, and ids of a block left unused when a broker
//! stops are skipped.

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use serde::{Deserialize, Serialize};
use zookeeper_client as zk;

use super::node::ClusterNode;

/// The znode holding the latest block reserved.
pub const PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";
/// Ids reserved at a time.
const BLOCK: i64 = 1000;

/// What `/latest_producer_id_block` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub version: u32,
    pub broker: i32,
    pub block_start: i64,
    pub block_end: i64,
}

/// Reserves the next block for broker `me`: `[start, end]`.
async fn reserve(client: &zk::Client, me: i32) -> Result<(i64, i64), zk::Error> {
    let persistent = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    loop {
        let (last_end, version) = match client.get_data(PRODUCER_ID_BLOCK).await {
            Ok((data, stat)) => {
                let block: ProducerIdBlock = serde_json::from_slice(&data)
                    .map_err(|err| zk::Error::UnexpectedError(format!("{PRODUCER_ID_BLOCK} does not parse: {err}")))?;
                (block.block_end, Some(stat.version))
            }
            Err(zk::Error::NoNode) => (-1, None),
            Err(err) => return Err(err),
        };
        let block = ProducerIdBlock { version: 1, broker: me, block_start: last_end + 1, block_end: last_end + BLOCK };
        let data = serde_json::to_vec(&block).unwrap_or_default();
        let written = match version {
            Some(version) => client.set_data(PRODUCER_ID_BLOCK, &data, Some(version)).await.map(|_| ()),
            None => client.create(PRODUCER_ID_BLOCK, &data, &persistent).await.map(|_| ()),
        };
        match written {
            Ok(()) => return Ok((block.block_start, block.block_end)),
            Err(zk::Error::BadVersion | zk::Error::NodeExists) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A producer id unique in the cluster.
#[derive(Message)]
#[rtype(result = "Result<i64, BrokerError>")]
pub struct AllocateProducerId;

impl Handler<AllocateProducerId> for ClusterNode {
    type Result = AtomicResponse<Self, Result<i64, BrokerError>>;

    fn handle(&mut self, _: AllocateProducerId, _: &mut Context<Self>) -> Self::Result {
        if let Some((next, end)) = self.producer_ids {
            if next <= end {
                self.producer_ids = Some((next + 1, end));
                return AtomicResponse::new(Box::pin(fut::ready(Ok(next))));
            }
        }
        let Some(client) = self.client.clone() else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(BrokerError::new(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                "this broker is between ZooKeeper sessions; try again",
            )))));
        };
        let me = self.settings.broker_id;
        let reserved = async move { reserve(&client, me).await };
        AtomicResponse::new(Box::pin(reserved.into_actor(self).map(|reserved, act, _| match reserved {
            Ok((start, end)) => {
                tracing::info!(start, end, "reserved a block of producer ids");
                act.producer_ids = Some((start + 1, end));
                Ok(start)
            }
            Err(err) => Err(BrokerError::new(
                ErrorCode::COORDINATOR_NOT_AVAILABLE,
                format!("cannot reserve producer ids in ZooKeeper: {err}"),
            )),
        })))
    }
}
