//! The `Connection` actor: one per client, turning frames into actor messages
//! and results back into frames.
//!
//! Contract:
//! - Started by the [`Listener`](super::listener::Listener) on a connection
//!   arbiter. A reader task decodes frames from the socket and sends them here
//!   one at a time, each with a read-ahead permit; it stops reading while no
//!   permit is free: back-pressure per connection, not per mailbox. Requests
//!   the broker may hold (long polls) give their permit back and count against
//!   a bound of their own (see the `in_flight` module).
//! - The first request must be a handshake. Requests are dispatched to the
//!   broker or topic actors in arrival order; responses are written as they
//!   complete, possibly out of order, matched by correlation id.
//! - Decoding errors get an error response (none for a `produce` with `acks`
//!   0, which is never answered); the connection stays open. Framing errors
//!   (an oversize frame), a missing handshake or an unsupported version get an
//!   error response and the connection is closed.
//! - At shutdown ([`Drain`]) held requests and new ones are answered
//!   `BROKER_SHUTTING_DOWN`, work in progress completes, then it closes.
//! - Not supervised: if it stops, the client reconnects. Nothing is lost: an
//!   append that reached a partition completes whether or not its response can
//!   still be written.

mod acls;
mod auth;
mod authorize;
mod budget;
mod bulk;
mod bulk_read;
mod cluster;
mod custom;
mod fetch;
mod groups;
mod in_flight;
mod produce;
mod reader;
mod replica;
pub mod socket;
mod throttle;
mod topic_ops;
mod writer;

pub use budget::{Admission, ConnectionBytes};
pub(crate) use groups::{describe as describe_group_response, list_groups_response};
pub use in_flight::Drain;
pub use reader::{read_frames, ReaderLimits};
pub use writer::{Writer, WriterDone};

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::broker::{self, Broker};
use herald_actors::error::{BrokerError, ErrorCode};
use herald_actors::group::coordinator::GroupCoordinator;
use herald_actors::group::session::{ConnectionClosed, Session};
use herald_actors::group::Groups;
use herald_actors::partition;
use herald_actors::topic::{self, Topic};
use herald_actors::topic_config::ConfigValue as Setting;
use herald_actors::topic_route::Route;
use tokio::sync::oneshot;

use crate::extension::Ops;
use crate::http::metrics;
use crate::protocol::codec::FrameError;
use crate::protocol::Request;
use crate::protocol::{self, *};
use crate::security::acl::{Operation, Resource};
use crate::security::authorizer::Authorizer;
use crate::security::quota::Quotas;
use crate::security::scram::Authenticator;
use crate::security::Principal;
use actix::WeakAddr;

/// Limits a connection enforces; the handshake announces the first two.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    /// Read-ahead permits of the connection's reader task.
    pub max_in_flight: usize,
    /// Held requests that may give their read-ahead permit back.
    pub max_held_requests: usize,
    /// Bytes one connection may hold (see the `budget` module).
    pub max_connection_bytes: usize,
    /// Bytes of requests read and not answered, across all connections.
    pub max_inflight_request_bytes: usize,
    /// Records one produce request may carry.
    pub max_records_per_request: u64,
    pub handshake_timeout: Duration,
    pub frame_timeout: Duration,
    pub write_stall_timeout: Duration,
    /// The rest of what the handshake announces.
    pub features: Features,
}

/// What every connection shares, handed to each by the listener.
#[derive(Clone)]
pub struct Shared {
    /// The custom operations the broker serves.
    pub extensions: Arc<Ops>,
    /// The ACLs every request is checked against.
    pub authorizer: Arc<Authorizer>,
    /// The quotas every request counts against.
    pub quotas: Arc<Quotas>,
    /// How clients authenticate.
    pub auth: Arc<Authenticator>,
    /// The client listener's TLS, when it speaks TLS (the listener's: it
    /// runs each connection's TLS handshake).
    pub tls: Option<Arc<crate::security::tls::ServerTls>>,
    /// Whether the broker is alone or in a cluster.
    pub membership: crate::cluster::Membership,
}

