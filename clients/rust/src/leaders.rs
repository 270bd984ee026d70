//! [`Cluster`]: a client of every broker of a cluster, which sends each
//! partition's requests to its leader (docs/protocol.md, "Following
//! leaders").
//!
//! It starts from one connection (the bootstrap broker's) and learns the
//! rest from `metadata`: the live brokers, and each partition's leader. It
//! keeps one connection per broker it has talked to, opened when first
//! needed, with the bootstrap connection's options. A broker alone (its
//! `describe_cluster` says `single`, or it does not serve `metadata`) leads
//! everything: every request then goes on the bootstrap connection, as
//! before clusters.
//!
//! Leaders are cached until a caller says one is stale ([`Cluster::forget`],
//! after an answer that says so); the next lookup asks `metadata` again,
//! one request at a time however many callers wait for it.
//!
//! Requests about a consumer group go to the group's coordinator instead,
//! which [`Cluster::coordinator`] finds; [`Cluster::describe_group`] and the
//! other group admin calls of a `Cluster` send them there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use herald_wire::error::ErrorCode;
use herald_wire::protocol::op;

use crate::{Client, ClientError, ConnectOptions};

/// The first wait before looking a leader up again, doubled up to
/// [`RETRY_BACKOFF_MAX`].
pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between two lookups.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The answers that say a partition's leader is elsewhere or changing.
pub(crate) const LEADER_CODES: [ErrorCode; 4] = [
    ErrorCode::NOT_LEADER_OR_FOLLOWER,
    ErrorCode::FENCED_LEADER_EPOCH,
    ErrorCode::UNKNOWN_LEADER_EPOCH,
    ErrorCode::LEADER_NOT_AVAILABLE,
];

/// Whether the broker answered `err` with one of `codes`.
pub(crate) fn answered_one_of(err: &ClientError, codes: &[ErrorCode]) -> bool {
    err.code().is_some_and(|code| codes.iter().any(|c| c.code() == code))
}

/// Whether `err` says the partition's leader is not where the request went,
/// or is changing, or the request may succeed at it after a wait
/// (docs/protocol.md, "Following leaders", step 3): look it up again and
/// resend.
pub fn leader_moved(err: &ClientError) -> bool {
    matches!(err, ClientError::Io(_) | ClientError::Closed | ClientError::TimedOut { .. })
        || answered_one_of(err, &LEADER_CODES)
        || answered_one_of(
            err,
            &[
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
                ErrorCode::BROKER_SHUTTING_DOWN,
                ErrorCode::NOT_ENOUGH_REPLICAS,
                ErrorCode::REQUEST_TIMED_OUT,
                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            ],
        )
}

/// What is known of the cluster.
pub(crate) struct State {
    /// The connection any request may use; replaced when it closes.
    pub(crate) home: Client,
    /// `Some(true)` for a broker alone; `None` until asked.
    pub(crate) single: Option<bool>,
    /// The id of the broker `home` is connected to, in a cluster.
    pub(crate) home_id: Option<i32>,
    /// Live brokers by id: `host:port`.
    pub(crate) brokers: HashMap<i32, String>,
    /// Open connections by broker id.
    pub(crate) connections: HashMap<i32, Client>,
    /// Each partition's leader, by (topic, partition).
    leaders: HashMap<(String, u32), i32>,
    /// Each topic's partition count.
    partitions: HashMap<String, u32>,
    /// How many times each topic's metadata was asked.
    refreshed: HashMap<String, u64>,
    /// Each group's coordinator, by group id (see [`Cluster::coordinator`]).
    pub(crate) coordinators: HashMap<String, Client>,
}

struct Inner {
    /// Where to start again when no known broker answers.
    bootstrap: Vec<String>,
    client_id: String,
    options: ConnectOptions,
    state: Mutex<State>,
    /// Held while `metadata` is asked.
    refreshing: tokio::sync::Mutex<()>,
}

