//! The requests a [`Connection`] has in flight, the two budgets that bound
//! them, and how the connection drains at shutdown.
//!
//! - **Read-ahead**: the reader task holds one permit of a `max_in_flight`
//!   semaphore for each request it has read, and stops reading while none is
//!   free. A request's permit is given back when its response is written.
//! - **Held requests**: a request the broker may hold waiting for an event (a
//!   fetch with `min_bytes` and `max_wait_ms` above 0, a heartbeat with
//!   `max_wait_ms` above 0) gives its permit back as soon as it is dispatched
//!   and counts against `max_held_requests` instead: hundreds of long polls
//!   must not stop the connection's other requests (a member's own heartbeat,
//!   say) from being read. Past that bound a held request keeps its permit,
//!   so the broker stops reading: back-pressure, never unbounded memory.
//! - **Held fetches' room**: a long poll reserves its response room while
//!   parked, from the held share of the connection's bytes (see the `budget`
//!   module); one that does not fit is answered at once, as if its
//!   `max_wait_ms` were 0 ([`Connection::park_only_within_room`]).
//! - **Shutdown** ([`Drain`]): each held request is cancelled and answered
//!   `BROKER_SHUTTING_DOWN` at once; requests read after it get the same
//!   answer (see `handle_request`); work in progress (an append waiting for its
//!   fsync) completes and is answered; the connection closes once nothing is
//!   in flight.
//!
//! Held requests wait in one [`FuturesUnordered`] that the context polls as a
//! single item ([`HeldAnswers`]), not as one spawned future each: actix polls
//! every spawned future of a context whenever the actor is woken, which would
//! make every request of a connection cost as much as its held ones. Each is
//! tracked by a key of the connection's own rather than by correlation id
//! alone (a client may reuse an id, and each request must still be answered
//! exactly once), with an [`AbortHandle`] to cancel it at shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};

use actix::prelude::*;

use super::budget::Admission;
use futures::future::{AbortHandle, Abortable, Aborted, LocalBoxFuture};
use futures::stream::{FuturesUnordered, StreamExt};
use herald_actors::error::{BrokerError, ErrorCode};

use super::fetch::ResponseBody;
use super::Connection;
use crate::http::metrics;
use crate::protocol::{self, FetchRequest, Request};
use crate::security::quota::Usage;

/// Whether the broker may hold `request` waiting for data or for a change of
/// assignment, rather than answer it as soon as its work is done.
fn may_be_held(request: &Request) -> bool {
    match request {
        Request::Fetch(r) => fetch_may_be_held(r),
        Request::Heartbeat(r) => r.max_wait_ms > 0,
        _ => false,
    }
}

/// Whether the broker may hold a fetch until data arrives.
pub(super) fn fetch_may_be_held(r: &protocol::FetchRequest) -> bool {
    r.min_bytes > 0 && r.max_wait_ms > 0
}

/// What a held request does on the connection once its work is done.
type Answer = Box<dyn FnOnce(&mut Connection, &mut Context<Connection>)>;

/// The requests of one connection whose response is not written yet.
#[derive(Default)]
pub(super) struct InFlight {
    /// Every request dispatched and not answered, held ones included.
    count: usize,
    /// Held requests, by key, in dispatch order.
    held: BTreeMap<u64, Held>,
    /// The work of the held requests.
    waiting: FuturesUnordered<Abortable<LocalBoxFuture<'static, Answer>>>,
    /// Wakes [`HeldAnswers`] when a held request is added; `None` until it
    /// has been spawned and polled once.
    answers_waker: Option<Waker>,
    answers_spawned: bool,
    next_key: u64,
    /// Held requests that gave their read-ahead permit back; at most
    /// `max_held_requests`.
    released: usize,
    /// The correlation id of the request being dispatched, if it may be held.
    dispatching_held: Option<u32>,
    /// The request being dispatched, counted and timed for `/metrics`.
    dispatching_timing: Option<metrics::Timing>,
}