/// One client connection. See the module documentation for its contract.
pub struct Connection {
    peer: SocketAddr,
    /// Set by the handshake; `None` until then.
    client_id: Option<String>,
    /// Who the client is: `User:ANONYMOUS` until it authenticates, the
    /// subject of its verified TLS client certificate if it presented one.
    principal: Principal,
    /// How clients authenticate, and where this one is in it.
    auth: Arc<Authenticator>,
    auth_state: auth::AuthState,
    /// The client presented a TLS client certificate the client CA signed:
    /// that counts as authentication.
    tls_authenticated: bool,
    broker: Addr<Broker>,
    groups: Addr<Groups>,
    limits: Limits,
    writer: Writer,
    /// Topics already looked up: the actor's address, weak so that a deleted
    /// topic's actor can end, and its route to the partitions.
    topics: HashMap<String, (WeakAddr<Topic>, Arc<Route>)>,
    /// Group coordinators already looked up; weak, like `topics`, each with
    /// the flag it sets when it closes for good (its group deleted, expired,
    /// or coordinated by another broker now): a closed one is looked up again.
    coordinators: HashMap<String, (WeakAddr<GroupCoordinator>, Arc<std::sync::atomic::AtomicBool>)>,
    /// This connection's session in each group it joined, by group id.
    sessions: HashMap<String, Addr<Session>>,
    /// Requests dispatched whose response is not written yet.
    in_flight: in_flight::InFlight,
    /// The response room parked long polls reserve: half of
    /// `max_connection_bytes` (see the `budget` module).
    held_room: Arc<ConnectionBytes>,
    /// Set at shutdown: new requests are refused.
    draining: bool,
    /// The custom operations the broker serves.
    extensions: Arc<Ops>,
    /// The ACLs every request is checked against.
    authorizer: Arc<Authorizer>,
    /// The quotas every request counts against.
    quotas: Arc<Quotas>,
    /// Requests held for a quota and not answered yet: how long, in ms, by
    /// correlation id (for their responses' `throttle_time_ms`).
    throttled: HashMap<u32, u32>,
    /// Whether the broker is alone or in a cluster.
    membership: crate::cluster::Membership,
    /// Dropped with the actor, which tells the reader task to stop.
    _stop_reader: oneshot::Sender<()>,
}

impl Connection {
    pub fn new(
        peer: SocketAddr,
        broker: Addr<Broker>,
        groups: Addr<Groups>,
        limits: Limits,
        writer: Writer,
        stop_reader: oneshot::Sender<()>,
        shared: Shared,
    ) -> Self {
        let Shared { extensions, authorizer, quotas, auth, tls: _, membership } = shared;
        Connection {
            peer,
            client_id: None,
            tls_authenticated: false,
            principal: Principal::anonymous(),
            auth,
            auth_state: auth::AuthState::default(),
            broker,
            groups,
            writer,
            topics: HashMap::new(),
            coordinators: HashMap::new(),
            sessions: HashMap::new(),
            limits,
            in_flight: in_flight::InFlight::default(),
            held_room: ConnectionBytes::new(limits.max_connection_bytes / 2),
            draining: false,
            extensions,
            authorizer,
            quotas,
            throttled: HashMap::new(),
            membership,
            _stop_reader: stop_reader,
        }
    }

    /// This connection, authenticated by a verified TLS client certificate
    /// whose subject is `principal`.
    pub fn tls_authenticated(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self.tls_authenticated = true;
        self
    }

    fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or("-")
    }

    fn send_error(&mut self, correlation_id: u32, error: &BrokerError) {
        tracing::debug!(client_id = self.client_id(), peer = %self.peer, %error, correlation_id, "request failed");
        let throttle = self.throttle_of(correlation_id);
        self.writer.write(protocol::encode_error_throttled(
            correlation_id,
            throttle,
            error.code,
            &error.message,
            error.damaged.as_deref().copied(),
        ));
    }

    /// Writes a last error response, then closes the connection.
    fn fail_and_close(&mut self, correlation_id: u32, error: &BrokerError) {
        tracing::warn!(client_id = self.client_id(), peer = %self.peer, %error, "closing connection");
        self.writer.write(protocol::encode_error(
            correlation_id,
            error.code,
            &error.message,
            error.damaged.as_deref().copied(),
        ));
        self.close_when_idle();
    }

    /// The client's side is gone: no heartbeat can come over this connection
    /// again, so its members are gone now, not when their held heartbeats end
    /// (`close_when_idle` waits for those, up to half a session timeout).
    fn members_gone(&mut self) {
        // Dropping the addresses ends the sessions once they handled this.
        for (_, session) in self.sessions.drain() {
            session.do_send(ConnectionClosed);
        }
    }

    fn handle_request(&mut self, decoded: Decoded, permit: Admission, ctx: &mut Context<Self>) {
        let (correlation_id, mut request) = match decoded {
            Ok(decoded) => decoded,
            Err(err) if err.unanswered => {
                metrics::rejected(metrics::Rejected::Malformed);
                let error = &err.error;
                return tracing::debug!(client_id = self.client_id(), peer = %self.peer, %error, correlation_id = err.correlation_id, "unanswered request (acks 0) failed");
            }
            Err(err) => {
                metrics::rejected(metrics::Rejected::Malformed);
                return self.send_error(err.correlation_id.unwrap_or(0), &err.error.into());
            }
        };
        if self.client_id.is_none() {
            return match request {
                Request::Handshake(handshake) => self.handshake(correlation_id, handshake),
                other => {
                    metrics::rejected(metrics::Rejected::Handshake);
                    let error = BrokerError::new(
                        ErrorCode::HANDSHAKE_REQUIRED,
                        format!("`{}` before `handshake`: the first request must be a handshake", other.op()),
                    );
                    self.fail_and_close(correlation_id, &error)
                }
            };
        }
        if self.draining {
            if request.answered() {
                let error = BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down");
                self.send_error(correlation_id, &error);
            }
            return;
        }
        if !self.admitted(correlation_id, &request) {
            return;
        }
        if let Request::Authenticate(r) = request {
            return self.authenticate(correlation_id, r, ctx);
        }
        if let Err(error) = self.authorize(&request) {
            metrics::request_refused(request.op(), error.code);
            if request.answered() {
                self.send_error(correlation_id, &error);
            }
            return;
        }
        if let Request::Fetch(fetch) = &mut request {
            self.park_only_within_room(fetch);
        }
        self.in_flight.dispatching(correlation_id, &request);
        self.dispatch(correlation_id, request, permit, ctx);
    }

    fn handshake(&mut self, correlation_id: u32, request: HandshakeRequest) {
        let version = match request.offered() {
            Ok(offered) => protocol::negotiate(&offered),
            Err(error) => return self.send_error(correlation_id, &error.into()),
        };
        let version = match version {
            Ok(version) => version,
            Err(error) => return self.fail_and_close(correlation_id, &error.into()),
        };
        tracing::debug!(client_id = %request.client_id, peer = %self.peer, principal = %self.principal, tls_authenticated = self.tls_authenticated, protocol_version = version, "client connected");
        self.client_id = Some(request.client_id);
        let limits = &self.limits;
        let mut response = HandshakeResponse::new(
            version,
            limits.max_frame_bytes as u64,
            limits.max_in_flight as u32,
            &limits.features,
        );
        response.operations.extend(self.extensions.operations());
        response.authentication =
            AuthenticationInfo { required: self.auth.required, mechanisms: self.auth.mechanisms.clone() };
        response.principal = Some(self.principal.to_string());
        self.writer.write(protocol::encode_ok(correlation_id, &response));
    }

    /// Runs `then` with the topic's address: from the cache, or after a lookup
    /// during which this connection handles nothing else, so requests keep
    /// their order.
    fn with_topic<F>(&mut self, name: String, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, Result<Addr<Topic>, BrokerError>, &mut Context<Self>) + 'static,
    {
        self.look_up(name, ctx, move |act, found, ctx| then(act, found.map(|(addr, _)| addr), ctx));
    }

    /// Runs `then` with the topic's route to its partitions (produce and
    /// fetch go straight to the partition's actor), as [`Self::with_topic`].
    fn with_route<F>(&mut self, name: String, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, Result<Arc<Route>, BrokerError>, &mut Context<Self>) + 'static,
    {
        self.look_up(name, ctx, move |act, found, ctx| then(act, found.map(|(_, route)| route), ctx));
    }

    /// A topic from the cache while its actor lives and its route is open
    /// (a closed one may have been deleted and created anew), or looked up.
    fn look_up<F>(&mut self, name: String, ctx: &mut Context<Self>, then: F)
    where
        F: FnOnce(&mut Self, Result<(Addr<Topic>, Arc<Route>), BrokerError>, &mut Context<Self>) + 'static,
    {
        if let Some((addr, route)) = self.topics.get(&name) {
            if let (Some(addr), false) = (addr.upgrade(), route.is_closed()) {
                let route = route.clone();
                return then(self, Ok((addr, route)), ctx);
            }
        }
        let broker = self.broker.clone();
        let lookup = async move {
            let addr = flatten(broker.send(broker::LookupTopic { name: name.clone() }).await)?;
            let route = addr.send(topic::GetRoute).await.map_err(BrokerError::from)?;
            Ok::<_, BrokerError>((name, addr, route))
        };
        ctx.wait(lookup.into_actor(self).map(move |found, act, ctx| {
            let found = found.map(|(name, addr, route)| {
                act.topics.insert(name, (addr.downgrade(), route.clone()));
                (addr, route)
            });
            then(act, found, ctx)
        }));
    }

    fn dispatch(&mut self, correlation_id: u32, request: Request, permit: Admission, ctx: &mut Context<Self>) {
        let broker = self.broker.clone();
        match request {
            Request::Handshake(handshake) => self.handshake(correlation_id, handshake),
            Request::CreateTopic(r) => self.create_topic(correlation_id, r, permit, ctx),
            Request::DeleteTopic(r) => {
                self.topics.remove(&r.topic);
                self.delete_topic(correlation_id, r, permit, ctx);
            }
            Request::ListTopics => {
                let sent = broker.send(broker::ListTopics);
                let access = self.access();
                self.respond(
                    correlation_id,
                    permit,
                    async move {
                        let mut topics = sent.await.map_err(BrokerError::from)?;
                        topics.retain(|t| access.may(Operation::Describe, &Resource::topic(t.name.as_str())));
                        Ok(Some(list_topics_response(topics)))
                    },
                    ctx,
                );
            }
            Request::DescribeTopic(r) => self.with_topic(r.topic, ctx, move |act, topic, ctx| {
                let sent = topic.map(|t| t.send(topic::DescribeTopic));
                act.respond(
                    correlation_id,
                    permit,
                    async move { Ok(Some(describe_response(flatten(sent?.await)?))) },
                    ctx,
                );
            }),
            Request::AddPartitions(r) => self.add_partitions(correlation_id, r, permit, ctx),
            Request::AlterTopicConfig(r) => self.alter_topic_config(correlation_id, r, permit, ctx),
            Request::DeleteRecords(r) => self.delete_records(correlation_id, r, permit, ctx),
            Request::Produce(r) => self.produce(correlation_id, r, permit, ctx),
            Request::JoinGroup(_)
            | Request::Heartbeat(_)
            | Request::LeaveGroup(_)
            | Request::CommitOffsets(_)
            | Request::FetchOffsets(_)
            | Request::ListGroups
            | Request::DescribeGroup(_)
            | Request::ResetOffsets(_)
            | Request::DeleteGroup(_) => self.dispatch_group(correlation_id, request, permit, ctx),
            Request::Fetch(r) => self.fetch(correlation_id, r, permit, ctx),
            Request::Custom(call) => self.custom(correlation_id, call, permit, ctx),
            Request::CreateAcls(_) | Request::DeleteAcls(_) | Request::ListAcls(_) => {
                self.dispatch_acls(correlation_id, request, permit, ctx)
            }
            Request::AlterQuotas(r) => self.alter_quotas(correlation_id, r, permit, ctx),
            Request::InitProducerId(r) => self.init_producer_id(correlation_id, r, permit, ctx),
            Request::DescribeQuotas => self.describe_quotas(correlation_id, permit, ctx),
            Request::Authenticate(r) => self.authenticate(correlation_id, r, ctx),
            Request::CreateUser(_) | Request::DeleteUser(_) | Request::ListUsers => {
                self.users_op(correlation_id, request, permit, ctx)
            }
            Request::DescribeCluster => self.describe_cluster(correlation_id, permit, ctx),
            Request::FindCoordinator(r) => self.find_coordinator(correlation_id, r, permit, ctx),
            Request::Metadata(r) => self.metadata(correlation_id, r, permit, ctx),
            Request::ReplicaFetch(r) => self.replica_fetch(correlation_id, r, permit, ctx),
            Request::EpochEnd(r) => self.epoch_end(correlation_id, r, permit, ctx),
            Request::ControlledShutdown(r) => self.controlled_shutdown(correlation_id, r, permit, ctx),
            Request::ListOffsets(r) => {
                let partition = partition_id(r.partition, &r.topic);
                let message = partition::ListOffsets { timestamp: r.timestamp };
                self.with_route(r.topic, ctx, move |act, route, ctx| {
                    let sent = route.and_then(|route| Ok(route.partition(partition?)?.send(message)));
                    act.respond(
                        correlation_id,
                        permit,
                        async move { flatten(sent?.await).map(|offset| Some(ListOffsetsResponse { offset })) },
                        ctx,
                    );
                })
            }
        }
    }
}

