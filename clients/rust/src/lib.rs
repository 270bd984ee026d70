//! The async Rust client: one multiplexed connection ([`Client`]) with admin
//! calls, a batching [`Producer`], a [`Consumer`] of assigned partitions and a
//! [`GroupConsumer`] that shares a topic's partitions with its group.
//!
//! A `Client` owns one TCP connection. Requests are pipelined: each gets a
//! correlation id (never 0, which the broker reserves), the caller of a
//! request that is the only one waiting writes its frame to the socket
//! itself when no other write is in progress (a writer task takes pipelined
//! frames and what the socket cannot take at once, keeping the frames in
//! order), and a reader task hands each response to the caller waiting on
//! its id. Clones share the connection.
//!
//! The handshake offers every protocol version this client speaks and keeps
//! the broker's answer ([`Client::features`]): a request for an operation the
//! broker does not list, or larger than its `max_frame_bytes`, is refused
//! here, with the code the broker would answer, without being sent.
//!
//! Produce and read back, against a broker on the default port:
//!
//! ```no_run
//! use herald_client::{record, Client, Consumer, ConsumerConfig, Producer, ProducerConfig, StartOffset};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("127.0.0.1:9092", "my-app").await?;
//! client.create_topic("orders", 3, Default::default()).await?;
//! let producer = Producer::new(client.clone(), ProducerConfig::default());
//! let ack = producer.send("orders", None, record(Some(b"order-1"), b"created")).await?;
//! producer.flush().await?;
//! let landed = ack.await??;
//! let mut consumer = Consumer::new(client, ConsumerConfig::default());
//! consumer.assign("orders", landed.partition, StartOffset::Offset(landed.offset)).await?;
//! for consumed in consumer.poll().await? {
//!     println!("{} {:?}", consumed.record.offset, consumed.record.value);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A member of a consumer group, sharing a topic's partitions with the other
//! members of `billing`:
//!
//! ```no_run
//! use herald_client::{Client, GroupConsumer, GroupConsumerConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::connect("127.0.0.1:9092", "billing-1").await?;
//! let mut member = GroupConsumer::join(client, GroupConsumerConfig::new("billing", &["orders"])).await?;
//! loop {
//!     for consumed in member.poll().await? {
//!         println!("{}:{}", consumed.partition, consumed.record.offset);
//!     }
//!     // Offsets are committed every 5 s by default; `close` commits and leaves.
//! #   break;
//! }
//! member.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! In a cluster, start from a [`Cluster`]: the member's requests about the
//! group go to the group's coordinator (docs/protocol.md, "Groups in a
//! cluster"; see the [`GroupConsumer`] documentation for what happens when
//! the coordinator moves), its fetches to each partition's leader, and the
//! group admin calls of a `Cluster` ([`Cluster::describe_group`],
//! [`Cluster::list_groups`], ...) to the coordinator or every broker:
//!
//! ```no_run
//! use herald_client::{Cluster, ConnectOptions, GroupConsumer, GroupConsumerConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::connect(&["10.0.0.1:9092", "10.0.0.2:9092"], "billing-1", ConnectOptions::default()).await?;
//! let config = GroupConsumerConfig::new("billing", &["orders"]);
//! let mut member = GroupConsumer::join_with_cluster(cluster.clone(), config).await?;
//! let _records = member.poll().await?;
//! member.close().await?;
//! for group in cluster.list_groups().await? {
//!     println!("{} {}", group.group_id, group.state);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod acls;
mod auth;
mod cluster;
mod consumer;
mod coordinator;
mod custom;
mod error;
mod group;
mod groups;
mod leaders;
mod operations;
mod prepared;
mod producer;
mod quotas;
mod response;
mod tls;
mod users;
mod writer;

pub use auth::Credentials;
pub use consumer::{ConsumedRecord, Consumer, ConsumerConfig, StartOffset};
pub use coordinator::coordinator_moved;
pub use error::ClientError;
pub use group::{AutoOffsetReset, GroupConsumer, GroupConsumerConfig, GroupEvent};
/// The wire format this client speaks, for types beyond those re-exported below.
pub use herald_wire;
pub use herald_wire::batch::Compression;
pub use herald_wire::batch::Record;
pub use herald_wire::error::ErrorCode;
pub use herald_wire::protocol::{
    AclEntry, AclFilter, ConfigValue, DescribeGroupResponse, DescribeQuotasResponse, DescribeTopicResponse,
    FetchOffsetsResponse, FetchRequest, FetchResponse, FindCoordinatorResponse, GroupListing, HandshakeResponse,
    ResetOffsetsRequest, ResetOffsetsResponse, TopicSummary, UserSummary, WireRecord,
};
pub use leaders::{leader_moved, Cluster, RETRY_BACKOFF_MAX, RETRY_BACKOFF_MIN};
pub use operations::{record, Fetched};
pub use prepared::PreparedProduce;
pub use producer::{Partitioner, Producer, ProducerConfig, RecordMetadata};
/// rustls, whose types [`TlsOptions`] takes.
pub use rustls;
pub use tls::TlsOptions;
pub use users::DEFAULT_ITERATIONS;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
pub use herald_wire::error::DamagedRange;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use herald_wire::protocol::codec::{FrameCodec, Inbound, LENGTH_BYTES};
use herald_wire::protocol::*;
use response::correlation_id_of;
pub(crate) use response::{check_response, decode_response};

