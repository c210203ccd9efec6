//! PersisterActor: batches writes into one transaction per batch and answers only after commit.
//!
//! Writes are buffered and flushed when `max_ops` are waiting or `flush_interval`
//! has passed since the first one arrived, whichever comes first. One flush runs
//! at a time, so batches commit in arrival order. Each caller is answered with
//! its own share of the batch outcome once the transaction has committed. The
//! flush itself runs detached from the actor (on the blocking pool) and answers
//! callers directly, so a restart of the actor never loses an answer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tally_observability::TraceContext;
use tally_store::cache::{keys, Cache};
use tally_store::{BatchOutcome, Store, StoreError, WriteOp};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::ActorError;
use crate::supervise::guard;

/// Flush when this many write operations are waiting.
pub const DEFAULT_MAX_BATCH_OPS: usize = 2_000;
/// Flush at most this long after the first waiting write arrived.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(5);

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct PersisterConfig {
    /// Flush when this many operations wait.
    pub max_ops: usize,
    /// Flush this long after the first waiting operation.
    pub flush_interval: Duration,
}

impl Default for PersisterConfig {
    fn default() -> Self {
        PersisterConfig { max_ops: DEFAULT_MAX_BATCH_OPS, flush_interval: DEFAULT_FLUSH_INTERVAL }
    }
}

/// Command: persist these writes; answered after the batch holding them commits.
#[derive(Message)]
#[rtype(result = "Result<BatchOutcome, ActorError>")]
pub struct Persist {
    /// The writes (idempotent on message and event ids).
    pub ops: Vec<WriteOp>,
    /// Trace context of the sender: the batch span links to it, and a commit span joins its trace.
    pub trace: TraceContext,
}

/// Command: flush everything accepted so far; answered once it is durable.
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<(), ActorError>")]
pub struct FlushBatch;

/// Command (fault injection for tests and drills): panic inside the handler.
/// The actor restarts under its supervisor and keeps the writes it had accepted.
#[derive(Message, Debug, Default)]
#[rtype(result = "Result<(), ActorError>")]
pub struct InjectPanic;

/// Event (internal): a detached flush finished.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushDone;

struct Pending {
    ops: Vec<WriteOp>,
    trace: TraceContext,
    reply: oneshot::Sender<Result<BatchOutcome, ActorError>>,
}

/// The batching writer in front of the store.
pub struct PersisterActor {
    store: Store,
    cache: Option<Cache>,
    config: PersisterConfig,
    pending: Vec<Pending>,
    pending_ops: usize,
    flushing: bool,
    timer: Option<SpawnHandle>,
}

impl PersisterActor {
    /// A persister writing to `store`.
    pub fn new(store: Store, config: PersisterConfig) -> Self {
        PersisterActor { store, cache: None, config, pending: Vec::new(), pending_ops: 0, flushing: false, timer: None }
    }

    /// Invalidate cached reads (thread history, totals, user metrics) after each commit.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_none() && !self.pending.is_empty() {
            self.timer = Some(ctx.run_later(self.config.flush_interval, |act, ctx| {
                act.timer = None;
                act.flush(ctx);
            }));
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing || self.pending.is_empty() {
            return;
        }
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.flushing = true;
        let batch = std::mem::take(&mut self.pending);
        self.pending_ops = 0;
        let store = self.store.clone();
        let cache = self.cache.clone();
        let me = ctx.address();
        actix::spawn(async move {
            let started = Instant::now();
            let ops_count: usize = batch.iter().map(|p| p.ops.len()).sum();
            if let Err(e) = tokio::task::spawn_blocking(move || write_and_answer(&store, cache.as_ref(), batch)).await {
                // The blocking task panicked: its callers' senders were dropped, so they see
                // `Unavailable` and nothing was acknowledged that is not durable.
                tracing::error!(error = %e, "Persister batch task failed.");
            }
            tracing::debug!(batch.ops = ops_count, duration_ms = started.elapsed().as_millis() as u64, "Batch flushed.");
            me.do_send(FlushDone);
        });
    }
}

