//! W3C trace context (`traceparent`/`tracestate`) carried across actor messages and Kafka records.
//!
//! Other crates carry a [`TraceContext`] in their messages and record headers and never
//! depend on OpenTelemetry themselves. When no OTLP exporter is configured the tracing
//! spans have no OpenTelemetry context, [`TraceContext::current`] is empty, and every
//! method here is a cheap no-op.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

/// Header (and Kafka record header) holding the W3C trace parent.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// Header (and Kafka record header) holding the W3C vendor trace state.
pub const TRACESTATE_HEADER: &str = "tracestate";
/// Longest header value accepted from the wire; W3C caps `tracestate` at 32 members of
/// at most 256 bytes, and a `traceparent` is 55 bytes.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The trace context of one span, in W3C text form: what an actor message or a Kafka
/// record carries so the receiving side continues the same trace.
///
/// Capture with [`TraceContext::current`] where the work is sent; on the receiving side
/// create the handler's span and call [`TraceContext::attach`] before entering it. For a
/// batch that merges events from many origins use [`TraceContext::link_to`] instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// `traceparent`: `00-<trace id>-<span id>-<flags>`; `None` outside any exported trace.
    traceparent: Option<String>,
    /// `tracestate`: vendor entries, passed through untouched.
    tracestate: Option<String>,
}

impl TraceContext {
    /// An empty context: the receiving side starts a new trace.
    pub fn none() -> Self {
        TraceContext::default()
    }

    /// The context of the current tracing span (empty when there is none or tracing
    /// does not export).
    pub fn current() -> Self {
        Self::of(&tracing::Span::current())
    }

    /// The context of `span` (empty when the span is disabled or tracing does not export).
    pub fn of(span: &tracing::Span) -> Self {
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            return TraceContext::none();
        }
        let mut carrier = Carrier::default();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        TraceContext {
            traceparent: carrier.0.remove(TRACEPARENT_HEADER),
            tracestate: carrier.0.remove(TRACESTATE_HEADER).filter(|s| !s.is_empty()),
        }
    }

    /// A context from wire values (HTTP headers, stored records). Invalid values give an
    /// empty context: a malformed header must never fail the request that carries it.
    pub fn from_parts(traceparent: Option<&str>, tracestate: Option<&str>) -> Self {
        let headers = traceparent
            .map(|v| (TRACEPARENT_HEADER, v.as_bytes()))
            .into_iter()
            .chain(tracestate.map(|v| (TRACESTATE_HEADER, v.as_bytes())));
        Self::from_headers(headers)
    }

    /// Read the context from record headers (Kafka record headers, HTTP headers), matching
    /// names case-insensitively and ignoring every other header. Invalid or oversized values
    /// give an empty context.
    pub fn from_headers<'a, I>(headers: I) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut carrier = Carrier::default();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if (name == TRACEPARENT_HEADER || name == TRACESTATE_HEADER) && value.len() <= MAX_HEADER_BYTES {
                if let Ok(text) = std::str::from_utf8(value) {
                    carrier.0.insert(name, text.trim().to_string());
                }
            }
        }
        if !carrier.0.get(TRACEPARENT_HEADER).is_some_and(|tp| well_formed(tp)) {
            return TraceContext::none();
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        if !cx.span().span_context().is_valid() {
            return TraceContext::none();
        }
        // Re-inject rather than keep the raw text, so what we forward is canonical.
        let mut canonical = Carrier::default();
        TraceContextPropagator::new().inject_context(&cx, &mut canonical);
        TraceContext {
            traceparent: canonical.0.remove(TRACEPARENT_HEADER),
            tracestate: canonical.0.remove(TRACESTATE_HEADER).filter(|s| !s.is_empty()),
        }
    }

    /// Headers to put on a Kafka record (or an outgoing HTTP request); empty when there
    /// is no context.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = Vec::with_capacity(2);
        if let Some(tp) = &self.traceparent {
            headers.push((TRACEPARENT_HEADER, tp.clone()));
            if let Some(ts) = &self.tracestate {
                headers.push((TRACESTATE_HEADER, ts.clone()));
            }
        }
        headers
    }

    /// This context, or `fallback` when this one is empty. For forwarding: a process that
    /// does not export spans has no context of its own ([`TraceContext::current`] is empty)
    /// and passes on the one it received, so the trace still crosses it.
    pub fn or(self, fallback: TraceContext) -> TraceContext {
        if self.is_empty() {
            fallback
        } else {
            self
        }
    }

    /// True when there is no context to carry.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none()
    }

    /// The `traceparent` value, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// The `tracestate` value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }

    /// The trace id as 32 lowercase hex digits (for logs and tests).
    pub fn trace_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(|tp| tp.get(3..35))
    }

    /// The parent span id as 16 lowercase hex digits.
    pub fn span_id(&self) -> Option<&str> {
        self.traceparent.as_deref().and_then(|tp| tp.get(36..52))
    }

    /// Make `span` a child of this context. Call it after creating the span and before
    /// entering it (or instrumenting a future with it); a span that has already started
    /// cannot change parent, and then gets a link to this context instead. No-op when the
    /// context is empty.
    pub fn attach(&self, span: &tracing::Span) {
        let Some(cx) = self.otel_context() else {
            return;
        };
        match span.set_parent(cx) {
            Ok(()) => {}
            Err(SetParentError::AlreadyStarted) => {
                tracing::debug!(trace.parent = ?self.traceparent, "Span already started; linking instead of parenting.");
                self.link_to(span);
            }
            // No OpenTelemetry layer (export off) or the span is filtered out: nothing to do.
            Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) => {}
        }
    }

    /// Add a link from `span` to this context: for batched work (a persister flush, a
    /// Kafka batch) whose events come from many traces. No-op when the context is empty.
    pub fn link_to(&self, span: &tracing::Span) {
        if let Some(cx) = self.otel_context() {
            span.add_link(cx.span().span_context().clone());
        }
    }

    fn otel_context(&self) -> Option<opentelemetry::Context> {
        let tp = self.traceparent.as_deref()?;
        let mut carrier = Carrier::default();
        carrier.0.insert(TRACEPARENT_HEADER.to_string(), tp.to_string());
        if let Some(ts) = &self.tracestate {
            carrier.0.insert(TRACESTATE_HEADER.to_string(), ts.clone());
        }
        let cx = TraceContextPropagator::new().extract(&carrier);
        let valid = cx.span().span_context().is_valid();
        valid.then_some(cx)
    }
}

