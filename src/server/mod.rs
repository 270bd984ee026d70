//! Running a broker: open the data directory, start the actors, accept
//! connections until told to stop, then shut down cleanly.
//!
//! [`Server::builder`] is the one start path: `herald serve` is the builder
//! with nothing added; a program embedding the broker adds custom operations
//! and actors (see [`crate::extension`]). [`run`] and [`run_with`] are the
//! builder with an already bound listener and a shutdown future, so tests can
//! bind port 0 and stop the broker whenever they like. All of them must run
//! inside an actix `System`.

mod builder;

pub use builder::{bind_client_listener, Builder, Install, Server};

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use herald_actors::broker::{Broker, ShutdownBroker};
use herald_actors::group::{Groups, ShutdownGroups};
use herald_actors::partition::file_cache::FileCache;

use crate::config::{Authentication, Settings, Sources};
use crate::dir_lock::{DirLock, LockError};
use crate::extension::{ExtensionContext, OpHandler, Ops, StopKeeper};
use crate::frontend::connection::Limits;
use crate::frontend::listener::{Listener, Shared, StopAccepting};
use crate::http::{Actors, HttpState};
use crate::protocol::Features;
use crate::security::authorizer::Authorizer;
use crate::security::quota::Quotas;
use crate::security::scram::Authenticator;
use crate::security::users_store::Users;

/// Runs a broker on `listener` until `shutdown` completes, holding the data
/// directory's lock (see [`crate::dir_lock`]) throughout; then, in a cluster,
/// has the controller move its leaderships away (controlled shutdown, see
/// [`crate::cluster::shutdown`]), stops accepting,
/// drains every connection (held requests and new ones are refused with
/// `BROKER_SHUTTING_DOWN`, work in progress is answered), flushes and fsyncs
/// every partition and leaves the data directory needing no recovery.
///
/// The HTTP listener (see [`crate::http`]) is bound from `settings.http`.
///
/// # Errors
///
/// The data directory is locked by another broker (`ResourceBusy`, with a
/// message naming the directory and the holder's pid) or cannot be opened, or
/// a listener cannot be bound or used.
pub async fn run(
    listener: std::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + 'static,
) -> io::Result<()> {
    let http = crate::http::bind(&settings.http)?;
    run_with(listener, http, Sources::new(), settings, shutdown).await
}

/// [`run`] with the HTTP listener already bound (or none), and the settings'
/// sources for `/api/v1/broker`.
///
/// # Errors
///
/// As [`run`].
pub async fn run_with(
    listener: std::net::TcpListener,
    http: Option<std::net::TcpListener>,
    sources: Sources,
    settings: Settings,
    shutdown: impl Future<Output = ()> + 'static,
) -> io::Result<()> {
    Server::builder(settings).listener(listener).http_listener(http).sources(sources).shutdown(shutdown).run().await
}

/// What [`Builder::run`] starts besides the broker's own actors.
pub(crate) struct Extras {
    pub ops: Vec<(String, OpHandler)>,
    pub actors: Vec<(String, builder::StartActor)>,
}

