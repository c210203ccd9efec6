//! The ingest HTTP API: `POST /v1/events` (JSON array or NDJSON batch) and `GET /healthz`.
//!
//! Every event gets a result (`accepted`, `duplicate`, `rejected` with a code and
//! reason) in request order, so a client can retry the batch safely: accepted and
//! duplicate events are billed exactly once; rejected ones changed nothing. The
//! same handler serves the collector role (events go to Kafka) and embedded mode
//! (events go straight to the local BillingActor).

use std::collections::HashSet;
use std::time::Instant;

use actix::{Addr, Recipient};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use futures::StreamExt;
use serde::Serialize;
use tally_actors::{BillBatch, UsageEvent};
use tally_observability::http::{record_response, server_span};
use tally_observability::metrics::UNMATCHED_ROUTE;
use tally_observability::TraceContext;
use tracing::Instrument;
use uuid::Uuid;

use crate::batch::{split, BodyFormat};
use crate::collector::{rejection_of, CollectorActor, Delivery, GetInFlight, PublishEvents};
use crate::config::CollectorConfig;
use crate::error::CollectorError;
use crate::event::{validate, Rejection, ValidEvent};

/// Path of the ingest endpoint.
pub const EVENTS_PATH: &str = "/v1/events";
/// Request header carrying W3C trace context, passed on to Kafka headers.
pub const TRACEPARENT_HEADER: &str = tally_observability::TRACEPARENT_HEADER;

/// Where accepted events go.
#[derive(Clone)]
pub enum Sink {
    /// Cluster mode: through the CollectorActor to Kafka.
    Cluster(Addr<CollectorActor>),
    /// Embedded mode: straight into the local BillingActor.
    Embedded(Recipient<BillBatch>),
}

/// State of the ingest handlers.
#[derive(Clone)]
pub struct IngestState {
    /// Where events go.
    pub sink: Sink,
    /// Limits.
    pub config: CollectorConfig,
}

/// One event's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Taken: will be (embedded: was) billed once.
    Accepted,
    /// Already taken before (same event id): nothing new.
    Duplicate,
    /// Refused: nothing was billed.
    Rejected,
}

/// One line of the answer.
#[derive(Debug, Clone, Serialize)]
pub struct EventResult {
    /// Position in the batch.
    pub index: usize,
    /// The event's id (given, derived from the idempotency key, or new); absent when rejected before one was known.
    pub event_id: Option<Uuid>,
    /// Outcome.
    pub status: Status,
    /// Stable code of a rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Reason of a rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResult {
    /// Events taken.
    pub accepted: usize,
    /// Events already taken before.
    pub duplicates: usize,
    /// Events refused.
    pub rejected: usize,
    /// One result per event, in order.
    pub results: Vec<EventResult>,
}

/// Register `POST /v1/events` over `state`.
pub fn routes(state: web::Data<IngestState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(web::resource(EVENTS_PATH).app_data(state).route(web::post().to(ingest)));
    }
}

/// Middleware of the collector role: the request's server span
/// ([`tally_observability::http::server_span`]), continuing an incoming W3C `traceparent`.
/// Register it outermost. (A node serving the embedded routes has its own, with metrics:
/// `tally_web::metrics::record_request`.)
pub async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req.match_pattern().unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let span = server_span(&method, &route, req.path(), req.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes())));
    let result = next.call(req).instrument(span.clone()).await;
    // Handler errors arrive as responses; an `Err` here comes from an inner middleware.
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    record_response(&span, status.as_u16(), started.elapsed());
    result
}

/// Register `GET /healthz` for the collector role.
pub fn health_routes(state: web::Data<IngestState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(web::resource("/healthz").app_data(state).route(web::get().to(healthz)));
    }
}

async fn healthz(state: web::Data<IngestState>) -> HttpResponse {
    let in_flight = match &state.sink {
        Sink::Cluster(addr) => addr.send(GetInFlight).await.ok(),
        Sink::Embedded(_) => None,
    };
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok", "role": crate::SERVICE_NAME, "in_flight": in_flight }))
}

async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, CollectorError> {
    let too_large =
        || CollectorError::TooLarge { code: "payload_too_large", message: format!("request body is larger than {limit} bytes") };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| CollectorError::InvalidBody { code: "invalid_body", message: format!("reading the body: {e}") })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `POST /v1/events`.