/// The largest frame the client accepts from a broker.
const CLIENT_MAX_FRAME_BYTES: usize = 256 << 20;

/// Requests waiting for their response, by correlation id. `None` once the
/// reader task has ended (the connection is gone): a request sent after that
/// fails at once with `Closed` instead of waiting for an answer that cannot come.
type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<Bytes>>>>>;

/// How long a [`Client`] waits for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To connect and complete the handshake.
    pub connect: Duration,
    /// For the answer to a request, beyond the time the request itself asks
    /// the broker to hold it (a long-poll fetch's or heartbeat's `max_wait_ms`).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), request: Duration::from_secs(30) }
    }
}

/// How a [`Client`] connects: its timeouts and, as the broker's listener
/// asks, TLS and credentials.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// How long to wait to connect and for each answer.
    pub timeouts: Timeouts,
    /// Whom to authenticate as, right after the handshake; `None` stays
    /// anonymous.
    pub credentials: Option<Credentials>,
    /// Speak TLS, as these options say; plain TCP when `None`.
    pub tls: Option<TlsOptions>,
}

impl ConnectOptions {
    /// These options with other timeouts.
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// These options, authenticating with `credentials`.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// These options speaking TLS.
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// A connection to a broker. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    writer: Arc<writer::WriterHandle>,
    pending: Pending,
    next_id: Arc<AtomicU32>,
    handshake: Arc<HandshakeResponse>,
    /// The broker's address and this client's id, to connect again.
    peer: std::net::SocketAddr,
    client_id: Arc<str>,
    timeouts: Timeouts,
    /// How this client connected, to connect again the same way.
    options: Arc<ConnectOptions>,
    /// The principal the broker reported when this client authenticated.
    principal: Option<Arc<str>>,
}