/// Runs the broker: see [`run`]. The custom actors start once the broker
/// and groups have recovered, before the first connection is accepted; at
/// shutdown they get `Stop` after the connections have drained and before
/// the partitions' flush.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    http: Option<std::net::TcpListener>,
    sources: Sources,
    settings: Settings,
    extras: Extras,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Held until everything below has shut down: no other broker may open the
    // directory while this one can still write to it.
    let _lock = DirLock::acquire(&settings.storage.data_dir).map_err(|err| match err {
        LockError::Held { .. } => io::Error::new(io::ErrorKind::ResourceBusy, err),
        LockError::Io { .. } => io::Error::other(err),
    })?;
    // Before recovery: a damaged users file stops the start at once.
    let auth = Arc::new(authenticator(&settings)?);
    let security = &settings.security;
    let authorizer = Authorizer::open(&settings.storage.data_dir, security.authorization, &security.super_users)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot load the ACLs: {err}")))?;
    let authorizer = Arc::new(authorizer);
    let quotas = Quotas::open(&settings.storage.data_dir, settings.quotas.rates())
        .map_err(|err| io::Error::new(err.kind(), format!("cannot load the quotas: {err}")))?;
    let quotas = Arc::new(quotas);
    // Before any partition takes its topic's counters.
    herald_actors::stats::set_max_topics(settings.http.metrics_max_label_sets as usize);
    // Started first, so that /readyz answers (not ready) during recovery.
    let state = HttpState::new(settings.clone(), sources);
    let http = match http {
        Some(http) => {
            let address = http.local_addr()?;
            let handle = crate::http::start(http, state.clone())?;
            // Lets the server start its threads before recovery blocks this one.
            actix_rt::task::yield_now().await;
            tracing::info!(address = %address, "HTTP listener serving /metrics, /livez, /readyz, /api/v1/");
            Some(handle)
        }
        None => None,
    };
    return_large_buffers_to_the_os();
    // Before any log is opened: the bound on sealed segments' open files.
    FileCache::global().set_capacity(settings.storage.max_open_segment_files as usize);
    let broker = Broker::open(settings.broker_settings())?;
    let placement = broker.placement();
    let placement_arbiters = placement.arbiters.clone();
    let broker = broker.start();
    let groups = if settings.cluster.enabled() {
        Groups::in_cluster(settings.group_settings(), placement, broker.clone()).start()
    } else {
        Groups::open(&settings.storage.data_dir, settings.group_settings(), placement, broker.clone())?.start()
    };
    state.recovered(Actors { broker: broker.clone(), groups: groups.clone(), authorizer: authorizer.clone() });
    listener.set_nonblocking(true)?;
    let local: SocketAddr = listener.local_addr()?;
    let membership = join_cluster(&settings, local, broker.clone(), groups.clone()).await?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let limits = Limits {
        max_frame_bytes: settings.server.max_frame_bytes as usize,
        max_in_flight: settings.server.max_in_flight as usize,
        max_held_requests: settings.server.max_held_requests as usize,
        max_connection_bytes: settings.server.max_connection_bytes as usize,
        max_inflight_request_bytes: settings.server.max_inflight_request_bytes as usize,
        max_records_per_request: u64::from(settings.server.max_records_per_request),
        handshake_timeout: Duration::from_millis(settings.server.handshake_timeout_ms),
        frame_timeout: Duration::from_millis(settings.server.frame_timeout_ms),
        write_stall_timeout: Duration::from_millis(settings.server.write_stall_timeout_ms),
        features: Features {
            min_session_timeout_ms: settings.groups.min_session_timeout_ms,
            max_session_timeout_ms: settings.groups.max_session_timeout_ms,
            default_session_timeout_ms: settings.groups.default_session_timeout_ms,
            max_message_bytes: settings.log.max_message_bytes,
            max_held_requests: settings.server.max_held_requests,
            // Built once per broker start: the handshake's list is `'static`.
            assignors: Box::leak(herald_actors::group::assignor::names().into_boxed_slice()),
        },
    };
    // Connections run on the partitions' event loops: a request to a
    // partition on its connection's loop is handled without a thread switch,
    // and no second set of loops competes with the first for the cores.
    let arbiters = placement_arbiters;
    let max_connections = settings.server.max_connections as usize;
    let cluster_node = match &membership {
        crate::cluster::Membership::Cluster(node) => Some(node.clone()),
        crate::cluster::Membership::Single(_) => None,
    };
    let (ops, keepers) = start_extensions(extras, &broker, &groups, cluster_node.clone())?;
    let tls = match crate::security::tls::TlsFiles::from_settings(&settings.security) {
        Some(files) => Some(Arc::new(crate::security::tls::ServerTls::new(files).map_err(io::Error::other)?)),
        None => None,
    };
    let peers = match &cluster_node {
        Some(node) => node.send(crate::cluster::GetPeers).await.ok(),
        None => None,
    };
    actix_rt::spawn(builder::reload_on_sighup(tls.clone(), peers));
    let shared = Shared { extensions: ops, authorizer, quotas, auth, tls: tls.clone(), membership };
    let frontend = Listener::start(listener, broker.clone(), groups.clone(), limits, max_connections, arbiters, shared);
    state.accepting(local);
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), tls = tls.is_some(), "herald is serving");

    shutdown.await;
    // In a cluster, first hand the leaderships to other brokers, still
    // serving meanwhile: clients then find new leaders at once.
    if let Some(node) = cluster_node {
        let timeout = Duration::from_millis(settings.cluster.controlled_shutdown_timeout_ms);
        if !timeout.is_zero() {
            tracing::info!("shutting down: moving this broker's leaderships away first (controlled shutdown)");
            crate::cluster::shutdown::controlled_shutdown(&node, settings.cluster.broker_id, timeout).await;
        }
    }
    state.stopping();
    tracing::info!("shutting down: no new connections; answering in-flight requests");
    let timeout = Duration::from_millis(settings.server.shutdown_timeout_ms);
    // Drain the connections first, so appends under way are acknowledged, then
    // flush: anything arriving after is refused, never half-written. Each
    // connection refuses its held requests (long polls, held heartbeats) at
    // once rather than waiting out their max_wait_ms, so the drain takes as
    // long as the work in progress.
    if frontend.send(StopAccepting { timeout }).await.is_err() {
        tracing::warn!("listener gone at shutdown");
    }
    stop_extensions(keepers, timeout).await;
    if groups.send(ShutdownGroups).await.is_err() {
        tracing::warn!("group directory gone at shutdown");
    }
    match broker.send(ShutdownBroker).await {
        Ok(Ok(())) => tracing::info!("shutdown complete: every partition flushed"),
        Ok(Err(err)) => tracing::error!(%err, "shutdown flush failed; the next start will recover"),
        Err(err) => tracing::error!(%err, "broker actor gone at shutdown; the next start will recover"),
    }
    if let Some(http) = http {
        http.stop(false).await;
    }
    Ok(())
}

