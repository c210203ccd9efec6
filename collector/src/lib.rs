//! tally-collector: the ingest role. HTTP batch ingest -> CollectorActor -> Kafka (`inference-events`),
//! with retry and a dead-letter topic; and the same API in embedded mode, straight into the local BillingActor.
//!
//! Cluster mode: `service::run` (the `tally collector` command). Embedded mode:
//! mount [`embedded_routes`] in the node's web app.

pub mod batch;
pub mod collector;
pub mod config;
pub mod error;
pub mod event;
pub mod http;
pub mod retry;
pub mod service;

use actix::Recipient;
use actix_web::web;
use tally_actors::BillBatch;

pub use collector::{CollectorActor, Delivery, PublishEvents};
pub use config::CollectorConfig;
pub use error::CollectorError;
pub use http::{BatchResult, EventResult, IngestState, Sink, Status, EVENTS_PATH};

/// Service name this role reports in logs and traces.
pub const SERVICE_NAME: &str = "tally-collector";

/// `POST /v1/events` for embedded mode: events are billed by the local BillingActor
/// (no Kafka), with the same request and answer shapes as the collector role.
/// Mount it before any catch-all route: `App::new().configure(embedded_routes(billing, config))`.
pub fn embedded_routes(billing: Recipient<BillBatch>, config: CollectorConfig) -> impl FnOnce(&mut web::ServiceConfig) {
    http::routes(web::Data::new(IngestState { sink: Sink::Embedded(billing), config }))
}
