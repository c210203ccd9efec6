//! Server spans of HTTP requests, shared by every role's middleware (the node's
//! `tally_web::metrics::record_request`, the collector's `tally_collector::http::trace_request`):
//! one `http.request` span per request, named `METHOD /route/{pattern}`, continuing an
//! incoming W3C `traceparent`.

use std::time::Duration;

use tracing::field::Empty;

use crate::context::TraceContext;

/// The server span of one request. `route` is the matched pattern, never the raw path (span
/// names must not carry ids); the caller's trace context is read from `headers`. Instrument
/// the rest of the request with it, then call [`record_response`].
pub fn server_span<'a, I>(method: &str, route: &str, path: &str, headers: I) -> tracing::Span
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = %path,
        http.response.status_code = Empty,
        duration_ms = Empty,
    );
    TraceContext::from_headers(headers).attach(&span);
    span
}

/// Record the answer on a span from [`server_span`]: status, duration, and the error status
/// for a server error.
pub fn record_response(span: &tracing::Span, status: u16, elapsed: Duration) {
    span.record("http.response.status_code", status);
    span.record("duration_ms", u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    if (500..600).contains(&status) {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::OtlpReceiver;
    use crate::{dispatch_with, LogFormat, TelemetryConfig};

    #[test]
    fn the_server_span_continues_the_caller_and_records_the_answer() {
        let Ok(receiver) = OtlpReceiver::start() else { panic!("receiver must start") };
        let config = TelemetryConfig {
            service: "tally-test".into(),
            format: LogFormat::Human,
            node_id: Some("node-http".into()),
            otlp_endpoint: Some(receiver.endpoint()),
            export_interval: None,
        };
        let Ok((dispatch, guard)) = dispatch_with(&config) else { panic!("telemetry must build") };
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        tracing::dispatcher::with_default(&dispatch, || {
            let headers: Vec<(&str, &[u8])> = vec![("TraceParent", tp.as_bytes()), ("accept", b"*/*")];
            let span = server_span("POST", "/v1/events", "/v1/events", headers);
            span.in_scope(|| {});
            record_response(&span, 503, Duration::from_millis(7));
        });
        assert!(guard.shutdown().is_ok(), "spans flushed");
        let Some(span) = receiver.span_named("POST /v1/events") else {
            panic!("the server span was exported: {:?}", receiver.spans())
        };
        assert_eq!(span.kind, "server", "server span kind");
        assert_eq!(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "continues the caller's trace");
        assert_eq!(span.parent_span_id.as_deref(), Some("00f067aa0ba902b7"), "child of the caller's span");
        assert_eq!(span.attr("http.route"), Some("/v1/events"), "route attribute");
        assert_eq!(span.attr("http.response.status_code"), Some("503"), "status recorded");
        assert_eq!(span.attr("duration_ms"), Some("7"), "duration recorded");
        assert_eq!(span.status, "error", "a server error marks the span");
    }
}
