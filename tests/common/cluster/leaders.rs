//! Sending each produce to its partition's leader, as a client that follows
//! leaders will: look the leader up with `metadata`, send to it, and on an
//! answer that says the leader moved (or a connection that closed) look
//! again, with bounded retries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::client::{Client, ClientError, ConnectOptions, Timeouts};

use crate::common::value;

/// Where the live brokers listen; the test updates it as brokers die and
/// restart (on new ports), and [`Leaders`] also learns every address
/// `metadata` lists.
pub type Seeds = Arc<Mutex<Vec<SocketAddr>>>;

/// How long one connection attempt, and one request, may take: short, so a
/// paused broker costs a retry rather than the test's patience.
const TIMEOUTS: Timeouts = Timeouts { connect: Duration::from_secs(1), request: Duration::from_secs(5) };

/// What became of one record sent with [`Leaders::produce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Where the broker said it stored it; `None` if no attempt was
    /// acknowledged before the deadline.
    pub offset: Option<i64>,
    /// Attempts whose outcome is unknown (the request may have been
    /// appended, then the answer was lost or an error): each may have
    /// stored the record once more, as there is no idempotent producer.
    pub unknown: u32,
}

/// A producer that finds partitions' leaders itself.
pub struct Leaders {
    seeds: Seeds,
    /// Broker id to address, as `metadata` last said.
    brokers: BTreeMap<i32, SocketAddr>,
    /// (topic, partition) to its leader's id.
    leaders: BTreeMap<(String, u32), i32>,
    clients: BTreeMap<SocketAddr, Client>,
}

impl Leaders {
    pub fn new(seeds: Seeds) -> Leaders {
        Leaders { seeds, brokers: BTreeMap::new(), leaders: BTreeMap::new(), clients: BTreeMap::new() }
    }

    /// Produces `text` as one record to `partition` with `acks`, retrying
    /// on another leader until `deadline`.
    ///
    /// # Panics
    ///
    /// The broker answers with an error a leader change does not explain.
    pub async fn produce(&mut self, topic: &str, partition: u32, text: &str, acks: i64, deadline: Instant) -> Produced {
        let mut unknown = 0;
        while Instant::now() < deadline {
            let Some(addr) = self.leader(topic, partition).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Some(client) = self.client(addr).await else {
                self.leaders.remove(&(topic.to_string(), partition));
                continue;
            };
            // Not sent at all when the connection is known closed.
            let Ok(answer) = client.start_produce(topic, Some(partition), vec![value(text)], acks) else {
                self.forget(topic, partition, addr);
                continue;
            };
            match answer.await {
                Ok(answer) => return Produced { offset: Some(answer[0].base_offset), unknown },
                // Refused before any append: UNKNOWN_TOPIC_OR_PARTITION (a
                // broker still creating the topic), LEADER_NOT_AVAILABLE,
                // NOT_ENOUGH_REPLICAS.
                Err(err) if matches!(err.code(), Some(3 | 5 | 19)) => {}
                // Perhaps appended: NOT_LEADER_OR_FOLLOWER (also the answer
                // to a waiting append whose partition stopped leading),
                // REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND, or
                // no answer at all.
                Err(err) if matches!(err.code(), Some(6 | 7 | 20) | None) => {
                    unknown += 1;
                    if !matches!(err, ClientError::Broker { .. }) {
                        self.clients.remove(&addr);
                    }
                }
                Err(err) => panic!("produce of {text} to {topic}/{partition} at {addr}: {err}"),
            }
            self.forget(topic, partition, addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Produced { offset: None, unknown }
    }

    /// The leader's address of `topic`/`partition`, asking `metadata` when
    /// it is not known.
    pub async fn leader(&mut self, topic: &str, partition: u32) -> Option<SocketAddr> {
        let key = (topic.to_string(), partition);
        if !self.leaders.contains_key(&key) {
            self.refresh(topic).await;
        }
        let addr = self.brokers.get(self.leaders.get(&key)?).copied();
        if addr.is_none() {
            // A leader `metadata` named but does not list as live: ask again.
            self.leaders.remove(&key);
        }
        addr
    }

    /// Asks the known brokers for `topic`'s leaders, the first that answers.
    async fn refresh(&mut self, topic: &str) {
        let mut addrs: Vec<SocketAddr> = self.seeds.lock().unwrap().clone();
        addrs.extend(self.brokers.values().filter(|a| !addrs.contains(a)).copied().collect::<Vec<_>>());
        for addr in addrs {
            let Some(client) = self.client(addr).await else { continue };
            let metadata = match client.metadata(Some(vec![topic.to_string()])).await {
                Ok(metadata) => metadata,
                Err(_) => {
                    self.clients.remove(&addr);
                    continue;
                }
            };
            let Some(found) = metadata.topics.iter().find(|t| t.topic == topic && t.error_code == 0) else { continue };
            self.brokers = metadata
                .brokers
                .iter()
                .filter_map(|b| Some((b.id, format!("{}:{}", b.host, b.port).parse().ok()?)))
                .collect();
            for p in &found.partitions {
                if p.leader >= 0 {
                    self.leaders.insert((topic.to_string(), p.partition), p.leader);
                }
            }
            return;
        }
    }

    async fn client(&mut self, addr: SocketAddr) -> Option<&Client> {
        if let std::collections::btree_map::Entry::Vacant(entry) = self.clients.entry(addr) {
            let options = ConnectOptions::default().timeouts(TIMEOUTS);
            entry.insert(Client::connect_with_options(addr, "cluster-faults", options).await.ok()?);
        }
        self.clients.get(&addr)
    }

    /// Forgets the leader of `topic`/`partition`, and the connection to
    /// `addr` if it closed.
    fn forget(&mut self, topic: &str, partition: u32, addr: SocketAddr) {
        self.leaders.remove(&(topic.to_string(), partition));
        if self.clients.get(&addr).is_some_and(Client::is_closed) {
            self.clients.remove(&addr);
        }
    }
}