/// A request the broker may hold.
struct Held {
    correlation_id: u32,
    /// Cancels its work (at shutdown).
    abort: AbortHandle,
    /// Its read-ahead permit, kept only when `max_held_requests` was reached;
    /// given back when the entry is dropped.
    permit: Option<Admission>,
}

impl InFlight {
    /// Notes the request about to be dispatched, so that
    /// [`Connection::respond_with`] knows whether it may be held. Dispatch
    /// handles one request at a time (a lookup on the way uses `ctx.wait`), so
    /// the note cannot be taken by another request.
    pub(super) fn dispatching(&mut self, correlation_id: u32, request: &Request) {
        self.dispatching_held = may_be_held(request).then_some(correlation_id);
        self.dispatching_timing = metrics::request_started(request.op());
    }

    /// Whether nothing is waiting for its response.
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets a held request (answered or cancelled); `None` if it was
    /// already forgotten.
    fn forget_held(&mut self, key: u64) -> Option<Held> {
        let held = self.held.remove(&key)?;
        self.count -= 1;
        if held.permit.is_none() {
            self.released -= 1;
        }
        Some(held)
    }
}

impl Connection {
    /// The response room a fetch reserves: its `max_bytes`, capped so that
    /// the response fits a frame.
    pub(super) fn fetch_room(&self, fetch: &FetchRequest) -> usize {
        (fetch.max_bytes as usize).min(self.limits.max_frame_bytes.saturating_sub(1024))
    }

    /// A long poll is parked only if its response room fits in what is left
    /// of the held share (half of `max_connection_bytes`); otherwise it is
    /// answered at once with what is there, so that parked polls completing
    /// together cannot pass the connection's bound, and the other half stays
    /// for the connection's other requests, which are read meanwhile.
    pub(super) fn park_only_within_room(&self, fetch: &mut FetchRequest) {
        if fetch_may_be_held(fetch) && self.held_room.room() < self.fetch_room(fetch) {
            fetch.max_wait_ms = 0;
        }
    }

    /// Starts `work` and writes its response when it completes.
    pub(super) fn respond<F, T>(&mut self, correlation_id: u32, permit: Admission, work: F, ctx: &mut Context<Self>)
    where
        F: Future<Output = Result<Option<T>, BrokerError>> + 'static,
        T: ResponseBody + 'static,
    {
        self.respond_with(correlation_id, permit, work, |_, result, _| result, ctx);
    }