impl Client {
    /// Connects and performs the handshake, with the default [`Timeouts`].
    ///
    /// # Errors
    ///
    /// The connection fails, or the broker refuses the handshake.
    pub async fn connect(addr: impl ToSocketAddrs, client_id: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, client_id, Timeouts::default()).await
    }

    /// Connects and performs the handshake within `timeouts.connect`; every
    /// request of the client then waits at most `timeouts.request` for its
    /// answer (beyond the time the request asks the broker to hold it).
    ///
    /// # Errors
    ///
    /// The connection fails, or the broker refuses the handshake;
    /// [`ClientError::TimedOut`] when the two take longer than `timeouts.connect`.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        client_id: &str,
        timeouts: Timeouts,
    ) -> Result<Client, ClientError> {
        Client::connect_with_options(addr, client_id, ConnectOptions::default().timeouts(timeouts)).await
    }

    /// Connects as `options` say (timeouts, TLS, credentials) and performs
    /// the handshake within `options.timeouts.connect`; with credentials,
    /// authenticates right after the handshake, within the same time.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_with`]; with credentials, `SASL_AUTHENTICATION_FAILED`
    /// (wrong password or unknown user), `UNSUPPORTED_SASL_MECHANISM`, or
    /// [`ClientError::Protocol`] when the broker's SCRAM signature is wrong.
    pub async fn connect_with_options(
        addr: impl ToSocketAddrs,
        client_id: &str,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let timeouts = options.timeouts;
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr).await?.collect();
        let shown = addrs.first().map_or_else(|| "?".to_string(), ToString::to_string);
        let timed_out =
            || ClientError::TimedOut { peer: shown.clone(), what: "the connection".into(), after: timeouts.connect };
        tokio::time::timeout(timeouts.connect, Client::open(&addrs[..], client_id, options))
            .await
            .map_err(|_| timed_out())?
    }

    async fn open(
        addrs: &[std::net::SocketAddr],
        client_id: &str,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let timeouts = options.timeouts;
        let stream = TcpStream::connect(addrs).await?;
        stream.set_nodelay(true)?;
        let peer = stream.peer_addr()?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        // Frames come ready, length prefix included; a caller writes its own
        // when the socket is free (see `writer`).
        let broken = pending.clone();
        let on_broken = move || close_pending(&broken);
        let writer = match &options.tls {
            None => {
                let (read, write) = stream.into_split();
                spawn_reader(read, pending.clone());
                writer::start(writer::Socket::Plain(write), on_broken)
            }
            Some(tls) => {
                let (connector, name) = tls.connector(peer.ip())?;
                let (read, write) = tokio::io::split(connector.connect(name, stream).await?);
                spawn_reader(read, pending.clone());
                writer::start(writer::Socket::Tls(tokio::sync::Mutex::new(write)), on_broken)
            }
        };
        let writer = Arc::new(writer);

        let mut client = Client {
            writer,
            pending,
            next_id: Arc::new(AtomicU32::new(1)),
            handshake: Arc::new(HandshakeResponse::default()),
            peer,
            client_id: client_id.into(),
            // The handshake waits under the connect timeout, not this one.
            timeouts: Timeouts { request: Duration::MAX, ..timeouts },
            options: Arc::new(options),
            principal: None,
        };
        let offered = MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION;
        let handshake: HandshakeResponse =
            client.request(op::HANDSHAKE, &HandshakeRequest::offering(client_id, offered.clone())).await?;
        if !offered.contains(&handshake.protocol_version) {
            return Err(ClientError::Protocol(format!(
                "the broker chose protocol version {}, outside the {}..={} offered",
                handshake.protocol_version,
                offered.start(),
                offered.end()
            )));
        }
        client.handshake = Arc::new(handshake);
        if let Some(credentials) = client.options.credentials.clone() {
            client.principal = Some(client.authenticate(&credentials).await?.into());
        }
        client.timeouts = timeouts;
        Ok(client)
    }

    /// A new connection to the same broker with the same client id (after this
    /// one closed, for example across a broker restart).
    ///
    /// # Errors
    ///
    /// The broker cannot be reached, or refuses the handshake.
    pub async fn reconnect(&self) -> Result<Client, ClientError> {
        Client::connect_with_options(self.peer, &self.client_id, (*self.options).clone()).await
    }

    /// Whether the connection has closed: every request now fails at once.
    pub fn is_closed(&self) -> bool {
        self.writer.is_broken() || self.pending.lock().map_or(true, |p| p.is_none())
    }

    /// What the broker said in the handshake: its version, the protocol
    /// version of this connection, the operations it serves, its assignors
    /// and its limits.
    pub fn features(&self) -> &HandshakeResponse {
        &self.handshake
    }

    /// The principal the broker reported when this client authenticated
    /// (`User:<name>`); `None` when it connected without credentials.
    pub fn authenticated_as(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// What the broker said in the handshake (the same as [`Client::features`]).
    pub fn broker_info(&self) -> &HandshakeResponse {
        &self.handshake
    }

    fn send_frame<Req: Serialize>(&self, op: &str, body: &Req) -> Result<(u32, oneshot::Receiver<Bytes>), ClientError> {
        self.check_offered(op)?;
        let correlation_id = next_correlation_id(&self.next_id);
        let mut frame = vec![0u8; LENGTH_BYTES];
        rmp_serde::encode::write_named(&mut frame, &RequestEnvelope { correlation_id, op, body })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let payload = frame.len() - LENGTH_BYTES;
        if payload > self.max_frame_bytes() {
            return Err(too_large(op, payload, self.max_frame_bytes()));
        }
        frame[..LENGTH_BYTES].copy_from_slice(&(payload as u32).to_be_bytes());
        Ok((correlation_id, self.enqueue(correlation_id, Bytes::from(frame))?))
    }

    /// Refuses, without sending it, an operation the broker does not list.
    pub(crate) fn check_offered(&self, op: &str) -> Result<(), ClientError> {
        if self.handshake.offers(op) {
            return Ok(());
        }
        Err(ClientError::broker(
            ErrorCode::UNKNOWN_OPERATION.code(),
            Some(format!(
                "not sent: the broker does not list operation `{op}` for protocol version {} in its handshake",
                self.handshake.protocol_version
            )),
        ))
    }

    /// The largest request payload the broker takes (checked here because
    /// the broker would close the connection); no limit before the handshake.
    pub(crate) fn max_frame_bytes(&self) -> usize {
        match self.handshake.max_frame_bytes {
            0 => u32::MAX as usize,
            max => usize::try_from(max).unwrap_or(usize::MAX).min(u32::MAX as usize),
        }
    }

    /// Sends `frame` (length prefix included): written now when it is the
    /// only request waiting for an answer and the socket is free, handed to
    /// the writer task otherwise (see `writer`); the receiver waits for the
    /// answer to `correlation_id`.
    pub(crate) fn enqueue(&self, correlation_id: u32, frame: Bytes) -> Result<oneshot::Receiver<Bytes>, ClientError> {
        let (tx, rx) = oneshot::channel();
        let alone = {
            let mut pending = self.pending.lock().map_err(|_| ClientError::Closed)?;
            let pending = pending.as_mut().ok_or(ClientError::Closed)?;
            pending.insert(correlation_id, tx);
            pending.len() == 1
        };
        if self.writer.send(frame, alone).is_err() {
            self.forget(correlation_id);
            return Err(ClientError::Closed);
        }
        Ok(rx)
    }

    /// Stops waiting for the answer to `correlation_id` (one never sent).
    pub(crate) fn forget(&self, correlation_id: u32) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.as_mut().map(|p| p.remove(&correlation_id));
        }
    }

    /// The next correlation id of this connection.
    pub(crate) fn next_correlation_id(&self) -> u32 {
        next_correlation_id(&self.next_id)
    }

    /// Sends one request and waits for its response.
    ///
    /// # Errors
    ///
    /// [`ClientError::Broker`] when the broker answers with an error code.
    pub async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        body: &Req,
    ) -> Result<Resp, ClientError> {
        self.request_held(op, body, Duration::ZERO).await
    }

    /// [`Client::request`] for a request the broker may hold up to `held`.
    pub(crate) async fn request_held<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        op: &str,
        body: &Req,
        held: Duration,
    ) -> Result<Resp, ClientError> {
        let (id, rx) = self.send_frame(op, body)?;
        let frame = self.answer(op, id, rx, held).await?;
        decode_response(&frame)
    }

    /// Waits for the answer `rx` to request `id`, at most the request timeout
    /// plus `held`.
    pub(crate) async fn answer(
        &self,
        op: &str,
        id: u32,
        rx: oneshot::Receiver<Bytes>,
        held: Duration,
    ) -> Result<Bytes, ClientError> {
        let limit = self.timeouts.request.saturating_add(held);
        match tokio::time::timeout(limit, rx).await {
            Ok(frame) => frame.map_err(|_| ClientError::Closed),
            Err(_) => {
                self.forget(id);
                Err(ClientError::TimedOut { peer: self.peer.to_string(), what: op.to_string(), after: limit })
            }
        }
    }

    /// Sends a request whose response the broker will not send (acks = 0).
    ///
    /// # Errors
    ///
    /// The connection is closed.
    pub fn send_without_response<Req: Serialize>(&self, op: &str, body: &Req) -> Result<(), ClientError> {
        let (id, _) = self.send_frame(op, body)?;
        self.forget(id);
        Ok(())
    }
}

