//! The `Listener` actor: accepts TCP connections and starts a [`Connection`]
//! actor and a reader task for each, on the connection arbiters in turn, so
//! that decoding and encoding use every core.
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

use super::connection::{Connection, ConnectionBytes, Drain, Limits, ReaderLimits, Writer};

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
    /// Bytes of requests read and not answered, across all connections.
    request_bytes: Arc<Semaphore>,
}

impl Listener {
    /// Starts accepting on `listener`.
    pub fn start(
        listener: TcpListener,
        broker: Addr<Broker>,
        groups: Addr<Groups>,
        limits: Limits,
        arbiters: Vec<ArbiterHandle>,
    ) -> Addr<Listener> {
        Listener::create(move |ctx| {
            let accepted = futures::stream::unfold(listener, |listener| async move {
                let accepted = listener.accept().await;
                Some((accepted, listener))
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
                request_bytes,
            }
        })
    }

    fn accept(&mut self, stream: TcpStream, peer: SocketAddr, ctx: &mut Context<Self>) {
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
        let listener = ctx.address().downgrade();
        let request_bytes = self.request_bytes.clone();
        arbiter.spawn(async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(err) => return tracing::warn!(%err, %peer, "cannot register the connection"),
            };
            let (read, write) = stream.into_split();
            let (stop_reader, stopped) = oneshot::channel();
            let connection_bytes = ConnectionBytes::new(limits.max_connection_bytes);
            let bytes = connection_bytes.clone();
            let addr = Connection::create(move |ctx| {
                let done = ctx.address().recipient();
                let writer = Writer::start(write, bytes, limits.max_frame_bytes, limits.write_stall_timeout, done);
                Connection::new(peer, broker, groups, limits, writer, stop_reader)
            });
            if let Some(listener) = listener.upgrade() {
                listener.do_send(Connected(addr.downgrade()));
            }
            let reader = ReaderLimits {
                max_frame_bytes: limits.max_frame_bytes,
                handshake_timeout: limits.handshake_timeout,
                frame_timeout: limits.frame_timeout,
                read_ahead: Arc::new(Semaphore::new(limits.max_in_flight)),
                request_bytes,
                connection_bytes,
            };
            super::connection::read_frames(read, reader, addr, stopped).await;
        });
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
            // Running out of file descriptors must not end the listener.
            Err(err) => tracing::warn!(%err, "accept failed"),
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