    /// As [`Connection::respond`], with `finish` run on the actor before the
    /// response is written. The request's permit is given back then, unless
    /// the request may be held (see the module documentation).
    pub(super) fn respond_with<F, R, T, G>(
        &mut self,
        correlation_id: u32,
        permit: Admission,
        work: F,
        finish: G,
        ctx: &mut Context<Self>,
    ) where
        F: Future<Output = R> + 'static,
        R: 'static,
        G: FnOnce(&mut Self, R, &mut Context<Self>) -> Result<Option<T>, BrokerError> + 'static,
        T: ResponseBody + 'static,
    {
        self.in_flight.count += 1;
        let timing = self.in_flight.dispatching_timing.take();
        if self.in_flight.dispatching_held.take() != Some(correlation_id) {
            ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
                act.in_flight.count -= 1;
                let answer = finish(act, result, ctx);
                metrics::request_done(timing, answer.as_ref().err().map(|e| e.code));
                act.write_answer(correlation_id, answer);
                drop(permit);
            }));
            return;
        }
        let in_flight = &mut self.in_flight;
        in_flight.next_key += 1;
        let key = in_flight.next_key;
        let permit = if in_flight.released < self.limits.max_held_requests {
            in_flight.released += 1;
            drop(permit);
            None
        } else {
            Some(permit)
        };
        let (abort, registration) = AbortHandle::new_pair();
        let answer = async move {
            let result = work.await;
            Box::new(move |act: &mut Connection, ctx: &mut Context<Connection>| {
                // A request cancelled at shutdown was answered then.
                if act.in_flight.forget_held(key).is_some() {
                    let answer = finish(act, result, ctx);
                    metrics::request_done(timing, answer.as_ref().err().map(|e| e.code));
                    act.write_answer(correlation_id, answer);
                }
            }) as Answer
        };
        in_flight.waiting.push(Abortable::new(Box::pin(answer), registration));
        in_flight.held.insert(key, Held { correlation_id, abort, permit });
        if let Some(waker) = &in_flight.answers_waker {
            waker.wake_by_ref();
        }
        if !in_flight.answers_spawned {
            in_flight.answers_spawned = true;
            ctx.spawn(HeldAnswers);
        }
    }

    /// Writes a request's response; closes the connection if it was the last
    /// one a draining connection waited for.
    fn write_answer<T: ResponseBody>(&mut self, correlation_id: u32, answer: Result<Option<T>, BrokerError>) {
        match answer {
            Ok(Some(body)) => {
                let fetched = body.fetched_bytes();
                if fetched > 0 {
                    self.count_usage(Usage { fetch_bytes: fetched as u64, ..Usage::default() });
                }
                let throttle = self.throttle_of(correlation_id);
                self.writer.write(body.frame(correlation_id, throttle))
            }
            Ok(None) => {}
            Err(error) => self.send_error(correlation_id, &error),
        }
        if self.draining && self.in_flight.is_empty() {
            self.writer.close();
        }
    }

    /// Stops taking requests and closes once every in-flight response has been
    /// written; the writer's `finished` then stops the actor.
    pub(super) fn close_when_idle(&mut self) {
        self.draining = true;
        if self.in_flight.is_empty() {
            self.writer.close();
        }
    }
}

/// Runs the answers of held requests on the connection as their work
/// completes. Spawned once per connection, with the first held request; it
/// never ends (the connection stops it by stopping).
struct HeldAnswers;

impl ActorFuture<Connection> for HeldAnswers {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection,
        ctx: &mut Context<Connection>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        loop {
            match act.in_flight.waiting.poll_next_unpin(task) {
                Poll::Ready(Some(Ok(answer))) => answer(act, ctx),
                Poll::Ready(Some(Err(Aborted))) => {}
                // Empty, or every held request still waiting: a new one wakes
                // this through `answers_waker`.
                Poll::Ready(None) | Poll::Pending => {
                    act.in_flight.answers_waker = Some(task.waker().clone());
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Shutdown: answer held requests with `BROKER_SHUTTING_DOWN` now, refuse new
/// ones, and close once the requests under way are answered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for Connection {
    type Result = ();

    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.draining = true;
        let error = BrokerError::new(ErrorCode::BROKER_SHUTTING_DOWN, "the broker is shutting down");
        let keys: Vec<u64> = self.in_flight.held.keys().copied().collect();
        for key in keys {
            if let Some(held) = self.in_flight.forget_held(key) {
                held.abort.abort();
                self.send_error(held.correlation_id, &error);
            }
        }
        self.close_when_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FetchRequest, HeartbeatRequest};

    fn fetch(min_bytes: u64, max_wait_ms: u64) -> Request {
        Request::Fetch(FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            max_bytes: 1024,
            min_bytes,
            max_wait_ms,
        })
    }

    fn heartbeat(max_wait_ms: u64) -> Request {
        Request::Heartbeat(HeartbeatRequest {
            group_id: "g".into(),
            member_id: "m".into(),
            generation_id: 1,
            owned: Vec::new(),
            topics: None,
            max_wait_ms,
        })
    }

    #[test]
    fn only_requests_that_may_wait_are_held() {
        assert!(may_be_held(&fetch(1, 500)));
        assert!(!may_be_held(&fetch(0, 500)), "answered at once with min_bytes 0");
        assert!(!may_be_held(&fetch(1, 0)), "answered at once with max_wait_ms 0");
        assert!(may_be_held(&heartbeat(500)));
        assert!(!may_be_held(&heartbeat(0)));
        assert!(!may_be_held(&Request::ListTopics));
    }
}
