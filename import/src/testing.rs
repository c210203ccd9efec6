//! A local server that speaks both providers' report formats, for tests (feature `testing`).
//!
//! ```ignore
//! let fake = FakeProvider::start("sk-ant-admin01-test");
//! fake.set(|d| {
//!     d.anthropic_usage.push(json!({"starting_at": "...", "ending_at": "...", "results": [...]}));
//!     d.page_size = 2;                                   // buckets per page
//!     d.failures.push_back(Failure::status(429, Some(1))); // served before the next answer
//! });
//! // ClientConfig { base_url: fake.base_url.clone(), .. }
//! fake.requests();                                       // what was asked: path, query, auth ok
//! ```
//! Buckets are served as given (so a test writes each provider's exact JSON, string or number
//! amounts, nulls...), filtered to the asked range (Anthropic `starting_at`/`ending_at`,
//! OpenAI `start_time`/`end_time`), `page_size` per page with an opaque `next_page`. A wrong
//! key gets the provider's 401 error body. `set` may change the data between fetches (a
//! revised late bucket).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// An answer served instead of the next real one.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Status.
    pub status: u16,
    /// Body (the provider's error shape, or anything).
    pub body: String,
    /// `retry-after` seconds.
    pub retry_after: Option<u64>,
}

impl Failure {
    /// A status with a provider-shaped error body.
    pub fn status(status: u16, retry_after: Option<u64>) -> Failure {
        let kind = match status {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        Failure {
            status,
            body: json!({"type": "error", "error": {"type": kind, "message": format!("fake {status}")}}).to_string(),
            retry_after,
        }
    }

    /// A 200 with this (malformed) body.
    pub fn body(body: &str) -> Failure {
        Failure { status: 200, body: body.to_string(), retry_after: None }
    }
}

/// What the fake serves.
#[derive(Debug, Clone, Default)]
pub struct FakeData {
    /// `usage_report/messages` buckets: `{"starting_at","ending_at","results":[...]}`.
    pub anthropic_usage: Vec<Value>,
    /// `cost_report` buckets.
    pub anthropic_costs: Vec<Value>,
    /// `usage/completions` buckets: `{"object":"bucket","start_time","end_time","results":[...]}`.
    pub openai_usage: Vec<Value>,
    /// `costs` buckets.
    pub openai_costs: Vec<Value>,
    /// Buckets per page (0: all on one page).
    pub page_size: usize,
    /// Answers served first, in order, instead of real ones.
    pub failures: VecDeque<Failure>,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Whether it carried the right admin key the provider's way.
    pub authorized: bool,
}

struct Shared {
    data: FakeData,
    requests: Vec<RecordedRequest>,
    key: String,
}

/// The running fake; stops when dropped.
pub struct FakeProvider {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
    handle: actix_web::dev::ServerHandle,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&decode(s)).ok().map(|t| t.with_timezone(&Utc))
}

async fn serve(req: HttpRequest, shared: web::Data<Arc<Mutex<Shared>>>) -> HttpResponse {
    let path = req.path().to_string();
    let query = req.query_string().to_string();
    let anthropic = path.starts_with("/v1/organizations/");
    let mut s = lock(&shared);
    let authorized = if anthropic {
        req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) == Some(s.key.as_str())
            && req.headers().get("anthropic-version").is_some()
    } else {
        req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(format!("Bearer {}", s.key).as_str())
    };
    s.requests.push(RecordedRequest { path: path.clone(), query: query.clone(), authorized });
    if !authorized {
        let body = if anthropic {
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
        } else {
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})
        };
        return HttpResponse::Unauthorized().json(body);
    }
    if let Some(f) = s.data.failures.pop_front() {
        let mut b = HttpResponse::build(actix_web::http::StatusCode::from_u16(f.status).unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR));
        if let Some(r) = f.retry_after {
            b.insert_header(("retry-after", r.to_string()));
        }
        return b.content_type("application/json").body(f.body);
    }
    let buckets: Vec<Value> = match path.as_str() {
        "/v1/organizations/usage_report/messages" => s.data.anthropic_usage.clone(),
        "/v1/organizations/cost_report" => s.data.anthropic_costs.clone(),
        "/v1/organization/usage/completions" => s.data.openai_usage.clone(),
        "/v1/organization/costs" => s.data.openai_costs.clone(),
        _ => return HttpResponse::NotFound().json(json!({"error": {"message": "no such route", "type": "invalid_request_error"}})),
    };
    // Only the buckets of the asked range.
    let inside: Vec<Value> = if anthropic {
        let from = query_value(&query, "starting_at").and_then(rfc3339);
        let to = query_value(&query, "ending_at").and_then(rfc3339);
        buckets
            .into_iter()
            .filter(|b| {
                let start = b["starting_at"].as_str().and_then(rfc3339);
                from.is_none_or(|f| start.is_some_and(|s| s >= f)) && to.is_none_or(|t| start.is_some_and(|s| s < t))
            })
            .collect()
    } else {
        let from = query_value(&query, "start_time").and_then(|v| v.parse::<i64>().ok());
        let to = query_value(&query, "end_time").and_then(|v| v.parse::<i64>().ok());
        buckets
            .into_iter()
            .filter(|b| {
                let start = b["start_time"].as_i64();
                from.is_none_or(|f| start.is_some_and(|s| s >= f)) && to.is_none_or(|t| start.is_some_and(|s| s < t))
            })
            .collect()
    };
    let offset: usize = query_value(&query, "page")
        .map(decode)
        .and_then(|p| p.strip_prefix("page_").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let size = if s.data.page_size == 0 { inside.len().max(1) } else { s.data.page_size };
    let page: Vec<Value> = inside.iter().skip(offset).take(size).cloned().collect();
    let more = offset + size < inside.len();
    let next = more.then(|| format!("page_{}", offset + size));
    let mut body = json!({"data": page, "has_more": more, "next_page": next});
    if !anthropic {
        body["object"] = json!("page");
    }
    HttpResponse::Ok().json(body)
}

impl FakeProvider {
    /// Start on 127.0.0.1:0 (its own thread and runtime), accepting `admin_key`.
    pub fn start(admin_key: &str) -> FakeProvider {
        let shared =
            Arc::new(Mutex::new(Shared { data: FakeData::default(), requests: Vec::new(), key: admin_key.to_string() }));
        let (tx, rx) = std::sync::mpsc::channel();
        let for_server = shared.clone();
        std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                let data = web::Data::new(for_server);
                let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(serve)))
                    .workers(1)
                    .disable_signals()
                    .bind("127.0.0.1:0");
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let addr = server.addrs().first().copied();
                let running = server.run();
                let _ = tx.send(addr.map(|a| (a, running.handle())).ok_or_else(|| "no address".to_string()));
                let _ = running.await;
            });
        });
        // The fake is test support: failing to start is a broken test machine.
        #[allow(clippy::expect_used)]
        let (addr, handle) = rx.recv().expect("the fake provider thread answers").expect("the fake provider binds 127.0.0.1:0");
        FakeProvider { base_url: format!("http://{addr}"), shared, handle }
    }

    /// Change what is served.
    pub fn set(&self, f: impl FnOnce(&mut FakeData)) {
        f(&mut lock(&self.shared).data);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        // Stop without waiting: the server thread ends when its runtime does.
        drop(self.handle.stop(false));
    }
}
