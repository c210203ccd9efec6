//! BillingActor: prices usage at the version in force at its time, persists it, publishes it.
//!
//! The actor owns the in-memory [`PriceBook`]. Price changes go through it too
//! (store first, then the book, atomically with respect to pricing), so no
//! usage is priced with a book that disagrees with storage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tally_domain::{price_usage, Cost, PriceBook, PriceVersion, Usage, UsageKind};
use tally_observability::TraceContext;
use tally_store::{Store, UsageRecord, WriteOp};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ActorError;
use crate::feed::{UsageFeed, UsagePriced};
use crate::persister::Persist;

/// One usage event to bill.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    /// Unique event id (UUIDv7); replays with the same id are billed once.
    pub event_id: Uuid,
    /// Billed user.
    pub user_id: String,
    /// Thread, if the usage belongs to one.
    pub thread_id: Option<Uuid>,
    /// Message, if the usage belongs to one.
    pub message_id: Option<Uuid>,
    /// Model used.
    pub model: String,
    /// When the usage happened: prices are looked up at this instant.
    pub occurred_at: DateTime<Utc>,
    /// Quantities by kind.
    pub usage: Usage,
    /// Where it came from (`chat`, `ingest`, ...).
    pub source: String,
    /// Client-supplied idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// The gateway's virtual key the usage was made with, if any.
    pub key_id: Option<Uuid>,
    /// Task label for analytics (`chat` for chat turns), if any.
    pub task: Option<String>,
    /// Whether the call succeeded (seed 003's `was_successful`).
    pub successful: bool,
}

/// Command: price a usage event and persist it (with any writes that must commit with it).
#[derive(Message)]
#[rtype(result = "Result<BilledUsage, ActorError>")]
pub struct BillUsage {
    /// The usage.
    pub event: UsageEvent,
    /// Writes committed in the same transaction (e.g. the assistant message).
    pub with: Vec<WriteOp>,
    /// Trace context of the sender (the chat turn, the ingest batch, the Kafka record).
    pub trace: TraceContext,
}

/// Result of billing one usage event.
#[derive(Debug, Clone)]
pub struct BilledUsage {
    /// Cost by kind at the versions in force at the event's time.
    pub cost: Cost,
    /// True when the event id was already stored: nothing new was billed.
    pub duplicate: bool,
}

/// Command: add a price version (closes the current one at `effective_from`).
#[derive(Message)]
#[rtype(result = "Result<(Option<PriceVersion>, PriceVersion), ActorError>")]
pub struct AddPriceVersion {
    /// Model name.
    pub model: String,
    /// Priced kind.
    pub kind: UsageKind,
    /// USD per million tokens (per unit for resources).
    pub price: Decimal,
    /// When it takes effect.
    pub effective_from: DateTime<Utc>,
}

/// Query: a snapshot of the current price book.
#[derive(Message, Debug, Default)]
#[rtype(result = "Arc<PriceBook>")]
pub struct GetPriceBook;

/// The billing actor's current price book, readable from any thread without a message
/// (the gateway's reservation bound reads it on every call). The actor replaces it right
/// after a price change commits, so a reader sees the book the actor prices with.
#[derive(Clone, Default)]
pub struct PriceBookHandle {
    inner: Arc<std::sync::RwLock<Arc<PriceBook>>>,
}

impl PriceBookHandle {
    /// The book in force now.
    pub fn current(&self) -> Arc<PriceBook> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc; the value is whole.
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, book: Arc<PriceBook>) {
        *self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) = book;
    }
}

impl std::fmt::Debug for PriceBookHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PriceBookHandle")
    }
}

/// Prices and records usage.
pub struct BillingActor {
    store: Store,
    book: Arc<PriceBook>,
    shared_book: PriceBookHandle,
    persister: Recipient<Persist>,
    feed: UsageFeed,
}

impl BillingActor {
    /// A billing actor with a price book loaded from `store`.
    pub fn new(
        store: Store,
        book: PriceBook,
        persister: Recipient<Persist>,
        feed: UsageFeed,
    ) -> Self {
        let book = Arc::new(book);
        let shared_book = PriceBookHandle::default();
        shared_book.set(book.clone());
        BillingActor {
            store,
            book,
            shared_book,
            persister,
            feed,
        }
    }
}

impl BillingActor {
    /// A handle that always reads this actor's current price book.
    pub fn price_book(&self) -> PriceBookHandle {
        self.shared_book.clone()
    }
}

impl Actor for BillingActor {
    type Context = Context<Self>;
}

impl Supervised for BillingActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("BillingActor restarting.");
    }
}

/// Command: price and persist many usage events in one write (the ingest API's batches).
/// Each event gets its own outcome: one that cannot be priced is refused alone, and the
/// others are stored in one transaction with one answer from the persister.
#[derive(Message)]
#[rtype(result = "Result<Vec<Result<BilledUsage, ActorError>>, ActorError>")]
pub struct BillBatch {
    /// The usage events, each billed once (by event id).
    pub events: Vec<UsageEvent>,
    /// Trace context of the sender (the ingest request).
    pub trace: TraceContext,
}

