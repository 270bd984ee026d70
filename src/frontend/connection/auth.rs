//! A connection's authentication (`authenticate`, SCRAM-SHA-256) and the
//! operations on SCRAM users (`create_user`, `delete_user`, `list_users`).
//!
//! Rules (docs/protocol.md, "Authentication"):
//! - Two `authenticate` round trips: client-first, then client-final. On
//!   success the connection's principal becomes `User:<name>`.
//! - A mechanism the broker does not offer: `UNSUPPORTED_SASL_MECHANISM`
//!   and the connection closes. A message out of order (a final message
//!   first, a second first message, authenticating again after success):
//!   `ILLEGAL_SASL_STATE` and it closes.
//! - Any other failure (a malformed message, a nonce that is not this
//!   exchange's, a wrong proof, an unknown name): `SASL_AUTHENTICATION_FAILED`
//!   after `auth_failure_delay_ms`, then it closes. The delay is a timer on
//!   the connection, not a sleep: the event loop serves other connections
//!   meanwhile; requests this connection sends in the meantime are dropped.
//!   Failures are counted (`herald_rejected_frames_total{reason="authentication"}`)
//!   and logged at most once a second across the broker.
//! - With `authentication = "required"`, any request but `handshake` and
//!   `authenticate` before success: `SASL_AUTHENTICATION_FAILED` and it
//!   closes, at once. A connection whose principal is not anonymous (a
//!   verified TLS client certificate) counts as authenticated.

use std::sync::Mutex;

use actix::{AsyncContext, Context};
use herald_actors::error::{BrokerError, ErrorCode};

use super::{Admission, Connection};
use crate::http::metrics;
use crate::log_throttle::Throttle;
use crate::protocol::{self, *};
use crate::security::scram::{self, Exchange, Failure};
use crate::security::users_store::UserChange;

/// Authentication failures logged: at most one line per second across the
/// broker, so a guessing client cannot flood the log (the metric counts
/// every failure).
static FAILURES_LOGGED: Mutex<Throttle> = Mutex::new(Throttle::new());

/// `Some(failures suppressed since the last line)` if this one may be logged.
fn failure_log_allowed() -> Option<u64> {
    FAILURES_LOGGED.lock().ok()?.allow()
}

/// Where a connection is in its authentication.
#[derive(Debug, Default)]
pub(super) enum AuthState {
    /// No exchange started.
    #[default]
    None,
    /// The server-first message was sent; the client-final is awaited.
    Exchanging(Box<Exchange>),
    /// Authenticated: a new exchange is out of order.
    Done,
    /// Failed: the error goes out after the delay, and the connection closes.
    Failed,
}

impl Connection {
    /// Whether the request may go on: the gate of `authentication =
    /// "required"`, and the silence of a connection whose failure is pending.
    /// Answers (and closes) when it may not.
    pub(super) fn admitted(&mut self, correlation_id: u32, request: &Request) -> bool {
        if matches!(self.auth_state, AuthState::Failed) {
            return false;
        }
        let authenticated = self.tls_authenticated || !self.principal.is_anonymous();
        if !self.auth.required || authenticated || matches!(request, Request::Handshake(_) | Request::Authenticate(_)) {
            return true;
        }
        metrics::rejected(metrics::Rejected::Authentication);
        if let Some(suppressed) = failure_log_allowed() {
            tracing::warn!(client_id = self.client_id(), peer = %self.peer, op = request.op(), suppressed, "refused: authentication required");
        }
        let error = BrokerError::new(
            ErrorCode::SASL_AUTHENTICATION_FAILED,
            format!("`{}` before authentication: this listener requires clients to authenticate", request.op()),
        );
        self.fail_and_close(correlation_id, &error);
        false
    }