/// A client of a whole cluster (see the module documentation). Cheap to
/// clone; clones share connections and metadata.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Connects to the first of `bootstrap` (`host:port` each) that accepts,
    /// as `options` say.
    ///
    /// # Errors
    ///
    /// The last address's error when none accepts; [`ClientError::Protocol`]
    /// for an empty list.
    pub async fn connect(
        bootstrap: &[impl AsRef<str>],
        client_id: &str,
        options: ConnectOptions,
    ) -> Result<Cluster, ClientError> {
        let bootstrap: Vec<String> = bootstrap.iter().map(|a| a.as_ref().to_string()).collect();
        let home = connect_any(&bootstrap, client_id, &options).await?;
        Ok(Cluster::build(home, bootstrap, client_id, options))
    }

    /// A cluster client starting from `client`'s connection, the only
    /// bootstrap address its broker's.
    pub fn of(client: Client) -> Cluster {
        let bootstrap = vec![client.peer.to_string()];
        let (client_id, options) = (client.client_id.to_string(), (*client.options).clone());
        Cluster::build(client, bootstrap, &client_id, options)
    }

    fn build(home: Client, bootstrap: Vec<String>, client_id: &str, options: ConnectOptions) -> Cluster {
        let state = State {
            home,
            single: None,
            home_id: None,
            brokers: HashMap::new(),
            connections: HashMap::new(),
            leaders: HashMap::new(),
            partitions: HashMap::new(),
            refreshed: HashMap::new(),
            coordinators: HashMap::new(),
        };
        let inner = Inner {
            bootstrap,
            client_id: client_id.to_string(),
            options,
            state: Mutex::new(state),
            refreshing: tokio::sync::Mutex::new(()),
        };
        Cluster { inner: Arc::new(inner) }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bootstrap connection as it is now, open or not: for what it
    /// says of the broker (its handshake).
    pub fn home(&self) -> Client {
        self.state().home.clone()
    }

    /// An open connection for requests any broker serves: the bootstrap
    /// one, or another broker's, or a new one.
    ///
    /// # Errors
    ///
    /// No known broker and no bootstrap address accepts a connection.
    pub async fn any(&self) -> Result<Client, ClientError> {
        let addresses = {
            let state = self.state();
            if !state.home.is_closed() {
                return Ok(state.home.clone());
            }
            if let Some(open) = state.connections.values().find(|c| !c.is_closed()) {
                return Ok(open.clone());
            }
            let mut addresses: Vec<String> = state.brokers.values().cloned().collect();
            addresses.extend(self.inner.bootstrap.iter().cloned());
            addresses
        };
        let home = connect_any(&addresses, &self.inner.client_id, &self.inner.options).await?;
        let mut state = self.state();
        state.home = home.clone();
        // Which broker it is is asked again.
        state.home_id = None;
        Ok(home)
    }

    /// The open connection to `topic`/`partition`'s leader, if both are
    /// known now (no request needed).
    pub fn cached_leader(&self, topic: &str, partition: u32) -> Option<Client> {
        let state = self.state();
        if state.single == Some(true) {
            return Some(state.home.clone()).filter(|c| !c.is_closed());
        }
        let leader = state.leaders.get(&(topic.to_string(), partition))?;
        state.connection(*leader).filter(|c| !c.is_closed())
    }

    /// A connection to `topic`/`partition`'s leader, asking `metadata` when
    /// the leader is not known and connecting when needed.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION` for a topic no broker has or a
    /// partition it lacks; `LEADER_NOT_AVAILABLE` while the partition has
    /// no leader; connection errors.
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<Client, ClientError> {
        if let Some(client) = self.cached_leader(topic, partition) {
            return Ok(client);
        }
        let known = self.state().leaders.contains_key(&(topic.to_string(), partition));
        if !known {
            self.refresh(topic).await?;
        }
        if self.state().single == Some(true) {
            return self.any().await;
        }
        let (leader, address) = {
            let state = self.state();
            let count = state.partitions.get(topic).copied().unwrap_or(0);
            if partition >= count {
                return Err(ClientError::broker(
                    ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                    Some(format!("topic `{topic}` has {count} partitions, there is no partition {partition}")),
                ));
            }
            let Some(leader) = state.leaders.get(&(topic.to_string(), partition)).copied() else {
                return Err(ClientError::broker(
                    ErrorCode::LEADER_NOT_AVAILABLE.code(),
                    Some(format!("partition {partition} of `{topic}` has no leader now")),
                ));
            };
            if let Some(open) = state.connection(leader).filter(|c| !c.is_closed()) {
                return Ok(open);
            }
            (leader, state.brokers.get(&leader).cloned())
        };
        let Some(address) = address else {
            // A leader the answer did not list as live: ask again next time.
            self.forget(topic, partition);
            return Err(ClientError::broker(
                ErrorCode::LEADER_NOT_AVAILABLE.code(),
                Some(format!("the leader of `{topic}`/{partition}, broker {leader}, is not among the live brokers")),
            ));
        };
        self.connect_broker(leader, &address).await.inspect_err(|_| self.forget(topic, partition))
    }

    /// The open connection to broker `id`, at `address`: the one kept, or
    /// a new one (then kept).
    ///
    /// # Errors
    ///
    /// The broker does not accept a connection.
    pub(crate) async fn connect_broker(&self, id: i32, address: &str) -> Result<Client, ClientError> {
        if let Some(open) = self.state().connection(id).filter(|c| !c.is_closed()) {
            return Ok(open);
        }
        let opened = Client::connect_with_options(address, &self.inner.client_id, self.leader_options(address)).await?;
        let mut state = self.state();
        let client = state.connections.entry(id).or_insert_with(|| opened.clone());
        if client.is_closed() {
            *client = opened;
        }
        Ok(client.clone())
    }

    /// How long a request may take, as the connections' options say: what
    /// the cluster's own calls that look a coordinator up give themselves.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.inner.options.timeouts.request
    }

    /// The options to connect to the broker at `address`: the bootstrap
    /// connection's, with TLS verifying that broker's host name unless one
    /// name was set for all.
    fn leader_options(&self, address: &str) -> ConnectOptions {
        let mut options = self.inner.options.clone();
        if let Some(tls) = options.tls.take() {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            options.tls = Some(tls.default_server_name(host));
        }
        options
    }

    /// The partition count of `topic`, asking `metadata` the first time.
    ///
    /// # Errors
    ///
    /// As [`Cluster::refresh`].
    pub async fn partitions(&self, topic: &str) -> Result<u32, ClientError> {
        if let Some(count) = self.state().partitions.get(topic) {
            return Ok(*count);
        }
        self.refresh(topic).await?;
        self.state().partitions.get(topic).copied().ok_or_else(|| {
            ClientError::broker(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(), Some(format!("no topic `{topic}`")))
        })
    }

    /// Marks `topic`/`partition`'s leader stale: the next lookup asks again.
    pub fn forget(&self, topic: &str, partition: u32) {
        self.state().leaders.remove(&(topic.to_string(), partition));
    }

    /// Asks `metadata` for `topic` (unless another caller is asking right
    /// now, whose answer then serves), and records the brokers, the topic's
    /// partition count and its leaders.
    ///
    /// # Errors
    ///
    /// `UNKNOWN_TOPIC_OR_PARTITION` (or `TOPIC_AUTHORIZATION_FAILED`) from
    /// the answer; connection errors when no broker answers.
    pub async fn refresh(&self, topic: &str) -> Result<(), ClientError> {
        let asked_at = self.state().refreshed.get(topic).copied();
        let _one = self.inner.refreshing.lock().await;
        if asked_at.is_some() && self.state().refreshed.get(topic).copied() != asked_at {
            return Ok(());
        }
        let client = self.any().await?;
        if !client.features().offers(op::METADATA) {
            // A broker from before clusters: alone by definition.
            let count = client.describe_topic(topic).await?.partitions.len() as u32;
            let mut state = self.state();
            state.single = Some(true);
            state.partitions.insert(topic.to_string(), count);
            return Ok(());
        }
        let (single, home_id) = {
            let state = self.state();
            (state.single, state.home_id)
        };
        if single.is_none() || home_id.is_none() {
            let described = client.describe_cluster().await?;
            let mut state = self.state();
            state.single = Some(described.mode == "single");
            if same_connection(&state.home, &client) {
                state.home_id = Some(described.broker_id);
            }
        }
        let answer = client.metadata(Some(vec![topic.to_string()])).await?;
        let Some(found) = answer.topics.iter().find(|t| t.topic == topic) else {
            return Err(ClientError::Protocol(format!("`metadata` did not answer for topic `{topic}`")));
        };
        if found.error_code != 0 {
            return Err(ClientError::broker(found.error_code, Some(format!("topic `{topic}`"))));
        }
        let mut state = self.state();
        state.brokers = answer.brokers.iter().map(|b| (b.id, format!("{}:{}", b.host, b.port))).collect();
        let live: Vec<i32> = state.brokers.keys().copied().collect();
        state.connections.retain(|id, _| live.contains(id));
        state.partitions.insert(topic.to_string(), found.partitions.len() as u32);
        *state.refreshed.entry(topic.to_string()).or_default() += 1;
        for p in &found.partitions {
            let key = (topic.to_string(), p.partition);
            if p.leader >= 0 {
                state.leaders.insert(key, p.leader);
            } else {
                state.leaders.remove(&key);
            }
        }
        Ok(())
    }
}

impl State {
    /// The connection to broker `id`: the bootstrap one if it is that
    /// broker's and open, else one opened to it since.
    fn connection(&self, id: i32) -> Option<Client> {
        if self.home_id == Some(id) && !self.home.is_closed() {
            return Some(self.home.clone());
        }
        self.connections.get(&id).cloned()
    }
}

/// Whether `a` and `b` share one connection.
pub(crate) fn same_connection(a: &Client, b: &Client) -> bool {
    Arc::ptr_eq(&a.next_id, &b.next_id)
}

/// A connection to the first of `addresses` that accepts.
async fn connect_any(addresses: &[String], client_id: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
    let mut last = ClientError::Protocol("no broker address given".into());
    for address in addresses {
        match Client::connect_with_options(address.as_str(), client_id, options.clone()).await {
            Ok(client) => return Ok(client),
            Err(err @ ClientError::Broker { .. }) => return Err(err),
            Err(err) => {
                tracing::debug!(%address, %err, "broker not reachable; trying the next");
                last = err;
            }
        }
    }
    Err(last)
}