async fn ingest(req: HttpRequest, payload: web::Payload, state: web::Data<IngestState>) -> Result<HttpResponse, CollectorError> {
    let body = read_body(&req, payload, state.config.max_batch_bytes).await?;
    let format = BodyFormat::from_content_type(req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    let raws = split(&body, format, state.config.max_batch_events)?;
    let now = Utc::now();
    let mut seen = HashSet::with_capacity(raws.len());
    let mut results = Vec::with_capacity(raws.len());
    // Index in `results` of each accepted event, in the order they are handed to the sink.
    let mut accepted: Vec<(usize, ValidEvent)> = Vec::new();
    let mut rejected: Vec<(String, Rejection)> = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        match validate(raw, now, state.config.max_future_skew) {
            Ok(ev) if !seen.insert(ev.event_id) => {
                results.push(EventResult { index, event_id: Some(ev.event_id), status: Status::Duplicate, code: None, reason: None })
            }
            Ok(ev) => {
                results.push(EventResult { index, event_id: Some(ev.event_id), status: Status::Accepted, code: None, reason: None });
                accepted.push((index, ev));
            }
            Err(why) => {
                results.push(EventResult {
                    index,
                    event_id: None,
                    status: Status::Rejected,
                    code: Some(why.code),
                    reason: Some(why.reason.clone()),
                });
                rejected.push(((*raw).to_string(), why));
            }
        }
    }
    drop(body);
    // The request's server span (see `trace_request`), or, when this process does not export
    // spans, the caller's context as received.
    let trace =
        TraceContext::current().or(TraceContext::from_headers(req.headers().iter().map(|(name, value)| (name.as_str(), value.as_bytes()))));
    let (indices, events): (Vec<usize>, Vec<ValidEvent>) = accepted.into_iter().unzip();
    let outcomes = match &state.sink {
        Sink::Cluster(addr) => {
            let msg = PublishEvents { accepted: events, rejected, trace };
            addr.send(msg).await.map_err(|e| CollectorError::Actor(e.into()))??
        }
        Sink::Embedded(billing) => bill_locally(billing, events, trace).await?,
    };
    for (i, outcome) in indices.into_iter().zip(outcomes) {
        let r = &mut results[i];
        match outcome {
            Delivery::Acked => {}
            Delivery::Duplicate => r.status = Status::Duplicate,
            Delivery::DeadLettered(why) => {
                r.status = Status::Rejected;
                r.code = Some(why.code);
                r.reason = Some(why.reason);
            }
        }
    }
    let count = |s: Status| results.iter().filter(|r| r.status == s).count();
    let answer =
        BatchResult { accepted: count(Status::Accepted), duplicates: count(Status::Duplicate), rejected: count(Status::Rejected), results };
    Ok(HttpResponse::Ok().json(answer))
}

/// Embedded mode: bill the batch through the local BillingActor in one message (one write).
async fn bill_locally(
    billing: &Recipient<BillBatch>,
    events: Vec<ValidEvent>,
    trace: TraceContext,
) -> Result<Vec<Delivery>, CollectorError> {
    let ids: Vec<Option<Uuid>> = events.iter().map(|e| Some(e.event_id)).collect();
    let events = events
        .into_iter()
        .map(|ev| UsageEvent {
            event_id: ev.event_id,
            user_id: ev.payload.user_id,
            thread_id: ev.payload.thread_id,
            message_id: ev.payload.message_id,
            model: ev.payload.model,
            occurred_at: ev.occurred_at,
            usage: ev.payload.usage,
            source: ev.payload.source,
            idempotency_key: ev.payload.idempotency_key,
            key_id: None,
            task: ev.payload.task,
            successful: ev.payload.was_successful.unwrap_or(true),
        })
        .collect();
    let unavailable = |e: tally_actors::ActorError| CollectorError::Unavailable {
        code: "storage_unavailable",
        message: format!("storage is unavailable ({e}); retry the batch with the returned event_ids"),
        event_ids: ids.clone(),
    };
    let results = match billing.send(BillBatch { events, trace }).await.map_err(tally_actors::ActorError::from).and_then(|r| r) {
        Ok(results) => results,
        Err(e) if e.is_retryable() => return Err(unavailable(e)),
        Err(e) => return Err(CollectorError::Actor(e)),
    };
    let mut out = Vec::with_capacity(results.len());
    let mut retryable = None;
    for r in results {
        match r {
            Ok(b) if b.duplicate => out.push(Delivery::Duplicate),
            Ok(_) => out.push(Delivery::Acked),
            Err(e) if e.is_retryable() => {
                retryable.get_or_insert(e);
                out.push(Delivery::Acked);
            }
            Err(e) => out.push(Delivery::DeadLettered(rejection_of(&e))),
        }
    }
    match retryable {
        Some(e) => Err(unavailable(e)),
        None => Ok(out),
    }
}
