//! A follower broker's fetcher: one actor per leader broker it follows
//! partitions from, with one connection to that leader. It fetches every
//! partition it follows there in one `replica_fetch` long poll, appends what
//! comes to the local partitions byte for byte (`AppendAsFollower`), and
//! fetches again from the new log ends, which tells the leader how far each
//! follower is (the leader's high watermark and acks=all move on that).
//!
//! Before a partition's first fetch under a new leader epoch, the fetcher
//! truncates any divergent tail (KIP-101/279): it asks the leader where the
//! latest epoch in the local log ended in the leader's log and truncates to
//! that, or to the local high watermark when the leader knows no such
//! epoch.

use std::collections::BTreeMap;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::partition::{self as part, Partition};
use herald_client::Client;

use super::Peers;
use herald_wire::protocol::{EpochEndPartition, EpochEndRequest, ReplicaFetchPartition, ReplicaFetchRequest};

/// How long the leader holds a fetch when nothing is new.
const MAX_WAIT_MS: u64 = 500;
/// Bytes of batches per partition per fetch.
const MAX_BYTES: u32 = 4 << 20;
/// The wait after an error before the next round.
const BACKOFF: Duration = Duration::from_millis(200);

/// One partition this fetcher follows.
#[derive(Clone)]
struct Followed {
    leader_epoch: i32,
    addr: Addr<Partition>,
    /// `None` until the divergent tail is truncated; then the log end.
    fetch_offset: Option<i64>,
}

pub struct ReplicaFetcher {
    my_id: i32,
    leader: i32,
    address: String,
    peers: Peers,
    client: Option<Client>,
    partitions: BTreeMap<(String, u32), Followed>,
    /// Whether a round is under way.
    running: bool,
}

impl ReplicaFetcher {
    pub fn new(my_id: i32, leader: i32, address: String, peers: Peers) -> ReplicaFetcher {
        ReplicaFetcher { my_id, leader, address, peers, client: None, partitions: BTreeMap::new(), running: false }
    }

    /// Starts a round unless one is under way or nothing is followed.
    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.partitions.is_empty() {
            return;
        }
        self.running = true;
        let snapshot = self.partitions.clone();
        let (client, address, my_id, peers) =
            (self.client.clone(), self.address.clone(), self.my_id, self.peers.clone());
        let reached = address.clone();
        let work = async move {
            let client = match client {
                Some(client) => client,
                None => peers
                    .connect(&address, &format!("herald-replica-{my_id}"))
                    .await
                    .map_err(|err| format!("cannot reach the leader at {address}: {err}"))?,
            };
            let progress = one_round(&client, my_id, snapshot).await;
            Ok::<_, String>((client, progress))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.running = false;
            let pause = match result {
                Ok((client, progress)) => {
                    // A connection the leader closed (it stopped, or died and
                    // came back) is opened again next round, as is one to an
                    // address the leader left meanwhile.
                    act.client = Some(client).filter(|c| !c.is_closed() && act.address == reached);
                    let idle = progress.is_empty();
                    for (key, (epoch, offset)) in progress {
                        if let Some(followed) = act.partitions.get_mut(&key) {
                            // A newer epoch arrived meanwhile: it starts over.
                            if followed.leader_epoch == epoch {
                                followed.fetch_offset = offset;
                            }
                        }
                    }
                    idle
                }
                Err(err) => {
                    tracing::warn!(leader = act.leader, %err, "replica fetch failed; retrying");
                    act.client = None;
                    true
                }
            };
            if pause {
                ctx.run_later(BACKOFF, |act, ctx| act.round(ctx));
            } else {
                act.round(ctx);
            }
        }));
    }
}

/// What a round learnt: each partition's epoch when the round began and its
/// fetch offset after it (`None`: truncate again). Empty when nothing moved
/// (every partition failed), so that the next round waits a little.
type Progress = Vec<((String, u32), (i32, Option<i64>))>;

