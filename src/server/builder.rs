//! [`Server::builder`]: the broker with extensions added.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io;
use std::pin::Pin;

use actix::prelude::*;
use herald_actors::group::assignor::{self, Assignor};

use super::{serve, Extras};
use crate::config::{Settings, Sources};
use crate::extension::{start_keeper, validate_op_name, CustomRequest, ExtensionContext, OpHandler, Stop, StopKeeper};

/// Starts a custom actor's keeper; answers its handles.
pub(crate) type StartActor = Box<dyn FnOnce(ExtensionContext) -> (Recipient<CustomRequest>, Recipient<StopKeeper>)>;

/// Installs a registered extension: adds its operations and actors.
pub type Install = fn(Builder) -> Builder;

/// The broker as a library. See [`Server::builder`].
pub struct Server;

impl Server {
    /// A broker with the given settings (as [`Settings::load`] gives them)
    /// and nothing added: [`Builder::run`] then starts what `herald serve`
    /// starts.
    pub fn builder(settings: Settings) -> Builder {
        Builder {
            settings,
            sources: Sources::new(),
            listener: None,
            http: None,
            shutdown: None,
            ops: Vec::new(),
            actors: Vec::new(),
            registry: BTreeMap::new(),
            assignors: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// Builds a broker: custom operations, custom actors, registered extensions.
/// Mistakes (a bad or duplicate name) are collected and refused by
/// [`Builder::run`] before anything starts.
pub struct Builder {
    settings: Settings,
    sources: Sources,
    listener: Option<std::net::TcpListener>,
    http: Option<Option<std::net::TcpListener>>,
    shutdown: Option<Pin<Box<dyn Future<Output = ()>>>>,
    ops: Vec<(String, OpHandler)>,
    actors: Vec<(String, StartActor)>,
    registry: BTreeMap<String, Install>,
    assignors: Vec<&'static dyn Assignor>,
    errors: Vec<String>,
}

impl Builder {
    /// Serves the custom operation `name` (`x.<extension>.<name>`, see
    /// [`validate_op_name`]) with `handler`: a `Recipient<CustomRequest>`,
    /// or [`OpHandler::actor`] naming a custom actor of this builder.
    pub fn op(mut self, name: &str, handler: impl Into<OpHandler>) -> Builder {
        if let Err(err) = validate_op_name(name) {
            self.errors.push(err);
        } else if self.ops.iter().any(|(op, _)| op == name) {
            self.errors.push(format!("custom operation `{name}` is registered twice"));
        }
        self.ops.push((name.to_owned(), handler.into()));
        self
    }

    /// Runs a custom actor named `name`, made by `factory`, under a
    /// supervisor: restarted with back-off when it panics or stops, sent
    /// [`Stop`] at shutdown. It handles [`CustomRequest`] so that operations
    /// can name it ([`OpHandler::actor`]); one that serves none may answer
    /// every request with an error.
    pub fn actor<A, F>(mut self, name: &str, factory: F) -> Builder
    where
        A: Actor<Context = Context<A>> + Handler<CustomRequest> + Handler<Stop>,
        F: Fn(ExtensionContext) -> A + 'static,
    {
        if name.is_empty() || self.actors.iter().any(|(actor, _)| actor == name) {
            self.errors.push(format!("custom actor name `{name}` is empty or registered twice"));
        }
        let owned = name.to_owned();
        let start: StartActor = Box::new(move |context| start_keeper(owned, Box::new(factory), context));
        self.actors.push((name.to_owned(), start));
        self
    }

    /// Offers the partition assignor `assignor` to consumer groups under
    /// `name` (which must be its [`Assignor::name`], and not a built-in
    /// one's): a group uses it when its members ask for it by name in
    /// `join_group`, and the handshake lists it among the assignors. The
    /// registry is the process's: a process runs one broker.
    pub fn assignor<A: Assignor + 'static>(mut self, name: &str, assignor: A) -> Builder {
        if name != assignor.name() {
            self.errors.push(format!("assignor registered as `{name}` calls itself `{}`", assignor.name()));
        } else if name.is_empty() || assignor::ASSIGNORS.contains(&name) {
            self.errors.push(format!("assignor name `{name}` is empty or built in"));
        } else if self.assignors.iter().any(|a| a.name() == name) {
            self.errors.push(format!("assignor `{name}` is registered twice"));
        }
        // One per registration for the life of the process: the coordinators
        // hold assignors as `&'static`.
        self.assignors.push(Box::leak(Box::new(assignor)));
        self
    }

    /// Registers an extension compiled in, installed only when its `name` is
    /// in the settings' `extensions.enabled`.
    pub fn extension(mut self, name: &str, install: Install) -> Builder {
        if self.registry.insert(name.to_owned(), install).is_some() {
            self.errors.push(format!("extension `{name}` is registered twice"));
        }
        self
    }

    /// Listens on `listener` instead of binding `server.host`:`server.port`.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Builder {
        self.listener = Some(listener);
        self
    }

    /// Serves HTTP on `http` (or not at all with `None`) instead of binding
    /// from the `[http]` settings.
    pub fn http_listener(mut self, http: Option<std::net::TcpListener>) -> Builder {
        self.http = Some(http);
        self
    }

    /// Where each setting not from the defaults came from, for
    /// `/api/v1/broker`.
    pub fn sources(mut self, sources: Sources) -> Builder {
        self.sources = sources;
        self
    }

    /// Shuts down when `shutdown` completes, instead of on SIGINT or SIGTERM.
    pub fn shutdown(mut self, shutdown: impl Future<Output = ()> + 'static) -> Builder {
        self.shutdown = Some(Box::pin(shutdown));
        self
    }

    /// Runs the broker until it is told to stop, then shuts it down cleanly
    /// (see [`super::run`]). Must be called inside an actix `System`.
    ///
    /// # Errors
    ///
    /// An invalid or duplicate name, an enabled extension this builder does
    /// not know (`InvalidInput`, naming the ones it knows), an operation
    /// naming no custom actor; then as [`super::run`].
    pub async fn run(mut self) -> io::Result<()> {
        let enabled = self.settings.extensions.enabled.clone();
        let registry = std::mem::take(&mut self.registry);
        for name in &enabled {
            match registry.get(name) {
                Some(install) => self = install(self),
                None => {
                    let known: Vec<&str> = registry.keys().map(String::as_str).collect();
                    let known = if known.is_empty() { "none".into() } else { known.join(", ") };
                    self.errors.push(format!(
                        "extensions.enabled names `{name}`, which this binary does not have (it has: {known})"
                    ));
                }
            }
        }
        let actors: BTreeSet<&str> = self.actors.iter().map(|(name, _)| name.as_str()).collect();
        for (op, handler) in &self.ops {
            if let OpHandler::Actor(actor) = handler {
                if !actors.contains(actor.as_str()) {
                    self.errors.push(format!("operation `{op}` names custom actor `{actor}`, which is not registered"));
                }
            }
        }
        if !self.errors.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, self.errors.join("; ")));
        }
        for assignor in self.assignors.drain(..) {
            assignor::register(assignor).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        }
        let listener = match self.listener {
            Some(listener) => listener,
            None => {
                let address = format!("{}:{}", self.settings.server.host, self.settings.server.port);
                bind_client_listener(&address, self.settings.server.max_connections)?
            }
        };
        let http = match self.http {
            Some(http) => http,
            None => crate::http::bind(&self.settings.http)?,
        };
        let shutdown = self.shutdown.unwrap_or_else(|| Box::pin(shutdown_signal()));
        let extras = Extras { ops: self.ops, actors: self.actors };
        serve(listener, http, self.sources, self.settings, extras, shutdown).await
    }
}