impl Handler<BillUsage> for BillingActor {
    type Result = ResponseFuture<Result<BilledUsage, ActorError>>;

    fn handle(&mut self, msg: BillUsage, _ctx: &mut Context<Self>) -> Self::Result {
        let BillUsage {
            event,
            mut with,
            trace,
        } = msg;
        let span = tracing::info_span!(
            "billing.price_usage",
            event.id = %event.event_id,
            user.id = %event.user_id,
            model = %event.model,
            cost_usd = tracing::field::Empty,
            price_versions = tracing::field::Empty,
            duplicate = tracing::field::Empty,
        );
        trace.attach(&span);
        let priced = span
            .in_scope(|| price_usage(&self.book, &event.model, event.occurred_at, &event.usage));
        let persister = self.persister.clone();
        let feed = self.feed.clone();
        let fut_span = span.clone();
        Box::pin(
            async move {
                let cost = priced?;
                fut_span.record("cost_usd", tracing::field::display(cost.total));
                if !fut_span.is_disabled() {
                    let versions: Vec<String> = cost
                        .lines
                        .iter()
                        .map(|l| format!("{}={}", l.kind, l.price_version_id))
                        .collect();
                    fut_span.record(
                        "price_versions",
                        tracing::field::display(versions.join(",")),
                    );
                }
                with.push(WriteOp::Usage(usage_record(&event, cost.clone())));
                let outcome = persister
                    .send(Persist {
                        ops: with,
                        trace: TraceContext::current(),
                    })
                    .await??;
                let duplicate = outcome.duplicate_events.contains(&event.event_id);
                fut_span.record("duplicate", duplicate);
                // Announced even as a duplicate: a retry after an ambiguous commit (the gateway
                // retries while storage is down) reads as one. Receivers count each id once.
                feed.publish(announce(event, &cost, Utc::now()));
                Ok(BilledUsage { cost, duplicate })
            }
            .instrument(span),
        )
    }
}

impl Handler<BillBatch> for BillingActor {
    type Result = ResponseFuture<Result<Vec<Result<BilledUsage, ActorError>>, ActorError>>;

    fn handle(&mut self, msg: BillBatch, _ctx: &mut Context<Self>) -> Self::Result {
        let BillBatch { events, trace } = msg;
        let span = tracing::info_span!(
            "billing.price_batch",
            events = events.len(),
            priced = tracing::field::Empty,
            duplicates = tracing::field::Empty,
        );
        trace.attach(&span);
        // Price everything first; the events that priced are written together.
        let priced: Vec<Result<Cost, ActorError>> = span.in_scope(|| {
            events
                .iter()
                .map(|e| {
                    price_usage(&self.book, &e.model, e.occurred_at, &e.usage)
                        .map_err(ActorError::from)
                })
                .collect()
        });
        let ops: Vec<WriteOp> = events
            .iter()
            .zip(&priced)
            .filter_map(|(e, c)| {
                c.as_ref()
                    .ok()
                    .map(|c| WriteOp::Usage(usage_record(e, c.clone())))
            })
            .collect();
        span.record("priced", ops.len());
        let trace = span.in_scope(TraceContext::current);
        // Handed to the persister now, not when the answer is first awaited: the persister
        // (on its own arbiter) writes while this actor prices the batches behind this one.
        let written = (!ops.is_empty()).then(|| {
            self.persister.send(Persist {
                ops,
                trace: trace.clone(),
            })
        });
        let persister = self.persister.clone();
        let feed = self.feed.clone();
        let fut_span = span.clone();
        Box::pin(
            async move {
                let mut outcomes: HashMap<Uuid, Result<bool, ActorError>> =
                    HashMap::with_capacity(events.len());
                if let Some(written) = written {
                    match written.await? {
                        Ok(outcome) => {
                            // A new id is inserted once: its first event in the batch gets it, repeats are duplicates.
                            let mut inserted: HashSet<Uuid> =
                                outcome.inserted_events.into_iter().collect();
                            for (e, _) in events.iter().zip(&priced).filter(|(_, c)| c.is_ok()) {
                                outcomes
                                    .entry(e.event_id)
                                    .or_insert_with(|| Ok(!inserted.remove(&e.event_id)));
                            }
                        }
                        Err(e) if e.is_retryable() => return Err(e),
                        Err(_) => {
                            // One write the store refuses fails the whole transaction: write each event
                            // on its own so that only the refused ones fail.
                            for (e, c) in events.iter().zip(&priced) {
                                let Ok(c) = c else { continue };
                                if outcomes.contains_key(&e.event_id) {
                                    continue;
                                }
                                let op = vec![WriteOp::Usage(usage_record(e, c.clone()))];
                                let r = persister
                                    .send(Persist {
                                        ops: op,
                                        trace: trace.clone(),
                                    })
                                    .await?;
                                outcomes.insert(
                                    e.event_id,
                                    r.map(|o| o.duplicate_events.contains(&e.event_id)),
                                );
                            }
                        }
                    }
                }
                let committed_at = Utc::now();
                let mut announced = HashSet::new();
                let mut stored = Vec::new();
                let mut duplicates = 0usize;
                let results = events
                    .into_iter()
                    .zip(priced)
                    .map(|(event, cost)| {
                        let cost = cost?;
                        // The first occurrence of an id in the batch carries its outcome; later ones are duplicates.
                        let first = announced.insert(event.event_id);
                        let duplicate = match outcomes.get(&event.event_id) {
                            Some(Ok(dup)) => *dup || !first,
                            Some(Err(e)) => return Err(e.clone()),
                            None => {
                                return Err(ActorError::Unavailable(
                                    "the batch outcome lost an event".into(),
                                ))
                            }
                        };
                        if duplicate {
                            duplicates += 1;
                        }
                        // Duplicates are announced too (once per batch): a commit whose answer was
                        // lost (the database crashed mid-commit) is retried and then reads as a
                        // duplicate, and would otherwise never reach the live dashboards. Every
                        // receiver of the feed counts an event once by its id.
                        if first {
                            stored.push(announce(event, &cost, committed_at));
                        }
                        Ok(BilledUsage { cost, duplicate })
                    })
                    .collect();
                fut_span.record("duplicates", duplicates);
                feed.publish_all(stored);
                Ok(results)
            }
            .instrument(span),
        )
    }
}

