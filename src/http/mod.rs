//! The HTTP listener: `/livez`, `/readyz`, Prometheus `/metrics`, the
//! read-only JSON admin API under `/api/v1/` and the web console under
//! `/console/` (docs/operations.md).
//!
//! Served by actix-web on one worker thread of its own (and actix-server's
//! accept thread), not on the arbiters that run connections and partitions:
//! a scrape or an API call never delays produce or fetch. Its handlers ask the
//! broker's actors with the messages the wire operations send, so the API and
//! the wire cannot disagree. It starts before the logs are recovered, so that
//! `/readyz` says what the broker is waiting for.
//!
//! Contract: [`start`] once per broker, inside the actix system; the returned
//! handle stops it at shutdown.

pub mod api;
pub mod console;
pub mod exposition;
pub mod get;
pub mod health;
pub mod metrics;
mod records;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use herald_actors::broker::Broker;
use herald_actors::group::Groups;

use crate::config::{HttpSettings, Settings, Sources};

/// The actors the handlers ask, once they exist (after recovery).
#[derive(Clone)]
pub struct Actors {
    pub broker: Addr<Broker>,
    pub groups: Addr<Groups>,
    /// The ACLs the admin API answers under, as `User:ANONYMOUS`.
    pub authorizer: std::sync::Arc<crate::security::authorizer::Authorizer>,
}

impl Actors {
    /// An HTTP request's standing: the anonymous principal, from no
    /// particular host (only entries for host `*` apply).
    pub fn access(&self) -> crate::security::authorizer::Access {
        crate::security::authorizer::Access {
            authorizer: self.authorizer.clone(),
            principal: crate::security::Principal::anonymous(),
            host: None,
        }
    }
}

/// What the handlers share with the broker.
pub struct HttpState {
    pub started: Instant,
    pub settings: Settings,
    /// Settings not from the defaults, with where they came from.
    pub sources: Sources,
    /// Set once every log is recovered and the actors are started.
    actors: OnceLock<Actors>,
    /// Set once the client listener accepts.
    accepting: AtomicBool,
    /// The client listener's bound address, once it accepts.
    client_address: OnceLock<SocketAddr>,
    /// Set when shutdown begins.
    stopping: AtomicBool,
}

impl HttpState {
    pub fn new(settings: Settings, sources: Sources) -> Arc<HttpState> {
        Arc::new(HttpState {
            started: Instant::now(),
            settings,
            sources,
            actors: OnceLock::new(),
            accepting: AtomicBool::new(false),
            client_address: OnceLock::new(),
            stopping: AtomicBool::new(false),
        })
    }

    /// Every log is recovered: the handlers may ask the actors.
    pub fn recovered(&self, actors: Actors) {
        let _ = self.actors.set(actors);
    }

    /// The client listener accepts connections on `address`.
    pub fn accepting(&self, address: SocketAddr) {
        let _ = self.client_address.set(address);
        self.accepting.store(true, Ordering::Release);
    }

    /// Where the client listener accepts, once it does.
    pub fn client_address(&self) -> Option<SocketAddr> {
        self.client_address.get().copied()
    }

    /// Shutdown began: no longer ready.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn actors(&self) -> Option<&Actors> {
        self.actors.get()
    }

    /// What the broker still waits for before it is ready; empty when ready.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.stopping.load(Ordering::Acquire) {
            missing.push("shutting_down");
        }
        if self.actors.get().is_none() {
            missing.push("log_recovery");
        }
        if !self.accepting.load(Ordering::Acquire) {
            missing.push("client_listener");
        }
        missing
    }
}

/// Binds the HTTP listener of `http`, if it is enabled.
///
/// # Errors
///
/// The address cannot be bound (a port in use): the error names it and the key.
pub fn bind(http: &HttpSettings) -> io::Result<Option<TcpListener>> {
    if !http.enabled {
        return Ok(None);
    }
    let address = format!("{}:{}", http.host, http.port);
    let listener = TcpListener::bind(&address).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot listen for HTTP on {address} (http.host, http.port): {err}; set http.port, or http.enabled = false"),
        )
    })?;
    Ok(Some(listener))
}

/// Starts serving `listener` on a worker thread of its own; must be called
/// inside an actix system. The server runs until the handle stops it.
///
/// # Errors
///
/// The listener cannot be used.
pub fn start(listener: TcpListener, state: Arc<HttpState>) -> io::Result<ServerHandle> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        if let Err(err) = server.await {
            tracing::error!(%err, "the HTTP listener stopped");
        }
    });
    Ok(handle)
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/livez", web::get().to(health::livez))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(exposition::metrics))
        .configure(api::routes)
        .configure(console::routes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_recovery_and_accepting_and_not_while_stopping() {
        let state = HttpState::new(Settings::default(), Sources::new());
        assert_eq!(state.missing(), ["log_recovery", "client_listener"]);
        state.accepting.store(true, Ordering::Release);
        assert_eq!(state.missing(), ["log_recovery"]);
        state.stopping();
        assert_eq!(state.missing(), ["shutting_down", "log_recovery"]);
    }
}