/// Write a batch in one transaction and answer every caller with its share. If
/// the whole batch fails, each caller's writes are retried on their own so one
/// bad write cannot fail the others.
fn write_and_answer(store: &Store, cache: Option<&Cache>, mut batch: Vec<Pending>) {
    // Move (not clone) every caller's ops into one slice; each caller keeps its range.
    let mut all: Vec<WriteOp> = Vec::with_capacity(batch.iter().map(|p| p.ops.len()).sum());
    let mut ranges = Vec::with_capacity(batch.len());
    for p in &mut batch {
        let start = all.len();
        all.append(&mut p.ops);
        ranges.push(start..all.len());
    }
    let batch_id = tally_domain::new_id();
    let span = tracing::info_span!("persister.flush", batch.id = %batch_id, batch.rows = all.len(), batch.callers = batch.len());
    for p in &batch {
        p.trace.link_to(&span);
    }
    let _entered = span.enter();
    let started = Instant::now();
    let result = write_with_retry(store, &all);
    match &result {
        Ok(_) => tally_observability::metrics::batch_flushed(all.len(), started.elapsed()),
        Err(_) => tally_observability::metrics::batch_flush_failed(),
    }
    // One commit span per caller, in the caller's own trace, naming the shared batch.
    for (p, range) in batch.iter().zip(&ranges) {
        if !p.trace.is_empty() {
            let commit = tracing::info_span!(parent: None, "persister.commit", batch.id = %batch_id, batch.rows = all.len(), ops = range.len(), ok = result.is_ok());
            p.trace.attach(&commit);
            commit.in_scope(|| {});
        }
    }
    if let (Some(cache), Ok(outcome)) = (cache, &result) {
        invalidate(cache, &all, outcome);
    }
    match result {
        Ok(outcome) => {
            let mut shares = Shares::of(&outcome);
            for (p, range) in batch.into_iter().zip(ranges) {
                let share = shares.take(&all[range]);
                let _ = p.reply.send(Ok(share));
            }
        }
        Err(e) if batch.len() == 1 => {
            for p in batch {
                let _ = p.reply.send(Err(e.clone().into()));
            }
        }
        Err(_) => {
            for (p, range) in batch.into_iter().zip(ranges) {
                let ops = &all[range];
                let result = write_with_retry(store, ops);
                if let (Some(cache), Ok(outcome)) = (cache, &result) {
                    invalidate(cache, ops, outcome);
                }
                let _ = p.reply.send(result.map_err(ActorError::from));
            }
        }
    }
}

/// Drop cached reads that the committed writes made stale. Runs before callers are
/// answered, so a caller that reads right after its write never sees the old value.
fn invalidate(cache: &Cache, ops: &[WriteOp], outcome: &BatchOutcome) {
    let inserted: HashSet<Uuid> = outcome.inserted_messages.iter().chain(outcome.inserted_events.iter()).copied().collect();
    let mut threads = HashSet::new();
    let mut users = HashSet::new();
    for op in ops {
        let (id, thread, user) = match op {
            WriteOp::Message(m) => (m.message_id, Some(m.thread_id), &m.user_id),
            WriteOp::Usage(u) => (u.event_id, u.thread_id, &u.user_id),
            // Written with its usage event, whose invalidation covers the user.
            WriteOp::Gateway(_) => continue,
        };
        if !inserted.contains(&id) {
            continue;
        }
        match thread {
            Some(t) => {
                threads.insert((t, user.clone()));
            }
            None => {
                users.insert(user.clone());
            }
        }
    }
    // One call for the whole batch: with Redis, one pipelined round trip, not one per key.
    let mut stale: Vec<String> = threads.iter().flat_map(|(t, u)| keys::thread_keys(*t, u)).collect();
    stale.extend(users.iter().map(|u| keys::user_metrics(u)));
    cache.delete_many(&stale);
}

/// Attempts for a batch that fails with a retryable storage error (busy, pool timeout).
const WRITE_ATTEMPTS: u32 = 3;
/// Pause before the first retry; doubled each time.
const WRITE_RETRY_PAUSE: Duration = Duration::from_millis(20);

