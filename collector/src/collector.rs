//! CollectorActor: publishes accepted events to `inference-events` (keyed by user id) and rejected
//! ones to its dead-letter topic, and answers only once the broker acknowledged every one of them.
//!
//! Batching is librdkafka's (`linger.ms`, `batch.num.messages` from the bridge settings):
//! the actor enqueues a request's records at once and waits for their delivery reports.
//! Transient failures are retried with backoff and jitter ([`crate::retry`]) until the
//! request's `delivery_timeout`; then the request is answered 503 and nothing in it is
//! acknowledged (a client retry with the same event ids or idempotency keys is billed once).
//! A bounded number of events may wait at once (`max_in_flight`): past it, requests are
//! refused at once with 503 and `Retry-After`, so a broker outage never grows memory
//! without bound and never acknowledges what could be lost. Records the broker refuses for
//! good (too large, ...) are dead-lettered with the reason.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use futures::future::join_all;
use tally_actors::kafka::dlq::{self, DeadLetter};
use tally_actors::kafka::{Envelope, KafkaConfig, KafkaProducer, Topic};
use tally_actors::ActorError;
use tally_observability::TraceContext;
use tokio::sync::Semaphore;
use tracing::field::Empty;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::CollectorConfig;
use crate::error::CollectorError;
use crate::event::{Rejection, ValidEvent};
use crate::retry::deliver;

/// Command: publish a request's events; answered after every record was acknowledged or dead-lettered.
#[derive(Message)]
#[rtype(result = "Result<Vec<Delivery>, CollectorError>")]
pub struct PublishEvents {
    /// Valid events to publish.
    pub accepted: Vec<ValidEvent>,
    /// Rejected events (raw text and reason) to dead-letter.
    pub rejected: Vec<(String, Rejection)>,
    /// Trace context of the request: the `collector.publish` span joins it, and each record
    /// carries the context of its own `kafka.produce` span under that one.
    pub trace: TraceContext,
}

/// Query: events waiting for the broker now.
#[derive(Message, Debug, Default)]
#[rtype(result = "usize")]
pub struct GetInFlight;

/// What became of one accepted event (in the order of `PublishEvents::accepted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The broker acknowledged it.
    Acked,
    /// This collector acknowledged the same event id recently: not published again.
    Duplicate,
    /// The broker refused it for good; it is on the dead-letter topic with this reason.
    DeadLettered(Rejection),
}