/// W3C `traceparent` shape: `vv-<32 hex>-<16 hex>-ff`, lowercase; version `ff` is invalid and
/// version `00` has exactly four fields (later versions may append more). The propagator
/// alone accepts short ids, which would then be forwarded in a form other systems refuse.
fn well_formed(tp: &str) -> bool {
    let fields: Vec<&str> = tp.split('-').collect();
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match fields.as_slice() {
        [version, trace, span, flags, rest @ ..] => {
            hex(version, 2)
                && *version != "ff"
                && (rest.is_empty() || *version != "00")
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
        }
        _ => false,
    }
}

/// A text map for the propagator: lowercase header names to values.
#[derive(Default)]
struct Carrier(HashMap<String, String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_ascii_lowercase(), value);
    }
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&key.to_ascii_lowercase()).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn headers_round_trip_keeps_both_values() {
        let cx = TraceContext::from_parts(Some(TP), Some("tally=1,other=x"));
        assert_eq!(cx.traceparent(), Some(TP), "a valid traceparent is kept verbatim");
        assert_eq!(cx.trace_id(), Some("4bf92f3577b34da6a3ce929d0e0e4736"), "trace id is the second field");
        assert_eq!(cx.span_id(), Some("00f067aa0ba902b7"), "span id is the third field");
        let headers = cx.to_headers();
        let back = TraceContext::from_headers(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
        assert_eq!(back, cx, "to_headers -> from_headers is the identity");
        assert_eq!(back.tracestate(), Some("tally=1,other=x"), "tracestate passes through");
    }

    #[test]
    fn header_names_match_case_insensitively_and_others_are_ignored() {
        let headers: Vec<(&str, &[u8])> =
            vec![("content-type", b"application/json"), ("TraceParent", TP.as_bytes()), ("x-other", b"1")];
        let cx = TraceContext::from_headers(headers);
        assert_eq!(cx.traceparent(), Some(TP), "header name case does not matter");
        assert_eq!(cx.tracestate(), None, "no tracestate header means none");
    }

    #[test]
    fn malformed_values_give_an_empty_context() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let cx = TraceContext::from_parts(Some(bad), None);
            assert!(cx.is_empty(), "{bad:?} must be rejected");
            assert!(cx.to_headers().is_empty(), "an empty context writes no headers");
        }
        let not_utf8: Vec<(&str, &[u8])> = vec![("traceparent", &[0xff, 0xfe])];
        assert!(TraceContext::from_headers(not_utf8).is_empty(), "non-UTF-8 header is ignored");
        let huge = format!("{TP}{}", " ".repeat(MAX_HEADER_BYTES));
        assert!(TraceContext::from_parts(Some(&huge), None).is_empty(), "oversized header is ignored");
    }

    #[test]
    fn without_a_subscriber_everything_is_a_no_op() {
        let span = tracing::info_span!("no.subscriber");
        assert!(TraceContext::of(&span).is_empty(), "no OpenTelemetry layer: no context");
        let cx = TraceContext::from_parts(Some(TP), None);
        cx.attach(&span);
        cx.link_to(&span);
        assert!(TraceContext::none().is_empty(), "none() is empty");
    }

    #[test]
    fn or_falls_back_only_when_empty() {
        let received = TraceContext::from_parts(Some(TP), None);
        let own = TraceContext::from_parts(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"), None);
        assert_eq!(
            TraceContext::none().or(received.clone()),
            received,
            "no context of our own: forward the received one"
        );
        assert_eq!(own.clone().or(received), own, "our own context wins");
    }
}