/// How the client listener authenticates: the `[security]` settings and the
/// data directory's users.
fn authenticator(settings: &Settings) -> io::Result<Authenticator> {
    let users = Users::open(settings.storage.data_dir.clone()).map_err(io::Error::other)?;
    Ok(Authenticator {
        required: settings.security.authentication == Authentication::Required,
        mechanisms: settings.security.sasl_mechanisms.clone(),
        failure_delay: Duration::from_millis(settings.security.auth_failure_delay_ms),
        users,
    })
}

/// Each custom actor's name and its keeper's shutdown handle.
type Keepers = Vec<(String, Recipient<StopKeeper>)>;

/// Starts the custom actors under their keepers, and resolves each custom
/// operation to its handler.
fn start_extensions(
    extras: Extras,
    broker: &Addr<Broker>,
    groups: &Addr<Groups>,
    cluster: Option<Addr<crate::cluster::ClusterNode>>,
) -> io::Result<(Arc<Ops>, Keepers)> {
    let mut served = BTreeMap::new();
    let mut keepers = Vec::new();
    for (name, start) in extras.actors {
        let (requests, stop) = start(ExtensionContext::new(broker.clone(), groups.clone(), cluster.clone(), &name));
        served.insert(name.clone(), requests);
        keepers.push((name, stop));
    }
    let mut handlers = BTreeMap::new();
    for (op, handler) in extras.ops {
        let recipient = match handler {
            OpHandler::Recipient(recipient) => recipient,
            // Checked by the builder before anything started.
            OpHandler::Actor(actor) => served.get(&actor).cloned().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("operation `{op}` names no custom actor `{actor}`"))
            })?,
        };
        handlers.insert(op, recipient);
    }
    Ok((Arc::new(Ops::new(handlers)), keepers))
}

/// Sends each custom actor `Stop` and waits for it, at most `timeout` each.
async fn stop_extensions(keepers: Keepers, timeout: Duration) {
    for (name, keeper) in keepers {
        if keeper.send(StopKeeper { timeout }).await.is_err() {
            tracing::warn!(actor = %name, "custom actor's keeper gone at shutdown");
        }
    }
}

/// Buffers of a megabyte or more (request frames, the batches built from
/// them, fetch responses: up to `max_frame_bytes` each) are mapped from the
/// OS and returned to it when freed. glibc's default raises its threshold
/// to the largest buffer freed (up to 32 MiB), after which such buffers come
/// from its arenas, one per thread, which keep the memory: the process then
/// holds its peak of large requests for good, and a burst of them on many
/// threads costs several times the bytes the budgets allow.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Joins the cluster of `cluster.zookeeper`, when there is one: the start is
/// refused when ZooKeeper cannot be reached or the id is taken. Alone, the
/// broker is its own cluster.
async fn join_cluster(
    settings: &Settings,
    local: SocketAddr,
    broker: Addr<Broker>,
    groups: Addr<Groups>,
) -> io::Result<crate::cluster::Membership> {
    use crate::cluster::{ClusterNode, Membership};
    let cluster = &settings.cluster;
    let host = match cluster.advertised_host.as_str() {
        "" => local.ip().to_string(),
        host => host.to_string(),
    };
    if !cluster.enabled() {
        let rack = (!cluster.rack.is_empty()).then(|| cluster.rack.clone());
        let me = herald_wire::protocol::BrokerInfo { id: cluster.broker_id.max(0), host, port: local.port(), rack };
        return Ok(Membership::Single(me));
    }
    let unclean = settings.log.unclean_leader_election_enable;
    let peers = crate::cluster::Peers::from_settings(settings).map_err(io::Error::other)?;
    let node = ClusterNode::join(cluster.clone(), host, local.port(), broker, groups, unclean, peers)
        .await
        .map_err(|err| io::Error::other(err.to_string()))?;
    Ok(Membership::Cluster(node))
}