/// Listens on `address` for clients, with a backlog of `max_connections`
/// (the standard library's is 128: a burst of connections past it would wait
/// for the client's SYN to be sent again, a second or more, instead of being
/// accepted at once). The system caps it at `net.core.somaxconn`.
///
/// # Errors
///
/// The address cannot be bound, naming it.
pub fn bind_client_listener(address: &str, max_connections: u32) -> io::Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind(address)
        .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {address}: {err}")))?;
    let backlog = libc::c_int::try_from(max_connections).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen on our own bound socket only changes its backlog (Linux
    // takes a second listen on a listening socket as exactly that).
    if unsafe { libc::listen(listener.as_raw_fd(), backlog) } != 0 {
        let err = io::Error::last_os_error();
        tracing::warn!(%err, backlog, "cannot widen the listen backlog; keeping the default");
    }
    Ok(listener)
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the broker with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Reads the TLS files again on each SIGHUP (see `security::tls`), for the
/// listener and, in a cluster, for the connections to the other brokers
/// (`peers`): new connections use them, open ones keep theirs; a reload that
/// fails is logged and changes nothing. Without TLS a SIGHUP is logged and
/// ignored.
pub(crate) async fn reload_on_sighup(
    tls: Option<std::sync::Arc<crate::security::tls::ServerTls>>,
    peers: Option<crate::cluster::Peers>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return tracing::error!("cannot install the SIGHUP handler; TLS files are not reloaded");
    };
    while hangup.recv().await.is_some() {
        match &tls {
            None => tracing::info!("SIGHUP received; no TLS files to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP received; TLS files reloaded: new connections use them"),
                Err(err) => {
                    tracing::error!(%err, "SIGHUP received; TLS reload failed, the files loaded before stay in use")
                }
            },
        }
        if let (Some(_), Some(peers)) = (&tls, &peers) {
            match peers.reload() {
                Ok(()) => tracing::info!("SIGHUP received; TLS files reloaded for connections to the other brokers"),
                Err(err) => tracing::error!(
                    %err,
                    "SIGHUP received; TLS reload for connections to the other brokers failed, the files loaded \
                     before stay in use"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Connections the listener has not accepted yet, completed by the
    /// system, up to `tries`: each connect waits at most 300 ms (a connect
    /// past a full backlog waits a second or more for its SYN to be resent).
    fn completed_connects(listener: &std::net::TcpListener, tries: usize) -> usize {
        let address = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..tries {
            match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
        held.len()
    }

    #[test]
    fn the_client_listener_queues_as_many_connections_as_max_connections() {
        let listener = super::bind_client_listener("127.0.0.1:0", 600).unwrap();
        assert_eq!(completed_connects(&listener, 500), 500, "500 connections wait in the backlog");
    }
}
