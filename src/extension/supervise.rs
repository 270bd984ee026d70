//! Running a custom actor under a supervisor of the broker's own: the
//! [`Keeper`]. actix's `Supervisor` restarts an actor that stops, but a
//! panic unwinds its whole task, supervisor included; the keeper runs the
//! actor's context as a task of its own inside `catch_unwind`, so a panic in
//! a handler ends only that actor, and the keeper starts a new one from the
//! factory after a back-off: 50 ms, doubling to at most 10 s, back to 50 ms
//! once an actor has run for a minute. Each restart is logged at WARN with
//! the actor's name.
//!
//! The keeper is the stable address: operations served by the actor are sent
//! to it, and it forwards them to the actor of the moment; while there is
//! none (during the back-off) they are answered `EXTENSION_UNAVAILABLE`. A
//! request the actor was handling when it panicked gets the same error.
//! At shutdown ([`StopKeeper`]) the actor gets [`Stop`] and is not restarted.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::FutureExt;

use super::ops::unavailable;
use super::{CustomError, CustomRequest, ExtensionContext, Stop};

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An actor that ran this long resets the back-off.
const STEADY: Duration = Duration::from_secs(60);

/// Makes a custom actor; called again at each restart.
pub(crate) type Factory<A> = Box<dyn Fn(ExtensionContext) -> A>;

/// The supervisor of one custom actor.
pub(crate) struct Keeper<A: Actor<Context = Context<A>>> {
    name: String,
    factory: Factory<A>,
    context: ExtensionContext,
    current: Option<Addr<A>>,
    /// Tells an ended actor's report from the current one's.
    generation: u64,
    started_at: Instant,
    backoff: Duration,
    stopping: bool,
}

/// Starts `factory`'s actor under a keeper; returns the keeper's handles:
/// requests for its operations, and the shutdown message.
pub(crate) fn start_keeper<A>(
    name: String,
    factory: Factory<A>,
    context: ExtensionContext,
) -> (Recipient<CustomRequest>, Recipient<StopKeeper>)
where
    A: Actor<Context = Context<A>> + Handler<CustomRequest> + Handler<Stop>,
{
    let keeper = Keeper {
        name,
        factory,
        context,
        current: None,
        generation: 0,
        started_at: Instant::now(),
        backoff: FIRST_BACKOFF,
        stopping: false,
    }
    .start();
    (keeper.clone().recipient(), keeper.recipient())
}

impl<A: Actor<Context = Context<A>>> Keeper<A> {
    fn start_actor(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        self.started_at = Instant::now();
        let (generation, keeper) = (self.generation, ctx.address());
        let made = std::panic::catch_unwind(AssertUnwindSafe(|| (self.factory)(self.context.clone())));
        let actor = match made {
            Ok(actor) => actor,
            Err(_) => return self.ended(generation, "its factory panicked", ctx),
        };
        let context = Context::<A>::new();
        self.current = Some(context.address());
        let running = AssertUnwindSafe(context.into_future(actor)).catch_unwind();
        actix_rt::spawn(async move {
            let why = match running.await {
                Ok(()) => "it stopped",
                Err(_) => "a handler panicked",
            };
            keeper.do_send(Ended { generation, why });
        });
        tracing::info!(actor = %self.name, "custom actor started");
    }

    fn ended(&mut self, generation: u64, why: &'static str, ctx: &mut Context<Self>) {
        if generation != self.generation || self.stopping {
            return;
        }
        self.current = None;
        if self.started_at.elapsed() >= STEADY {
            self.backoff = FIRST_BACKOFF;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tracing::warn!(actor = %self.name, reason = why, restart_in_ms = delay.as_millis() as u64, "custom actor ended; restarting");
        ctx.run_later(delay, |act, ctx| {
            if !act.stopping {
                act.start_actor(ctx);
            }
        });
    }
}

impl<A: Actor<Context = Context<A>>> Actor for Keeper<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_actor(ctx);
    }
}

/// The actor of `generation` ended, for the reason given.
#[derive(Message)]
#[rtype(result = "()")]
struct Ended {
    generation: u64,
    why: &'static str,
}

impl<A: Actor<Context = Context<A>>> Handler<Ended> for Keeper<A> {
    type Result = ();

    fn handle(&mut self, ended: Ended, ctx: &mut Context<Self>) {
        self.ended(ended.generation, ended.why, ctx);
    }
}

impl<A> Handler<CustomRequest> for Keeper<A>
where
    A: Actor<Context = Context<A>> + Handler<CustomRequest>,
{
    type Result = ResponseFuture<Result<bytes::Bytes, CustomError>>;

    fn handle(&mut self, request: CustomRequest, _: &mut Context<Self>) -> Self::Result {
        let op = request.op.clone();
        let Some(actor) = self.current.clone() else {
            let error = unavailable(&op, &format!("custom actor `{}` is restarting", self.name));
            return Box::pin(async move { Err(error) });
        };
        let name = self.name.clone();
        // Forwarded now, so the actor gets requests in the keeper's order.
        let sent = actor.send(request);
        Box::pin(async move {
            match sent.await {
                Ok(answer) => answer,
                Err(_) => Err(unavailable(&op, &format!("custom actor `{name}` ended while handling it"))),
            }
        })
    }
}

/// Shutdown: the actor gets [`Stop`] (waited for at most `timeout`) and is
/// not restarted; then the keeper stops.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopKeeper {
    pub timeout: Duration,
}

impl<A> Handler<StopKeeper> for Keeper<A>
where
    A: Actor<Context = Context<A>> + Handler<Stop>,
{
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, stop: StopKeeper, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let actor = self.current.take();
        let name = self.name.clone();
        let stopped = async move {
            let Some(actor) = actor else { return };
            match actor.send(Stop).timeout(stop.timeout).await {
                Ok(()) => tracing::info!(actor = %name, "custom actor stopped"),
                Err(err) => tracing::warn!(actor = %name, %err, "custom actor did not answer Stop"),
            }
        };
        Box::pin(stopped.into_actor(self).map(|(), _, ctx| ctx.stop()))
    }
}