/// A partition number from the wire, checked.
fn partition_id(partition: i64, topic: &str) -> Result<u32, BrokerError> {
    u32::try_from(partition).map_err(|_| {
        BrokerError::new(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION, format!("topic `{topic}` has no partition {partition}"))
    })
}

/// Topic settings from the wire, for the broker.
pub(super) fn settings_in(config: BTreeMap<String, ConfigValue>) -> BTreeMap<String, Setting> {
    let value = |v| match v {
        ConfigValue::Int(n) => Setting::Int(n),
        ConfigValue::Str(s) => Setting::Str(s),
    };
    config.into_iter().map(|(k, v)| (k, value(v))).collect()
}

/// A topic's settings, for the wire.
fn settings_out(config: BTreeMap<String, Setting>) -> BTreeMap<String, ConfigValue> {
    let value = |v| match v {
        Setting::Int(n) => ConfigValue::Int(n),
        Setting::Str(s) => ConfigValue::Str(s),
    };
    config.into_iter().map(|(k, v)| (k, value(v))).collect()
}

/// Folds a mailbox error into the handler's own error.
fn flatten<T>(sent: Result<Result<T, BrokerError>, MailboxError>) -> Result<T, BrokerError> {
    sent.unwrap_or_else(|e| Err(e.into()))
}

