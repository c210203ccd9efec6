//! tally-observability: tracing (structured logs, OTLP export to Jaeger), W3C trace context
//! propagation across actor messages and Kafka records, and Prometheus metrics.
//!
//! - [`init_node`] installs the global subscriber for a role and returns the [`Guard`] that
//!   flushes spans at shutdown (the "flush traces" phase).
//! - [`TraceContext`] carries a span's context in a message or record headers; other crates
//!   use it without depending on OpenTelemetry.
//! - [`http`] makes the server span of an HTTP request, for every role's middleware.
//! - [`metrics`] is the typed recording API and [`metrics::render`] the `/metrics` body.
//! - `testing` (feature `testing`) is a real OTLP/HTTP receiver for tests.

pub mod context;
pub mod error;
pub mod http;
pub mod metrics;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use context::{TraceContext, TRACEPARENT_HEADER, TRACESTATE_HEADER};
pub use error::ObservabilityError;
#[allow(deprecated)]
pub use telemetry::init;
pub use telemetry::{
    dispatch_with, init_node, init_with, Guard, LogFormat, TelemetryConfig, DEFAULT_LOG_FILTER, OTLP_ENDPOINT_ENV,
};
