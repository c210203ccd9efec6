//! A tiny scripted HTTP/1.1 server on 127.0.0.1:0 that replays recorded provider responses.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tally_llm::{EventStream, RetryPolicy, StreamEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound for any single test stream, so a bug hangs no test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between streamed chunks, so the client really reads them one by one.
pub const CHUNK_DELAY: Duration = Duration::from_millis(5);

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How the response body is written.
#[derive(Debug, Clone)]
pub enum Body {
    /// With `content-length`.
    Full(Vec<u8>),
    /// `transfer-encoding: chunked`, one chunk per element with [`CHUNK_DELAY`] between them;
    /// without `terminate` the connection is closed with no final `0` chunk (a dropped stream).
    Chunked {
        chunks: Vec<Vec<u8>>,
        terminate: bool,
    },
    /// No length and no chunking: the body is whatever comes until the server closes.
    UntilClose(Vec<Vec<u8>>),
}

/// One scripted response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Body::Full(body.as_bytes().to_vec()),
        }
    }

    /// An SSE response streamed in the given raw chunks.
    pub fn sse(chunks: Vec<String>) -> Self {
        Self {
            status: 200,
            headers: vec![
                (
                    "content-type".into(),
                    "text/event-stream; charset=utf-8".into(),
                ),
                ("cache-control".into(), "no-cache".into()),
            ],
            body: Body::Chunked {
                chunks: chunks.into_iter().map(String::into_bytes).collect(),
                terminate: true,
            },
        }
    }

    /// The same SSE response, but the connection drops after the last chunk.
    pub fn sse_dropped(chunks: Vec<String>) -> Self {
        let mut reply = Self::sse(chunks);
        if let Body::Chunked { terminate, .. } = &mut reply.body {
            *terminate = false;
        }
        reply
    }

    /// The same SSE response without chunking: the server just closes after the last chunk.
    pub fn sse_until_close(chunks: Vec<String>) -> Self {
        let mut reply = Self::sse(chunks);
        reply.body = Body::UntilClose(reply_chunks(reply.body));
        reply
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn reply_chunks(body: Body) -> Vec<Vec<u8>> {
    match body {
        Body::Full(b) => vec![b],
        Body::Chunked { chunks, .. } | Body::UntilClose(chunks) => chunks,
    }
}

/// The scripted server. The n-th request gets the n-th reply (the last one repeats).
pub struct MockServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    pub async fn start(replies: Vec<Reply>) -> Self {
        assert!(
            !replies.is_empty(),
            "a mock server needs at least one reply"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(replies);
        let counter = Arc::new(AtomicUsize::new(0));
        let recorded = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let replies = Arc::clone(&replies);
                let counter = Arc::clone(&counter);
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    serve(socket, replies, counter, recorded).await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut socket: TcpStream,
    replies: Arc<Vec<Reply>>,
    counter: Arc<AtomicUsize>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
) {
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    recorded.lock().unwrap().push(request);
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let reply = replies[n.min(replies.len() - 1)].clone();
    let _ = write_reply(&mut socket, reply).await;
}

async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        529 => "Site Overloaded",
        _ => "Whatever",
    }
}

async fn write_reply(socket: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    head.push_str("connection: close\r\n");
    head.push_str("request-id: req_011CTestMockServer\r\n");
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match reply.body {
        Body::Full(body) => {
            head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(&body).await?;
        }
        Body::Chunked { chunks, terminate } => {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            for chunk in chunks {
                socket
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                socket.write_all(&chunk).await?;
                socket.write_all(b"\r\n").await?;
                socket.flush().await?;
                tokio::time::sleep(CHUNK_DELAY).await;
            }
            if terminate {
                socket.write_all(b"0\r\n\r\n").await?;
            }
        }
        Body::UntilClose(chunks) => {
            head.push_str("\r\n");
            socket.write_all(head.as_bytes()).await?;
            for chunk in chunks {
                socket.write_all(&chunk).await?;
                socket.flush().await?;
                tokio::time::sleep(CHUNK_DELAY).await;
            }
        }
    }
    socket.flush().await?;
    socket.shutdown().await
}

/// A fast retry policy for tests.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
        jitter: true,
    }
}

/// Drain a stream (bounded by [`TEST_TIMEOUT`]).
pub async fn collect(stream: EventStream) -> Vec<StreamEvent> {
    tokio::time::timeout(TEST_TIMEOUT, stream.collect::<Vec<_>>())
        .await
        .expect("stream ends within the test timeout")
}

/// Concatenate all deltas.
pub fn joined_deltas(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Delta(d) => Some(d.as_str()),
            _ => None,
        })
        .collect()
}

/// Assert that exactly one terminal event exists and that it is the last one.
pub fn assert_single_terminal_last(events: &[StreamEvent]) {
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event: {events:?}");
    assert!(
        events.last().is_some_and(StreamEvent::is_terminal),
        "the terminal event is last: {events:?}"
    );
}

/// One SSE frame as Anthropic writes it.
pub fn frame(event: &str, data: &str) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}
