//! Supervision helpers: a panicking handler stops its actor so the Supervisor restarts it.
//!
//! actix does not catch panics: one unwinding out of a handler kills the actor's
//! task together with its Supervisor. Handlers that may panic run their body
//! through [`guard`], which turns the panic into a stop; the `Supervisor` then
//! calls `restarting()` and resumes with the same actor struct, so work the
//! actor had accepted (its buffers) is kept.

use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::{ActorContext, Context};

use crate::error::ActorError;

/// Run `body`; on panic, log it, stop the actor (the supervisor restarts it) and return an error.
pub fn guard<A, R>(name: &'static str, ctx: &mut Context<A>, body: impl FnOnce() -> R) -> Result<R, ActorError>
where
    A: actix::Actor<Context = Context<A>>,
{
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => Ok(r),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(actor = name, panic = %what, "Actor handler panicked; restarting the actor.");
            ctx.stop();
            Err(ActorError::Unavailable(format!("{name} restarted after a panic")))
        }
    }
}