/// Ends every request waiting for an answer, and refuses later ones: the
/// connection is gone. Dropping the senders wakes every waiter with `Closed`;
/// `None` refuses later requests (see `Pending`).
fn close_pending(pending: &Pending) {
    if let Ok(mut p) = pending.lock() {
        *p = None;
    }
}

/// The error of a request not sent because its `bytes` exceed the broker's
/// `max_frame_bytes`.
pub(crate) fn too_large(op: &str, bytes: usize, max: usize) -> ClientError {
    ClientError::broker(
        ErrorCode::FRAME_TOO_LARGE.code(),
        Some(format!("not sent: a {op} request of {bytes} bytes exceeds the broker's max_frame_bytes {max}")),
    )
}

/// The next correlation id of a connection: 1, 2, ... up to `u32::MAX`, then
/// 1 again. Never 0, which the broker reserves for errors it cannot
/// attribute to a request.
fn next_correlation_id(counter: &AtomicU32) -> u32 {
    loop {
        let id = counter.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

/// Starts the task that reads the connection's responses and hands each to
/// the request waiting on its correlation id.
fn spawn_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(read: R, waiting: Pending) {
    let mut frames = FramedRead::new(read, FrameCodec::new(CLIENT_MAX_FRAME_BYTES));
    tokio::spawn(async move {
        while let Some(Ok(Inbound::Frame(frame))) = frames.next().await {
            let frame = frame.freeze();
            let Some(correlation_id) = correlation_id_of(&frame) else { break };
            let waiter = waiting.lock().map(|mut p| p.as_mut().and_then(|p| p.remove(&correlation_id)));
            match waiter {
                Ok(Some(waiter)) => {
                    let _ = waiter.send(frame);
                }
                // An error about the connection itself (id 0, e.g. an
                // oversize frame) ends every request: the broker closes.
                Ok(None) if correlation_id == 0 => break,
                _ => {}
            }
        }
        close_pending(&waiting);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_skip_0_when_they_wrap_around() {
        let counter = AtomicU32::new(u32::MAX - 1);
        let ids: Vec<u32> = (0..4).map(|_| next_correlation_id(&counter)).collect();
        assert_eq!(ids, [u32::MAX - 1, u32::MAX, 1, 2]);
    }
}
