//! The `Listener` actor: accepts TCP connections and starts a [`Connection`]
//! actor and a reader task for each, on the event loops (the arbiters the
//! partitions run on) in turn, so that decoding and encoding use every core.
//!
//! Accepting never spins and never floods the log: after a failed `accept()`
//! (out of file descriptors, `EMFILE`/`ENFILE`, or any other error) the next
//! one waits, 10 ms at first and twice as long after each further failure up
//! to 1 s, and the failures are logged at most once a second with a count of
//! those not logged. At `server.max_connections` open connections a new one is
//! closed right after accept, unread (logged at most once a second); a
//! connection counts from its accept until its reader stops.
//!
//! Contract: one per broker, on the system arbiter. Takes [`StopAccepting`] at
//! shutdown: it closes the listening socket, tells every connection to
//! [`Drain`], and answers once they have all closed or the timeout has passed. Not
//! supervised: if it stops, the broker accepts no new connections.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use herald_actors::broker::Broker;
use herald_actors::group::Groups;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

use super::connection::socket::{self, ClientRead, ClientWrite};
pub use super::connection::Shared;
use crate::log_throttle::Throttle;

use super::connection::{Connection, ConnectionBytes, Drain, Limits, ReaderLimits, Writer};
use crate::security::Principal;

/// Accepts connections. See the module documentation for its contract.
pub struct Listener {
    broker: Addr<Broker>,
    groups: Addr<Groups>,
    limits: Limits,
    /// Event loops connections run on, used in turn.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    /// Every connection started, to drain at shutdown; dead ones are pruned.
    connections: Vec<WeakAddr<Connection>>,
    /// The accept stream; cancelled (closing the socket) at shutdown.
    accepting: Option<SpawnHandle>,
    /// Connections accepted whose reader has not stopped yet.
    open: usize,
    /// `server.max_connections`.
    max_connections: usize,
    /// Rate limit of the warnings about failed accepts.
    accept_failures: Throttle,
    /// Rate limit of the warnings about refused connections.
    refusals: Throttle,
    /// Bytes of requests read and not answered, across all connections.
    request_bytes: Arc<Semaphore>,
    /// What every connection shares: custom operations, the ACLs.
    shared: Shared,
}

/// The first pause after a failed accept; it doubles with each further failure.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// The longest pause after failed accepts.
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// The pause before the next accept: none after a success, else doubling.
fn next_pause(pause: Duration, failed: bool) -> Duration {
    if !failed {
        return Duration::ZERO;
    }
    (pause * 2).clamp(ACCEPT_PAUSE_MIN, ACCEPT_PAUSE_MAX)
}

impl Listener {
    /// Starts accepting on `listener`, at most `max_connections` open at
    /// once, speaking TLS only when `tls` is set.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        listener: TcpListener,
        broker: Addr<Broker>,
        groups: Addr<Groups>,
        limits: Limits,
        max_connections: usize,
        arbiters: Vec<ArbiterHandle>,
        shared: Shared,
    ) -> Addr<Listener> {
        Listener::create(move |ctx| {
            // The pause is taken here, in the stream, so that the actor keeps
            // handling its messages (shutdown) meanwhile.
            let accepted = futures::stream::unfold((listener, Duration::ZERO), |(listener, pause)| async move {
                if !pause.is_zero() {
                    actix_rt::time::sleep(pause).await;
                }
                let accepted = listener.accept().await;
                let pause = next_pause(pause, accepted.is_err());
                Some((accepted, (listener, pause)))
            });
            let accepting = Some(ctx.add_stream(accepted));
            let request_bytes = Arc::new(Semaphore::new(limits.max_inflight_request_bytes));
            Listener {
                broker,
                groups,
                limits,
                arbiters,
                next_arbiter: 0,
                connections: Vec::new(),
                accepting,
                open: 0,
                max_connections,
                accept_failures: Throttle::default(),
                refusals: Throttle::default(),
                request_bytes,
                shared,
            }
        })
    }

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr, ctx: &mut Context<Self>) {
        if self.open >= self.max_connections {
            crate::http::metrics::rejected(crate::http::metrics::Rejected::MaxConnections);
            // Dropping the stream closes it: the client sees the connection
            // closed before any response.
            if let Some(suppressed) = self.refusals.allow() {
                let max_connections = self.max_connections;
                tracing::warn!(%peer, max_connections, suppressed, "connection refused: server.max_connections reached");
            }
            return;
        }
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(%err, %peer, "cannot set TCP_NODELAY");
        }
        // A socket is bound to the event loop that registered it: move it over
        // as a std socket and register it again on the chosen arbiter.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => return tracing::warn!(%err, %peer, "cannot hand the connection over"),
        };
        let arbiter = self.arbiters[self.next_arbiter % self.arbiters.len()].clone();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let (broker, groups, limits) = (self.broker.clone(), self.groups.clone(), self.limits);
        let shared = self.shared.clone();
        let listener = ctx.address().downgrade();
        self.open += 1;
        crate::http::metrics::connection_opened();
        let slot = Slot(listener.clone());
        let request_bytes = self.request_bytes.clone();
        // The configuration current now: a reload after this accept does
        // not change what this connection sees.
        let tls = self.shared.tls.as_ref().map(|tls| tls.config());
        let accepted = tokio::time::Instant::now();
        arbiter.spawn(async move {
            // Gives the connection's place back when the reader stops.
            let _slot = slot;
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(err) => return tracing::warn!(%err, %peer, "cannot register the connection"),
            };
            let (read, write, principal) = match tls {
                None => {
                    let (read, write) = socket::plain(stream);
                    (read, write, None)
                }
                Some(config) => match handshake(stream, config, peer, accepted + limits.handshake_timeout).await {
                    Some(halves) => halves,
                    None => return,
                },
            };
            let (stop_reader, stopped) = oneshot::channel();
            let connection_bytes = ConnectionBytes::new(limits.max_connection_bytes);
            let bytes = connection_bytes.clone();
            let addr = Connection::create(move |ctx| {
                let done = ctx.address().recipient();
                let writer = Writer::start(write, bytes, limits.max_frame_bytes, limits.write_stall_timeout, done);
                let connection = Connection::new(peer, broker, groups, limits, writer, stop_reader, shared);
                match principal {
                    Some(principal) => connection.tls_authenticated(principal),
                    None => connection,
                }
            });
            if let Some(listener) = listener.upgrade() {
                listener.do_send(Connected(addr.downgrade()));
            }
            let reader = ReaderLimits {
                max_frame_bytes: limits.max_frame_bytes,
                max_records_per_request: limits.max_records_per_request,
                handshake_timeout: limits.handshake_timeout,
                frame_timeout: limits.frame_timeout,
                read_ahead: Arc::new(Semaphore::new(limits.max_in_flight)),
                request_bytes,
                connection_bytes,
                accepted,
            };
            super::connection::read_frames(read, reader, addr, stopped).await;
        });
    }
}