async fn one_round(client: &Client, my_id: i32, partitions: BTreeMap<(String, u32), Followed>) -> Progress {
    let mut progress = Progress::new();
    let mut fetching = Vec::new();
    for (key, followed) in &partitions {
        match followed.fetch_offset {
            Some(offset) => fetching.push((key.clone(), followed.clone(), offset)),
            None => match truncate(client, &key.0, key.1, followed).await {
                Ok(offset) => progress.push((key.clone(), (followed.leader_epoch, Some(offset)))),
                Err(err) => tracing::debug!(topic = %key.0, partition = key.1, %err, "cannot truncate yet"),
            },
        }
    }
    if fetching.is_empty() {
        return progress;
    }
    let request = ReplicaFetchRequest {
        replica_id: my_id,
        max_wait_ms: if progress.is_empty() { MAX_WAIT_MS } else { 0 },
        max_bytes: MAX_BYTES,
        partitions: fetching
            .iter()
            .map(|((topic, partition), f, offset)| ReplicaFetchPartition {
                topic: topic.clone(),
                partition: *partition,
                fetch_offset: *offset,
                leader_epoch: f.leader_epoch,
            })
            .collect(),
    };
    let answer = match client.replica_fetch(&request).await {
        Ok(answer) => answer,
        Err(err) => {
            tracing::debug!(%err, "replica fetch failed");
            return progress;
        }
    };
    for (fetched, (key, followed, offset)) in answer.partitions.into_iter().zip(fetching) {
        if fetched.error_code != 0 {
            let code = ErrorCode::from_code(fetched.error_code);
            tracing::debug!(topic = %key.0, partition = key.1, ?code, message = ?fetched.error_message, "the leader refused a replica fetch");
            if code == Some(ErrorCode::OFFSET_OUT_OF_RANGE) {
                progress.push((key, (followed.leader_epoch, None)));
            }
            continue;
        }
        let appended = followed
            .addr
            .send(part::AppendAsFollower {
                leader_epoch: followed.leader_epoch,
                records: fetched.records,
                epochs: fetched.epochs,
                leader_high_watermark: fetched.high_watermark,
                leader_log_start_offset: fetched.log_start_offset,
            })
            .await
            .map_err(BrokerError::from)
            .and_then(|r| r);
        match appended {
            Ok(end) => progress.push((key, (followed.leader_epoch, Some(end)))),
            Err(err) if err.code == ErrorCode::OFFSET_OUT_OF_RANGE => {
                tracing::warn!(topic = %key.0, partition = key.1, %err, "the leader's batches do not follow the log; truncating again");
                progress.push((key, (followed.leader_epoch, None)));
            }
            Err(err) => {
                tracing::warn!(topic = %key.0, partition = key.1, %err, from = offset, "cannot append the leader's batches");
            }
        }
    }
    progress
}

/// Truncates the local log's divergent tail; the new log end.
async fn truncate(client: &Client, topic: &str, partition: u32, followed: &Followed) -> Result<i64, String> {
    let position =
        followed.addr.send(part::FollowerPosition).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    let Some(latest) = position.latest_epoch else { return Ok(position.log_end_offset) };
    let asked = EpochEndRequest {
        partitions: vec![EpochEndPartition { topic: topic.to_string(), partition, leader_epoch: latest }],
    };
    let answer = client.epoch_end(&asked).await.map_err(|e| e.to_string())?;
    let Some(end) = answer.partitions.first() else { return Err("the leader answered no partition".into()) };
    if end.error_code != 0 {
        return Err(format!("the leader refused: error {}", end.error_code));
    }
    let target = if end.end_offset < 0 {
        // The leader knows no epoch this old: keep only what was committed.
        let described =
            followed.addr.send(part::Describe).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        described.high_watermark
    } else {
        end.end_offset
    };
    if target >= position.log_end_offset {
        return Ok(position.log_end_offset);
    }
    tracing::info!(
        topic,
        partition,
        from = position.log_end_offset,
        to = target,
        "truncating the tail the leader does not have"
    );
    followed.addr.send(part::TruncateTo { offset: target }).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())
}

impl Actor for ReplicaFetcher {
    type Context = Context<Self>;
}

/// Follow `topic`/`partition` at `leader_epoch` (its actor is `addr`), on
/// the leader broker now at `address`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Follow {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: i32,
    pub addr: Addr<Partition>,
    pub address: String,
}

impl Handler<Follow> for ReplicaFetcher {
    type Result = ();

    fn handle(&mut self, msg: Follow, ctx: &mut Context<Self>) {
        if msg.address != self.address {
            // The leader broker restarted and registered another address.
            tracing::info!(leader = self.leader, from = %self.address, to = %msg.address, "the leader moved");
            self.address = msg.address;
            self.client = None;
        }
        let key = (msg.topic, msg.partition);
        let same = self.partitions.get(&key).is_some_and(|f| f.leader_epoch == msg.leader_epoch);
        if !same {
            self.partitions
                .insert(key, Followed { leader_epoch: msg.leader_epoch, addr: msg.addr, fetch_offset: None });
        }
        self.round(ctx);
    }
}

/// Stop following `topic`/`partition` here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unfollow {
    pub topic: String,
    pub partition: u32,
}

impl Handler<Unfollow> for ReplicaFetcher {
    type Result = ();

    fn handle(&mut self, msg: Unfollow, _: &mut Context<Self>) {
        self.partitions.remove(&(msg.topic, msg.partition));
    }
}