/// Recently acknowledged event ids (bounded, oldest forgotten first).
#[derive(Debug, Default)]
struct RecentIds {
    set: HashSet<Uuid>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl RecentIds {
    fn insert(&mut self, id: Uuid) {
        if self.capacity == 0 || !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// The ingest publisher. Stateless apart from its bounded caches: run as many collectors as load needs.
pub struct CollectorActor {
    kafka: KafkaConfig,
    config: CollectorConfig,
    producer: KafkaProducer,
    permits: Arc<Semaphore>,
    recent: Arc<Mutex<RecentIds>>,
}

impl CollectorActor {
    /// A collector publishing with a new producer for `kafka`.
    pub fn new(kafka: KafkaConfig, config: CollectorConfig) -> Result<Self, CollectorError> {
        config.validate()?;
        let producer = KafkaProducer::new(&kafka)?;
        let permits = Arc::new(Semaphore::new(config.max_in_flight));
        let recent = Arc::new(Mutex::new(RecentIds { capacity: config.recent_ids, ..RecentIds::default() }));
        Ok(CollectorActor { kafka, config, producer, permits, recent })
    }

    fn producer(&mut self) -> Result<KafkaProducer, CollectorError> {
        // The producer replaces its own client when it breaks (see `KafkaProducer`).
        Ok(self.producer.clone())
    }
}

impl Actor for CollectorActor {
    type Context = Context<Self>;
}

impl Handler<GetInFlight> for CollectorActor {
    type Result = usize;

    fn handle(&mut self, _msg: GetInFlight, _ctx: &mut Context<Self>) -> usize {
        self.config.max_in_flight.saturating_sub(self.permits.available_permits())
    }
}

impl Handler<PublishEvents> for CollectorActor {
    type Result = ResponseFuture<Result<Vec<Delivery>, CollectorError>>;

    fn handle(&mut self, msg: PublishEvents, _ctx: &mut Context<Self>) -> Self::Result {
        let PublishEvents { accepted, rejected, trace } = msg;
        let total = accepted.len() + rejected.len();
        let span = tracing::info_span!(
            "collector.publish",
            events.accepted = accepted.len(),
            events.rejected = rejected.len(),
            otel.status_code = Empty,
            error.message = Empty,
        );
        trace.attach(&span);
        let limit = self.config.max_in_flight;
        // Refusals are answered through the span below too, so they show in the trace.
        let permits = match u32::try_from(total).ok().and_then(|n| self.permits.clone().try_acquire_many_owned(n).ok()) {
            Some(p) => Ok(p),
            None => {
                let in_flight = limit.saturating_sub(self.permits.available_permits());
                Err(CollectorError::Overloaded { in_flight, limit })
            }
        };
        let producer = self.producer();
        let recent = self.recent.clone();
        let timeout = self.config.delivery_timeout;
        let node = self.kafka.node_id.clone();
        let known: Vec<bool> = match recent.lock() {
            Ok(r) => accepted.iter().map(|e| r.set.contains(&e.event_id)).collect(),
            Err(_) => vec![false; accepted.len()],
        };
        let event_ids: Vec<Option<Uuid>> = accepted.iter().map(|e| Some(e.event_id)).collect();
        let outcome_span = span.clone();
        let published = async move {
            let _permits = permits?; // released when the request is answered (or gives up)
            let producer = producer?;
            // Forwarded only when this process does not export spans (see `send_traced`).
            let tp = &trace;
            let publishes = accepted.iter().zip(&known).map(|(ev, known)| {
                let producer = producer.clone();
                let node = node.clone();
                async move {
                    if *known {
                        return Ok(Delivery::Duplicate);
                    }
                    let env = Envelope::new(ev.event_id, ev.occurred_at, node.clone(), ev.payload.clone());
                    let key = ev.payload.user_id.as_str();
                    match deliver("Publishing an event", || producer.publish(Topic::InferenceEvents, key, &env, tp)).await {
                        Ok(_) => Ok(Delivery::Acked),
                        Err(e) if e.is_retryable() => Err(e),
                        Err(e) => {
                            // Refused for good: dead-letter it with the reason, then it is answered as rejected.
                            let why = Rejection { code: "undeliverable", reason: e.to_string() };
                            let body = env.encode().unwrap_or_default();
                            let letter = DeadLetter::new(Topic::InferenceEvents, why.code, &why.reason, &body, &node)
                                .keyed(Some(key.to_string()))
                                .with_event_id(Some(ev.event_id));
                            deliver("Dead-lettering an event", || dlq::publish(&producer, Topic::InferenceEvents, &letter, tp)).await?;
                            Ok(Delivery::DeadLettered(why))
                        }
                    }
                }
            });
            let letters =
                rejected.iter().map(|(raw, why)| {
                    let producer = producer.clone();
                    let letter = DeadLetter::new(Topic::InferenceEvents, why.code, &why.reason, raw.as_bytes(), &node);
                    async move {
                        deliver("Dead-lettering a rejected event", || dlq::publish(&producer, Topic::InferenceEvents, &letter, tp)).await
                    }
                });
            let all = async { (join_all(publishes).await, join_all(letters).await) };
            let (published, lettered) = match tokio::time::timeout(timeout, all).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(CollectorError::Unavailable {
                        code: "broker_unavailable",
                        message: format!("the broker did not acknowledge the batch within {timeout:?}; nothing was acknowledged"),
                        event_ids,
                    })
                }
            };
            let first_err =
                published.iter().filter_map(|r| r.as_ref().err()).chain(lettered.iter().filter_map(|r| r.as_ref().err())).next();
            if let Some(e) = first_err {
                return Err(CollectorError::Unavailable {
                    code: "broker_unavailable",
                    message: format!("publishing failed: {e}; nothing was acknowledged"),
                    event_ids,
                });
            }
            let deliveries: Vec<Delivery> = published.into_iter().map(|r| r.unwrap_or(Delivery::Acked)).collect();
            if let Ok(mut r) = recent.lock() {
                for (ev, d) in accepted.iter().zip(&deliveries) {
                    if *d == Delivery::Acked {
                        r.insert(ev.event_id);
                    }
                }
            }
            Ok(deliveries)
        };
        Box::pin(
            async move {
                let result = published.await;
                if let Err(e) = &result {
                    outcome_span.record("otel.status_code", "ERROR");
                    outcome_span.record("error.message", tracing::field::display(e));
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Map an actor error to the per-event rejection reported to clients.
pub fn rejection_of(e: &ActorError) -> Rejection {
    Rejection { code: e.code(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut r = RecentIds { capacity: 2, ..RecentIds::default() };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            r.insert(*id);
        }
        r.insert(ids[2]);
        assert!(!r.set.contains(&ids[0]), "oldest forgotten");
        assert!(r.set.contains(&ids[1]) && r.set.contains(&ids[2]), "newest kept");
        assert_eq!(r.order.len(), 2, "bounded");
    }
}
