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
use tally_actors::kafka::{
    pack_by_partition, partition_for_user, Envelope, InferenceBatch, InferenceEvent, KafkaConfig, KafkaProducer, Topic,
};
use tally_actors::ActorError;
use tally_domain::new_id;
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
    /// Partitions of `inference-events`: events go to `partition_for_user`.
    partitions: i32,
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
        let partitions = producer.partition_count(Topic::InferenceEvents)?;
        let permits = Arc::new(Semaphore::new(config.max_in_flight));
        let recent = Arc::new(Mutex::new(RecentIds {
            capacity: config.recent_ids,
            ..RecentIds::default()
        }));
        Ok(CollectorActor {
            kafka,
            partitions,
            config,
            producer,
            permits,
            recent,
        })
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
        self.config
            .max_in_flight
            .saturating_sub(self.permits.available_permits())
    }
}

impl Handler<PublishEvents> for CollectorActor {
    type Result = ResponseFuture<Result<Vec<Delivery>, CollectorError>>;

    fn handle(&mut self, msg: PublishEvents, _ctx: &mut Context<Self>) -> Self::Result {
        let PublishEvents {
            accepted,
            rejected,
            trace,
        } = msg;
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
        let permits = match u32::try_from(total)
            .ok()
            .and_then(|n| self.permits.clone().try_acquire_many_owned(n).ok())
        {
            Some(p) => Ok(p),
            None => {
                let in_flight = limit.saturating_sub(self.permits.available_permits());
                Err(CollectorError::Overloaded { in_flight, limit })
            }
        };
        let producer = self.producer();
        let partitions = self.partitions;
        let recent = self.recent.clone();
        let timeout = self.config.delivery_timeout;
        let node = self.kafka.node_id.clone();
        let known: Vec<bool> = match recent.lock() {
            Ok(r) => accepted
                .iter()
                .map(|e| r.set.contains(&e.event_id))
                .collect(),
            Err(_) => vec![false; accepted.len()],
        };
        let event_ids: Vec<Option<Uuid>> = accepted.iter().map(|e| Some(e.event_id)).collect();
        let outcome_span = span.clone();
        let published = async move {
            let _permits = permits?; // released when the request is answered (or gives up)
            let producer = producer?;
            // Forwarded only when this process does not export spans (see `send_traced`).
            let tp = &trace;
            // One record per partition (at most MAX_EVENTS_PER_RECORD events each) instead of one per
            // event: the broker's cost is per record. A record's events are acknowledged together.
            let records = records_of(&accepted, &known, partitions);
            let publishes = records.iter().map(|indices| {
                let producer = producer.clone();
                let node = node.clone();
                let accepted = &accepted;
                async move {
                    let events: Vec<Envelope<InferenceEvent>> = indices
                        .iter()
                        .map(|&i| {
                            Envelope::new(
                                accepted[i].event_id,
                                accepted[i].occurred_at,
                                node.clone(),
                                accepted[i].payload.clone(),
                            )
                        })
                        .collect();
                    let first = &accepted[indices[0]];
                    let key = first.payload.user_id.as_str();
                    let partition = partition_for_user(key, partitions);
                    let sent = if let [one] = events.as_slice() {
                        // A lone event travels as itself (the layout `tally dlq replay` and other producers use).
                        deliver("Publishing an event", || {
                            producer.publish_to(Topic::InferenceEvents, key, partition, one, tp)
                        })
                        .await
                    } else {
                        let record = Envelope::new(
                            new_id(),
                            first.occurred_at,
                            node.clone(),
                            InferenceBatch {
                                events: events.clone(),
                            },
                        );
                        deliver("Publishing events", || {
                            producer.publish_to(Topic::InferenceEvents, key, partition, &record, tp)
                        })
                        .await
                    };
                    match sent {
                        Ok(_) => Ok(vec![Delivery::Acked; indices.len()]),
                        Err(e) if e.is_retryable() => Err(e),
                        Err(e) => {
                            // Refused for good: dead-letter each event with the reason; they are answered as rejected.
                            let why = Rejection {
                                code: "undeliverable",
                                reason: e.to_string(),
                            };
                            let mut out = Vec::with_capacity(events.len());
                            for env in &events {
                                let body = env.encode().unwrap_or_default();
                                let letter = DeadLetter::new(
                                    Topic::InferenceEvents,
                                    why.code,
                                    &why.reason,
                                    &body,
                                    &node,
                                )
                                .keyed(Some(env.payload.user_id.clone()))
                                .with_event_id(Some(env.event_id));
                                deliver("Dead-lettering an event", || {
                                    dlq::publish(&producer, Topic::InferenceEvents, &letter, tp)
                                })
                                .await?;
                                out.push(Delivery::DeadLettered(why.clone()));
                            }
                            Ok(out)
                        }
                    }
                }
            });
            let letters = rejected.iter().map(|(raw, why)| {
                let producer = producer.clone();
                let letter = DeadLetter::new(
                    Topic::InferenceEvents,
                    why.code,
                    &why.reason,
                    raw.as_bytes(),
                    &node,
                );
                async move {
                    deliver("Dead-lettering a rejected event", || {
                        dlq::publish(&producer, Topic::InferenceEvents, &letter, tp)
                    })
                    .await
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
            let first_err = published
                .iter()
                .filter_map(|r| r.as_ref().err())
                .chain(lettered.iter().filter_map(|r| r.as_ref().err()))
                .next();
            if let Some(e) = first_err {
                return Err(CollectorError::Unavailable {
                    code: "broker_unavailable",
                    message: format!("publishing failed: {e}; nothing was acknowledged"),
                    event_ids,
                });
            }
            // Known ids are duplicates; the others take their record's outcome.
            let mut deliveries: Vec<Delivery> = known.iter().map(|_| Delivery::Duplicate).collect();
            for (indices, outcome) in records.iter().zip(published) {
                for (&i, d) in indices.iter().zip(outcome.unwrap_or_default()) {
                    deliveries[i] = d;
                }
            }
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

/// The records a request's new events go out in: indices into `accepted`, grouped by partition
/// (in order of acceptance within each), at most
/// [`MAX_EVENTS_PER_RECORD`](tally_actors::kafka::MAX_EVENTS_PER_RECORD) per record. Events
/// already `known` (acknowledged recently) are left out.
fn records_of(accepted: &[ValidEvent], known: &[bool], partitions: i32) -> Vec<Vec<usize>> {
    pack_by_partition(
        accepted
            .iter()
            .enumerate()
            .filter(|(i, _)| !known[*i])
            .map(|(i, ev)| (partition_for_user(&ev.payload.user_id, partitions), i)),
    )
}

/// Map an actor error to the per-event rejection reported to clients.
pub fn rejection_of(e: &ActorError) -> Rejection {
    Rejection {
        code: e.code(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_actors::kafka::MAX_EVENTS_PER_RECORD;

    fn event(user: &str) -> ValidEvent {
        let mut usage = tally_domain::Usage::new();
        usage.add_tokens(tally_domain::UsageKind::InputTokens, 1);
        ValidEvent {
            event_id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            payload: InferenceEvent {
                user_id: user.into(),
                model: "m".into(),
                provider: None,
                event_type: "token_usage".into(),
                usage,
                thread_id: None,
                message_id: None,
                source: "ingest".into(),
                idempotency_key: None,
                task: None,
                was_successful: None,
            },
        }
    }

    #[test]
    fn records_group_a_requests_events_by_partition_in_order_and_bounded() {
        let users: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
        let mut accepted: Vec<ValidEvent> =
            (0..1_200).map(|i| event(&users[i % users.len()])).collect();
        accepted.push(event("late"));
        let mut known = vec![false; accepted.len()];
        known[3] = true;
        let records = records_of(&accepted, &known, 4);
        let mut seen: Vec<usize> = records.iter().flatten().copied().collect();
        seen.sort_unstable();
        let expected: Vec<usize> = (0..accepted.len()).filter(|&i| i != 3).collect();
        assert_eq!(
            seen, expected,
            "every new event exactly once; the known one left out"
        );
        for r in &records {
            assert!(
                !r.is_empty() && r.len() <= MAX_EVENTS_PER_RECORD,
                "bounded records: {}",
                r.len()
            );
            assert!(
                r.windows(2).all(|w| w[0] < w[1]),
                "acceptance order within a record"
            );
            let p = partition_for_user(&accepted[r[0]].payload.user_id, 4);
            assert!(
                r.iter()
                    .all(|&i| partition_for_user(&accepted[i].payload.user_id, 4) == p),
                "one partition per record"
            );
        }
        assert!(
            records.len() < accepted.len() / 100,
            "far fewer records than events: {}",
            records.len()
        );
        assert!(
            records_of(&accepted[..1], &[true], 4).is_empty(),
            "nothing new, no record"
        );
    }

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut r = RecentIds {
            capacity: 2,
            ..RecentIds::default()
        };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        for id in &ids {
            r.insert(*id);
        }
        r.insert(ids[2]);
        assert!(!r.set.contains(&ids[0]), "oldest forgotten");
        assert!(
            r.set.contains(&ids[1]) && r.set.contains(&ids[2]),
            "newest kept"
        );
        assert_eq!(r.order.len(), 2, "bounded");
    }
}