fn write_with_retry(store: &Store, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
    let mut pause = WRITE_RETRY_PAUSE;
    let mut attempt = 1;
    loop {
        match store.write_batch(ops) {
            Err(e) if e.is_retryable() && attempt < WRITE_ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "Batch write failed; retrying.");
                std::thread::sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The batch's outcome split among its callers in time linear in the batch size. The
/// store reports an id written twice in one batch once as inserted and then as a
/// duplicate; likewise the first caller (in batch order) that wrote a newly inserted id
/// gets "inserted" and every later one "duplicate".
struct Shares {
    /// Newly inserted ids not yet handed to a caller.
    messages: HashSet<Uuid>,
    events: HashSet<Uuid>,
}

impl Shares {
    fn of(outcome: &BatchOutcome) -> Self {
        Shares {
            messages: outcome.inserted_messages.iter().copied().collect(),
            events: outcome.inserted_events.iter().copied().collect(),
        }
    }

    /// The outcome of one caller's ops.
    fn take(&mut self, ops: &[WriteOp]) -> BatchOutcome {
        let mut share = BatchOutcome::default();
        for op in ops {
            match op {
                WriteOp::Message(m) if self.messages.remove(&m.message_id) => share.inserted_messages.push(m.message_id),
                WriteOp::Message(m) => share.duplicate_messages.push(m.message_id),
                WriteOp::Usage(u) if self.events.remove(&u.event_id) => share.inserted_events.push(u.event_id),
                WriteOp::Usage(u) => share.duplicate_events.push(u.event_id),
                WriteOp::Gateway(_) => {}
            }
        }
        share
    }
}

impl Actor for PersisterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Also runs after a restart: writes kept from before get their flush timer back.
        self.schedule(ctx);
    }
}

impl Supervised for PersisterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Timers died with the old context; the pending writes are kept and
        // rescheduled once the actor is running again (see `FlushDone`).
        self.timer = None;
        tracing::warn!(pending = self.pending.len(), "PersisterActor restarting; keeping accepted writes.");
    }
}

impl Handler<Persist> for PersisterActor {
    type Result = ResponseFuture<Result<BatchOutcome, ActorError>>;

    fn handle(&mut self, msg: Persist, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.pending_ops += msg.ops.len();
        self.pending.push(Pending { ops: msg.ops, trace: msg.trace, reply: tx });
        if self.pending_ops >= self.config.max_ops {
            self.flush(ctx);
        } else {
            self.schedule(ctx);
        }
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| Err(ActorError::Unavailable("persister dropped the batch".into())))
        })
    }
}

impl Handler<FlushBatch> for PersisterActor {
    type Result = ResponseFuture<Result<(), ActorError>>;

    fn handle(&mut self, _msg: FlushBatch, ctx: &mut Context<Self>) -> Self::Result {
        // An empty write queued behind everything accepted so far: batches commit
        // in order, so when it is answered all earlier writes are durable.
        let (tx, rx) = oneshot::channel();
        self.pending.push(Pending { ops: Vec::new(), trace: TraceContext::none(), reply: tx });
        self.flush(ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ActorError::Unavailable("persister dropped the flush".into())),
            }
        })
    }
}

impl Handler<InjectPanic> for PersisterActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, _msg: InjectPanic, ctx: &mut Context<Self>) -> Self::Result {
        guard("persister", ctx, || -> Result<(), ActorError> { panic!("injected fault") })?
    }
}

impl Handler<FlushDone> for PersisterActor {
    type Result = ();

    fn handle(&mut self, _msg: FlushDone, ctx: &mut Context<Self>) {
        self.flushing = false;
        if self.pending_ops >= self.config.max_ops {
            self.flush(ctx);
        } else {
            self.schedule(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use rust_decimal::Decimal;
    use tally_domain::Cost;
    use tally_store::UsageRecord;

    use super::*;

    fn usage(event_id: Uuid) -> WriteOp {
        WriteOp::Usage(UsageRecord {
            event_id,
            user_id: "u".into(),
            thread_id: None,
            message_id: None,
            model: "m".into(),
            event_type: String::new(),
            source: "test".into(),
            idempotency_key: None,
            occurred_at: Utc::now(),
            cost: Cost { lines: Vec::new(), total: Decimal::ZERO },
            key_id: None,
            task: None,
            successful: true,
        })
    }

    #[test]
    fn an_id_inserted_once_goes_to_its_first_writer_only() {
        let (a, b, old) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        // Caller 1 writes a and old; caller 2 writes a again and b. The store inserted a and b once.
        let outcome = BatchOutcome {
            inserted_events: vec![a, b],
            duplicate_events: vec![old, a],
            ..BatchOutcome::default()
        };
        let mut shares = Shares::of(&outcome);
        let first = shares.take(&[usage(a), usage(old)]);
        let second = shares.take(&[usage(a), usage(b)]);
        assert_eq!((first.inserted_events, first.duplicate_events), (vec![a], vec![old]), "first writer of a gets it");
        assert_eq!((second.inserted_events, second.duplicate_events), (vec![b], vec![a]), "the repeat is a duplicate");
    }
}