/// A topic's description, for the wire (and the HTTP admin API).
/// The wire's `list_topics` answer for the broker's list.
pub(crate) fn list_topics_response(topics: Vec<broker::ListedTopic>) -> ListTopicsResponse {
    let topics = topics
        .into_iter()
        .map(|t| TopicSummary {
            topic: t.name,
            topic_id: t.topic_id,
            partitions: t.partitions,
            state: if t.damaged.is_some() { TopicState::Damaged } else { TopicState::Ok },
            error: t.damaged,
        })
        .collect();
    ListTopicsResponse { topics }
}

pub(crate) fn describe_response(d: topic::TopicDescription) -> DescribeTopicResponse {
    DescribeTopicResponse {
        topic: d.name,
        topic_id: d.topic_id,
        config: settings_out(d.config),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| PartitionDescription {
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                log_end_offset: p.log_end_offset,
                high_watermark: p.high_watermark,
                size_bytes: p.size_bytes,
                segments: p.segments,
                damaged: p
                    .damaged
                    .into_iter()
                    .map(|d| DamagedRangeDescription {
                        first_offset: d.first_offset,
                        next_offset: d.next_offset,
                        segment: d.segment_base,
                        reason: d.reason,
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Requests from the reader must be handled in the order they were read.
        ctx.set_mailbox_capacity(herald_actors::UNBOUNDED_MAILBOX);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Members joined over this connection are gone (static ones get their
        // session timeout to come back).
        self.members_gone();
        tracing::debug!(client_id = self.client_id(), peer = %self.peer, "connection closed");
    }
}

impl Handler<WriterDone> for Connection {
    type Result = ();

    fn handle(&mut self, done: WriterDone, ctx: &mut Context<Self>) {
        if let Err(err) = done.0 {
            tracing::info!(client_id = self.client_id(), peer = %self.peer, %err, "write failed; closing connection");
        }
        ctx.stop();
    }
}

/// A frame decoded by the reader task.
pub type Decoded = Result<(u32, Request), protocol::DecodeError>;

/// What the reader task saw on the socket.
#[derive(Message)]
#[rtype(result = "()")]
pub enum ReaderEvent {
    /// A complete frame, decoded, with what counts it as in flight.
    Request(Decoded, Admission),
    /// The first frame looked like a Kafka request.
    KafkaRequest,
    /// The framing broke (an oversize length, or an I/O error).
    Broken(FrameError),
    /// The client closed its side.
    Closed,
    /// The handshake or a frame did not arrive in time (the reason says which).
    TimedOut(String),
}

impl Handler<ReaderEvent> for Connection {
    type Result = ();

    fn handle(&mut self, event: ReaderEvent, ctx: &mut Context<Self>) {
        match event {
            ReaderEvent::Request(decoded, permit) => self.admit(decoded, permit, ctx),
            ReaderEvent::KafkaRequest => {
                metrics::rejected(metrics::Rejected::Kafka);
                tracing::warn!(peer = %self.peer, "a Kafka client connected: this port speaks Herald's protocol (MessagePack frames, docs/protocol.md), not Kafka's; closing");
                ctx.stop();
            }
            ReaderEvent::Broken(FrameError::TooLarge { length, max }) => {
                metrics::rejected(metrics::Rejected::TooLarge);
                let error = BrokerError::new(
                    ErrorCode::FRAME_TOO_LARGE,
                    format!("frame of {length} bytes exceeds max_frame_bytes {max}"),
                );
                self.fail_and_close(0, &error);
            }
            ReaderEvent::Broken(FrameError::Io(err)) => {
                tracing::debug!(client_id = self.client_id(), peer = %self.peer, %err, "read failed");
                self.members_gone();
                self.close_when_idle();
            }
            ReaderEvent::Closed => {
                self.members_gone();
                self.close_when_idle();
            }
            ReaderEvent::TimedOut(reason) => {
                metrics::rejected(metrics::Rejected::Deadline);
                self.members_gone();
                self.fail_and_close(0, &BrokerError::new(ErrorCode::REQUEST_TIMED_OUT, reason));
            }
        }
    }
}