    pub(super) fn authenticate(&mut self, correlation_id: u32, request: AuthenticateRequest, ctx: &mut Context<Self>) {
        if !self.auth.mechanisms.contains(&request.mechanism) {
            let offered = if self.auth.mechanisms.is_empty() { "none".into() } else { self.auth.mechanisms.join(", ") };
            let error = BrokerError::new(
                ErrorCode::UNSUPPORTED_SASL_MECHANISM,
                format!("mechanism `{}` is not offered (offered: {offered})", request.mechanism),
            );
            return self.refuse_exchange(correlation_id, &error);
        }
        let message = &request.auth_bytes[..];
        let out_of_order = |what: &str| BrokerError::new(ErrorCode::ILLEGAL_SASL_STATE, what.to_owned());
        match std::mem::take(&mut self.auth_state) {
            AuthState::None if !scram::is_client_first(message) => {
                self.refuse_exchange(correlation_id, &out_of_order("a client-final message before the client-first"));
            }
            AuthState::None => match scram::start(&self.auth.users.snapshot(), message) {
                Ok((exchange, server_first)) => {
                    self.auth_state = AuthState::Exchanging(Box::new(exchange));
                    self.answer_authenticate(correlation_id, server_first, None);
                }
                Err(failure) => self.fail_authentication(correlation_id, None, &failure, ctx),
            },
            AuthState::Exchanging(_) if scram::is_client_first(message) => {
                self.refuse_exchange(correlation_id, &out_of_order("a second client-first message"));
            }
            AuthState::Exchanging(exchange) => {
                let user = exchange.user().to_owned();
                match exchange.finish(message) {
                    Ok((principal, server_final)) => {
                        tracing::info!(client_id = self.client_id(), peer = %self.peer, %principal, "authenticated");
                        let name = principal.to_string();
                        self.principal = principal;
                        self.auth_state = AuthState::Done;
                        self.answer_authenticate(correlation_id, server_final, Some(name));
                    }
                    Err(failure) => self.fail_authentication(correlation_id, Some(&user), &failure, ctx),
                }
            }
            AuthState::Done => {
                self.auth_state = AuthState::Done;
                self.refuse_exchange(correlation_id, &out_of_order("this connection has already authenticated"));
            }
            AuthState::Failed => self.auth_state = AuthState::Failed,
        }
    }

    /// Answers an `authenticate` that cannot go on (33, 34), and closes.
    fn refuse_exchange(&mut self, correlation_id: u32, error: &BrokerError) {
        metrics::rejected(metrics::Rejected::Authentication);
        self.fail_and_close(correlation_id, error);
    }

    fn answer_authenticate(&mut self, correlation_id: u32, message: String, principal: Option<String>) {
        let complete = principal.is_some();
        let response = AuthenticateResponse { auth_bytes: message.into_bytes().into(), complete, principal };
        self.writer.write(protocol::encode_ok(correlation_id, &response));
    }

    /// Answers `SASL_AUTHENTICATION_FAILED` after the delay, then closes.
    fn fail_authentication(
        &mut self,
        correlation_id: u32,
        user: Option<&str>,
        failure: &Failure,
        ctx: &mut Context<Self>,
    ) {
        metrics::rejected(metrics::Rejected::Authentication);
        if let Some(suppressed) = failure_log_allowed() {
            tracing::warn!(client_id = self.client_id(), peer = %self.peer, user, reason = ?failure, suppressed, "authentication failed");
        }
        self.auth_state = AuthState::Failed;
        let error = BrokerError::new(ErrorCode::SASL_AUTHENTICATION_FAILED, failure.message());
        ctx.run_later(self.auth.failure_delay, move |act, _| act.fail_and_close(correlation_id, &error));
    }

    /// `create_user`, `delete_user`, `list_users` (checked against the ACLs
    /// before dispatch: `alter` on the cluster for the changes, `describe` for
    /// the list).
    pub(super) fn users_op(
        &mut self,
        correlation_id: u32,
        request: Request,
        permit: Admission,
        ctx: &mut Context<Self>,
    ) {
        let users = self.auth.users.clone();
        let change = match request {
            Request::ListUsers => {
                let users = users.snapshot().summaries();
                return self.respond(correlation_id, permit, async move { Ok(Some(ListUsersResponse { users })) }, ctx);
            }
            Request::CreateUser(r) => UserChange::Upsert {
                user: r.user,
                mechanism: r.mechanism,
                iterations: r.iterations,
                salt: r.salt,
                salted_password: r.salted_password,
            },
            Request::DeleteUser(r) => UserChange::Delete { user: r.user },
            other => {
                let error = BrokerError::new(
                    ErrorCode::UNKNOWN_OPERATION,
                    format!("`{}` is not a users operation", other.op()),
                );
                return self.send_error(correlation_id, &error);
            }
        };
        self.respond(correlation_id, permit, async move { users.change(change).await.map(|()| Some(Empty {})) }, ctx);
    }
}
