//! Turning a panic in a supervised actor's handler into a stop.
//!
//! An actix `Supervisor` restarts an actor that *stops*; a panic unwinds
//! through the supervisor itself and ends it, with every message queued for
//! the actor. So handlers of supervised actors run their bodies through
//! [`guard`]: a panic is caught, logged with the actor's name, and turned into
//! `ctx.stop()`, after which the supervisor calls `restarting` and the actor
//! rebuilds its state (from disk, for a group coordinator). A panic is still a
//! bug; this only keeps one from taking the rest of the broker down.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::{Actor, ActorContext, Context};

/// Runs `body`; on a panic, logs it, stops the actor and returns `None`.
pub fn guard<A, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    actor: &'static str,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Option<R>
where
    A: Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(|| body(act, ctx))) {
        Ok(result) => Some(result),
        Err(payload) => {
            tracing::error!(actor, panic = panic_message(payload.as_ref()), "handler panicked; restarting the actor");
            ctx.stop();
            None
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(not a string)"
    }
}
