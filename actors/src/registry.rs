//! ThreadRegistry: finds or starts the ThreadActor of a thread, restoring it from storage.

use std::collections::HashMap;

use actix::prelude::*;
use tally_domain::Money;
use uuid::Uuid;

use crate::error::ActorError;
use crate::thread::{ThreadActor, ThreadDeps};

/// Query: the actor of a thread (started from storage if it is not running).
#[derive(Message, Debug)]
#[rtype(result = "Result<Addr<ThreadActor>, ActorError>")]
pub struct OpenThread {
    /// Thread id.
    pub thread_id: Uuid,
}

/// Keeps one ThreadActor per active thread.
pub struct ThreadRegistry {
    threads: HashMap<Uuid, Addr<ThreadActor>>,
    deps: ThreadDeps,
}

impl ThreadRegistry {
    /// An empty registry.
    pub fn new(deps: ThreadDeps) -> Self {
        ThreadRegistry { threads: HashMap::new(), deps }
    }
}

impl Actor for ThreadRegistry {
    type Context = Context<Self>;
}

impl Supervised for ThreadRegistry {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("ThreadRegistry restarting.");
    }
}

impl Handler<OpenThread> for ThreadRegistry {
    // Atomic so that two concurrent opens of one thread cannot start two actors.
    type Result = AtomicResponse<Self, Result<Addr<ThreadActor>, ActorError>>;

    fn handle(&mut self, msg: OpenThread, _ctx: &mut Context<Self>) -> Self::Result {
        self.threads.retain(|_, addr| addr.connected());
        if let Some(addr) = self.threads.get(&msg.thread_id) {
            let addr = addr.clone();
            return AtomicResponse::new(Box::pin(actix::fut::ready(Ok(addr))));
        }
        let store = self.deps.store.clone();
        let id = msg.thread_id;
        let load = async move {
            tokio::task::spawn_blocking(move || {
                let thread = store.get_thread(id)?.ok_or_else(|| ActorError::NotFound(format!("thread {id}")))?;
                let stored = store.thread_messages(id)?;
                let total: Money = stored.iter().filter_map(|m| m.cost.as_ref()).map(|c| c.total).sum();
                let history = stored.into_iter().map(|m| m.message).collect::<Vec<_>>();
                Ok::<_, ActorError>((thread, history, total))
            })
            .await
            .map_err(|e| ActorError::Unavailable(format!("thread load task failed: {e}")))?
        };
        AtomicResponse::new(Box::pin(load.into_actor(self).map(move |res, act, _ctx| {
            let (thread, history, total) = res?;
            tracing::debug!(thread.id = %id, messages = history.len(), "Thread actor started from storage.");
            let addr = ThreadActor::new(thread, history, total, act.deps.clone()).start();
            act.threads.insert(id, addr.clone());
            Ok(addr)
        })))
    }
}
