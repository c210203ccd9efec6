//! A real OTLP/HTTP trace receiver for tests (`testing` feature): listens on 127.0.0.1:0,
//! accepts `POST /v1/traces` protobuf exports, decodes them with `opentelemetry-proto`
//! and records every span, so a test can assert on the span tree a code path produced.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tally_observability::testing::OtlpReceiver;
//! use tally_observability::{init_with, LogFormat, TelemetryConfig};
//! let receiver = OtlpReceiver::start()?;
//! let mut config = TelemetryConfig::from_env("tally-test", LogFormat::Human, Some("node-a"));
//! config.otlp_endpoint = Some(receiver.endpoint());
//! let guard = init_with(config)?;
//! // ... run the code under test, then:
//! guard.force_flush()?;
//! println!("{}", receiver.span_tree_of("chat.turn"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message as _;

/// How often idle sockets check whether the receiver is stopping.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Largest export request accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
/// Largest request head accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The OTLP/HTTP traces path.
pub const TRACES_PATH: &str = "/v1/traces";

/// A span link as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedLink {
    /// Linked trace id, 32 hex digits.
    pub trace_id: String,
    /// Linked span id, 16 hex digits.
    pub span_id: String,
}

/// One span as received, ids in lowercase hex.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Span name (the tracing span name, or its `otel.name` field).
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: &'static str,
    /// Start time, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// End time, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// Span attributes rendered as text (ints, bools and doubles in decimal).
    pub attributes: BTreeMap<String, String>,
    /// Links to other spans.
    pub links: Vec<ReceivedLink>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// Resource attributes of the exporting process (`service.name`, `service.instance.id`, ...).
    pub resource: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's value, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The exporting process's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource.get("service.name").map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<ReceivedSpan>,
    requests: usize,
    rejected: Vec<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not hide the spans from the others.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An OTLP/HTTP trace receiver on 127.0.0.1; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReceiver").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Listen on 127.0.0.1 on a free port.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("otlp-receiver".into())
                .spawn(move || accept_loop(listener, shared, stop))?
        };
        Ok(OtlpReceiver { addr, shared, stop, accept: Some(accept) })
    }

    /// Base URL to use as `OTEL_EXPORTER_OTLP_ENDPOINT` / [`crate::TelemetryConfig::otlp_endpoint`].
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// The spans of one trace, by start time.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let mut spans: Vec<_> = self.shared.lock().spans.iter().filter(|s| s.trace_id == trace_id).cloned().collect();
        spans.sort_by_key(|s| s.start_unix_nanos);
        spans
    }

    /// The first received span named `name`.
    pub fn span_named(&self, name: &str) -> Option<ReceivedSpan> {
        self.shared.lock().spans.iter().find(|s| s.name == name).cloned()
    }

    /// Wait until `done` holds for the received spans or `timeout` passes; returns the spans
    /// either way (assert on them).
    pub fn wait_for<F>(&self, timeout: Duration, done: F) -> Vec<ReceivedSpan>
    where
        F: Fn(&[ReceivedSpan]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let now = Instant::now();
            if done(&state.spans) || now >= deadline {
                return state.spans.clone();
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Export requests received (accepted or not).
    pub fn export_requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// Why requests were refused (wrong path, undecodable body, ...).
    pub fn rejected(&self) -> Vec<String> {
        self.shared.lock().rejected.clone()
    }

    /// The span tree of the trace containing the first span named `name`, one span per
    /// line, indented two spaces per level, children by start time; links shown as `~>`
    /// followed by the linked span's name when it was received. Empty when no such span.
    pub fn span_tree_of(&self, name: &str) -> String {
        match self.span_named(name) {
            Some(span) => self.span_tree(&span.trace_id),
            None => String::new(),
        }
    }

    /// The span tree of one trace (see [`OtlpReceiver::span_tree_of`]).
    pub fn span_tree(&self, trace_id: &str) -> String {
        let all = self.spans();
        let spans: Vec<&ReceivedSpan> = {
            let mut v: Vec<_> = all.iter().filter(|s| s.trace_id == trace_id).collect();
            v.sort_by_key(|s| s.start_unix_nanos);
            v
        };
        let known = |id: &Option<String>| id.as_ref().is_some_and(|p| spans.iter().any(|s| &s.span_id == p));
        let mut out = String::new();
        for root in spans.iter().filter(|s| !known(&s.parent_span_id)) {
            write_tree(&mut out, &all, &spans, root, 0);
        }
        out
    }
}

fn write_tree(out: &mut String, all: &[ReceivedSpan], spans: &[&ReceivedSpan], span: &ReceivedSpan, depth: usize) {
    out.push_str(&"  ".repeat(depth));
    out.push_str(&span.name);
    for link in &span.links {
        let target = all.iter().find(|s| s.span_id == link.span_id).map_or("?", |s| s.name.as_str());
        out.push_str(&format!(" ~> {target}"));
    }
    out.push('\n');
    for child in spans.iter().filter(|s| s.parent_span_id.as_deref() == Some(span.span_id.as_str())) {
        write_tree(out, all, spans, child, depth + 1);
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept.take() {
            // The accept loop only ends by seeing the flag; a panic there is already reported.
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (conn_shared, conn_stop) = (shared.clone(), stop.clone());
                let spawned = std::thread::Builder::new()
                    .name("otlp-receiver-conn".into())
                    .spawn(move || serve_connection(stream, &conn_shared, &conn_stop));
                if let Err(e) = spawned {
                    shared.lock().rejected.push(format!("cannot spawn a connection thread: {e}"));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL_INTERVAL),
            Err(e) => {
                shared.lock().rejected.push(format!("accept failed: {e}"));
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn serve_connection(mut stream: TcpStream, shared: &Shared, stop: &AtomicBool) {
    // Accepted sockets may inherit the listener's non-blocking mode on some platforms.
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL_INTERVAL)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    loop {
        let request = match read_request(&mut stream, &mut buf, stop) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                shared.lock().rejected.push(format!("bad request: {e}"));
                let _ = stream.write_all(&response(400, "Bad Request"));
                return;
            }
        };
        let (status, reason) = handle(shared, &request);
        if stream.write_all(&response(status, reason)).is_err() {
            return;
        }
        if request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return;
        }
    }
}

fn response(status: u16, reason: &str) -> Vec<u8> {
    // An empty ExportTraceServiceResponse encodes to zero bytes.
    format!("HTTP/1.1 {status} {reason}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
        .into_bytes()
}

fn handle(shared: &Shared, request: &Request) -> (u16, &'static str) {
    let refuse = |why: String, status: u16, reason: &'static str| {
        let mut state = shared.lock();
        state.requests += 1;
        state.rejected.push(why);
        shared.changed.notify_all();
        (status, reason)
    };
    if request.method != "POST" || request.path != TRACES_PATH {
        return refuse(format!("{} {}: not an OTLP traces export", request.method, request.path), 404, "Not Found");
    }
    if request.header("content-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        return refuse("compressed exports are not supported".into(), 415, "Unsupported Media Type");
    }
    if request.header("content-type").is_some_and(|v| !v.starts_with("application/x-protobuf")) {
        return refuse("only application/x-protobuf exports are supported".into(), 415, "Unsupported Media Type");
    }
    let export = match ExportTraceServiceRequest::decode(request.body.as_slice()) {
        Ok(e) => e,
        Err(e) => return refuse(format!("undecodable export: {e}"), 400, "Bad Request"),
    };
    let spans = received_spans(export);
    let mut state = shared.lock();
    state.requests += 1;
    state.spans.extend(spans);
    shared.changed.notify_all();
    (200, "OK")
}

fn received_spans(export: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in export.resource_spans {
        let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                    name: span.name,
                    kind: match span.kind {
                        1 => "internal",
                        2 => "server",
                        3 => "client",
                        4 => "producer",
                        5 => "consumer",
                        _ => "unspecified",
                    },
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|l| ReceivedLink { trace_id: hex(&l.trace_id), span_id: hex(&l.span_id) })
                        .collect(),
                    status: match span.status.map(|s| s.code) {
                        Some(1) => "ok",
                        Some(2) => "error",
                        _ => "unset",
                    },
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(render_value).unwrap_or_default())).collect()
}