/// What the store keeps of a priced usage event.
fn usage_record(event: &UsageEvent, cost: Cost) -> UsageRecord {
    UsageRecord {
        event_id: event.event_id,
        user_id: event.user_id.clone(),
        thread_id: event.thread_id,
        message_id: event.message_id,
        model: event.model.clone(),
        event_type: event_type_of(&event.usage),
        source: event.source.clone(),
        idempotency_key: event.idempotency_key.clone(),
        occurred_at: event.occurred_at,
        cost,
        key_id: event.key_id,
        task: event.task.clone(),
        successful: event.successful,
    }
}

/// A newly stored usage event: count it, and what to publish on the live feed.
fn announce(event: UsageEvent, cost: &Cost, committed_at: DateTime<Utc>) -> UsagePriced {
    tally_observability::metrics::usage_priced(&event.model, &cost.total);
    tracing::debug!(
        event.id = %event.event_id,
        user.id = %event.user_id,
        model = %event.model,
        cost_usd = %cost.total,
        "Usage priced and persisted."
    );
    UsagePriced {
        event_id: event.event_id,
        user_id: event.user_id,
        thread_id: event.thread_id,
        message_id: event.message_id,
        model: event.model,
        occurred_at: event.occurred_at,
        committed_at,
        cost: cost.clone(),
        key_id: event.key_id,
        origin: None,
        trace: TraceContext::current(),
    }
}

/// The event type of a usage: `token_usage` when it has tokens, else its first resource.
fn event_type_of(usage: &Usage) -> String {
    if usage.iter().any(|(k, _)| k.is_token()) || usage.is_empty() {
        "token_usage".into()
    } else {
        usage
            .iter()
            .next()
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| "token_usage".into())
    }
}

impl Handler<AddPriceVersion> for BillingActor {
    // Atomic: no usage is priced between the store commit and the book update.
    type Result = AtomicResponse<Self, Result<(Option<PriceVersion>, PriceVersion), ActorError>>;

    fn handle(&mut self, msg: AddPriceVersion, _ctx: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let fut = async move {
            tokio::task::spawn_blocking(move || {
                store.add_price_version(&msg.model, &msg.kind, msg.price, msg.effective_from)
            })
            .await
            .map_err(|e| ActorError::Unavailable(format!("price update task failed: {e}")))?
            .map_err(ActorError::from)
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(|res, act, _ctx| {
            if let Ok((closed, new)) = &res {
                let mut book = (*act.book).clone();
                if let Err(e) = book.apply(closed.clone(), new.clone()) {
                    // Storage accepted what the book refuses: trust storage and reload.
                    tracing::error!(error = %e, "Price book disagrees with storage; reloading.");
                    match act.store.load_price_book() {
                        Ok(b) => book = b,
                        Err(e) => tracing::error!(error = %e, "Price book reload failed."),
                    }
                }
                act.book = Arc::new(book);
                act.shared_book.set(act.book.clone());
            }
            res
        })))
    }
}

impl Handler<GetPriceBook> for BillingActor {
    type Result = MessageResult<GetPriceBook>;

    fn handle(&mut self, _msg: GetPriceBook, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.book.clone())
    }
}