/// The TLS handshake of a connection just accepted, on its event loop, done
/// by `deadline` (the handshake deadline of the connection: its first frame
/// must come within the rest). A failure (a plaintext client, garbage, a
/// missing or unverified client certificate, the deadline) closes the
/// connection: logged at debug, counted as a `tls` rejection. A verified
/// client certificate's subject is the principal.
async fn handshake(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<(ClientRead, ClientWrite, Option<Principal>)> {
    let accepting = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let failed = |err: &dyn std::fmt::Display| {
        crate::http::metrics::rejected(crate::http::metrics::Rejected::Tls);
        tracing::debug!(%peer, %err, "TLS handshake failed; closing");
    };
    let stream = match tokio::time::timeout_at(deadline, accepting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            failed(&err);
            return None;
        }
        Err(_) => {
            failed(&"no TLS handshake within handshake_timeout_ms");
            return None;
        }
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| crate::security::tls_subject::subject_of(cert))
        .map(Principal::user);
    let (read, write) = socket::tls(stream);
    Some((read, write, principal))
}

/// A connection's place under `max_connections`, held by its reader task.
struct Slot(WeakAddr<Listener>);

impl Drop for Slot {
    fn drop(&mut self) {
        crate::http::metrics::connection_closed();
        if let Some(listener) = self.0.upgrade() {
            listener.do_send(Disconnected);
        }
    }
}

/// A connection's reader stopped: its place is free.
#[derive(Message)]
#[rtype(result = "()")]
struct Disconnected;

impl Handler<Disconnected> for Listener {
    type Result = ();

    fn handle(&mut self, _: Disconnected, _: &mut Context<Self>) {
        self.open = self.open.saturating_sub(1);
    }
}

/// A connection started on its arbiter, to drain at shutdown.
#[derive(Message)]
#[rtype(result = "()")]
struct Connected(WeakAddr<Connection>);

impl Handler<Connected> for Listener {
    type Result = ();

    fn handle(&mut self, msg: Connected, _: &mut Context<Self>) {
        self.connections.retain(|c| c.upgrade().is_some());
        self.connections.push(msg.0);
    }
}

impl Actor for Listener {
    type Context = Context<Self>;
}

impl StreamHandler<io::Result<(TcpStream, SocketAddr)>> for Listener {
    fn handle(&mut self, accepted: io::Result<(TcpStream, SocketAddr)>, ctx: &mut Context<Self>) {
        match accepted {
            Ok((stream, peer)) => self.accept(stream, peer, ctx),
            // Running out of file descriptors must not end the listener; the
            // stream pauses before the next accept (see the module doc).
            Err(err) => {
                if let Some(suppressed) = self.accept_failures.allow() {
                    tracing::warn!(%err, suppressed, "accept failed; pausing accepts (up to 1 s)");
                }
            }
        }
    }
}

/// Stop accepting, drain every connection, and answer when all have closed or
/// `timeout` has passed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting {
    pub timeout: Duration,
}

impl Handler<StopAccepting> for Listener {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopAccepting, ctx: &mut Context<Self>) -> Self::Result {
        let live: Vec<Addr<Connection>> = self.connections.drain(..).filter_map(|c| c.upgrade()).collect();
        for connection in &live {
            connection.do_send(Drain);
        }
        let weak: Vec<WeakAddr<Connection>> = live.iter().map(Addr::downgrade).collect();
        drop(live);
        // Dropping the accept stream closes the listening socket.
        if let Some(accepting) = self.accepting.take() {
            ctx.cancel_future(accepting);
        }
        let deadline = Instant::now() + msg.timeout;
        Box::pin(async move {
            while weak.iter().any(|c| c.upgrade().is_some()) && Instant::now() < deadline {
                actix_rt::time::sleep(Duration::from_millis(10)).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_after_failed_accepts_doubles_up_to_a_second() {
        let mut pause = Duration::ZERO;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pause = next_pause(pause, true);
            pauses.push(pause.as_millis());
        }
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(next_pause(pause, false), Duration::ZERO);
    }
}