fn render_value(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            format!("[{}]", a.values.iter().map(render_value).collect::<Vec<_>>().join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => format!("{:?}", attributes(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(_) | None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Read one request; `Ok(None)` when the peer closed between requests or the receiver stops.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, stop: &AtomicBool) -> std::io::Result<Option<Request>> {
    let invalid = |msg: String| std::io::Error::new(ErrorKind::InvalidData, msg);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(head_end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| invalid(format!("head is not UTF-8: {e}")))?;
            let mut lines = head.split("\r\n");
            let request_line = lines.next().unwrap_or_default();
            let mut parts = request_line.split_whitespace();
            let (method, path) = match (parts.next(), parts.next()) {
                (Some(m), Some(p)) => (m.to_string(), p.to_string()),
                _ => return Err(invalid(format!("bad request line {request_line:?}"))),
            };
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let request = Request { method, path, headers, body: Vec::new() };
            let body_start = head_end + 4;
            let chunked = request.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let complete = if chunked {
                dechunk(&buf[body_start..])?.map(|(body, used)| (body, body_start + used))
            } else {
                let len: usize = match request.header("content-length") {
                    Some(v) => v.parse().map_err(|_| invalid(format!("bad content-length {v:?}")))?,
                    None => 0,
                };
                if len > MAX_REQUEST_BYTES {
                    return Err(invalid(format!("body of {len} bytes is too large")));
                }
                (buf.len() >= body_start + len).then(|| (buf[body_start..body_start + len].to_vec(), body_start + len))
            };
            if let Some((body, used)) = complete {
                buf.drain(..used);
                return Ok(Some(Request { body, ..request }));
            }
        } else if buf.len() > MAX_HEAD_BYTES {
            return Err(invalid("request head too large".into()));
        }
        if buf.len() > MAX_REQUEST_BYTES + MAX_HEAD_BYTES {
            return Err(invalid("request too large".into()));
        }
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(invalid("connection closed mid-request".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Decode a chunked body; `Ok(None)` when more bytes are needed.
fn dechunk(data: &[u8]) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&data[pos..pos + line_end]).unwrap_or_default();
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, format!("bad chunk size {size_text:?}")))?;
        let start = pos + line_end + 2;
        if size == 0 {
            // No trailers are sent by OTLP exporters: the body ends with an empty line.
            return Ok((data.len() >= start + 2).then_some((body, start + 2)));
        }
        if data.len() < start + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[start..start + size]);
        pos = start + size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_reassembles_and_waits_for_more() {
        let data = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            dechunk(data).ok().flatten(),
            Some((b"hello world".to_vec(), data.len())),
            "two chunks and the terminator decode to the whole body"
        );
        assert_eq!(dechunk(&data[..10]).ok().flatten(), None, "a partial body needs more bytes");
    }

    #[test]
    fn wrong_path_is_refused_and_counted() {
        let Ok(receiver) = OtlpReceiver::start() else { panic!("receiver must start") };
        let Ok(mut s) = TcpStream::connect(receiver.addr) else { panic!("connect to receiver") };
        let sent = s.write_all(b"POST /v1/logs HTTP/1.1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        assert!(sent.is_ok(), "request is written");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 404"), "logs are not accepted: {reply}");
        assert_eq!(receiver.export_requests(), 1, "the refused request is counted");
        assert!(receiver.spans().is_empty(), "no spans recorded");
    }
}
