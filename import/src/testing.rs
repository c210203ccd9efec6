//! A local server that speaks both providers' report formats, for tests (feature `testing`).
//!
//! # API
//!
//! ```ignore
//! use tally_import::testing::{self, Failure, FakeProvider};
//!
//! let fake = FakeProvider::start("sk-ant-admin01-test");   // 127.0.0.1:0, its own thread
//! fake.set(|d| {                                           // d: &mut FakeData
//!     d.anthropic_usage.push(testing::anthropic_bucket(
//!         "2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z",
//!         vec![testing::anthropic_usage_result(Some("claude-3-5-haiku-20241022"), 100, 10)]));
//!     d.anthropic_costs.push(testing::anthropic_bucket(
//!         "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z",
//!         vec![testing::anthropic_cost_result("123.78912", Some("Claude 3.5 Haiku Usage - Input Tokens"))]));
//!     d.openai_usage.push(testing::openai_bucket(1_730_419_200, 1_730_422_800,
//!         vec![testing::openai_usage_result(Some("gpt-4o-mini"), 1000, 500, 5)]));
//!     d.openai_costs.push(testing::openai_bucket(1_730_419_200, 1_730_505_600,
//!         vec![testing::openai_cost_result(json!("12.50"), Some("Text tokens"))]));  // or json!(0.06)
//!     d.page_size = 2;                          // buckets per page (0: the request's `limit`)
//!     d.fill_empty_buckets = true;              // every interval of the asked range, `results: []`
//!     d.failures.push_back(Failure::status(429, Some(1)));   // then the real answer
//!     d.failures.push_back(Failure::status(500, None));
//!     d.failures.push_back(Failure::error(403, "permission_error", "not an admin key"));
//!     d.failures.push_back(Failure::body("{\"data\": ["));    // a 200 with a malformed body
//! });
//! let cfg = fake.config(Provider::Anthropic);  // base_url, the key, no pacing, 3 retries
//! // ... fetch ...
//! fake.set(|d| d.anthropic_usage[0]["results"][0]["output_tokens"] = json!(11)); // revised late bucket
//! let sent = fake.requests();                  // path, query, params, auth, user agent
//! ```
//!
//! # Behaviour
//!
//! - Routes: `GET /v1/organizations/usage_report/messages`, `GET /v1/organizations/cost_report`
//!   (Anthropic: `x-api-key` and `anthropic-version` required) and
//!   `GET /v1/organization/usage/completions`, `GET /v1/organization/costs` (OpenAI:
//!   `Authorization: Bearer`). A wrong or missing key gets the provider's 401 error body.
//! - The query is checked as the provider documents it (required start, bucket widths, `limit`
//!   bounds, `group_by[]` values for Anthropic, `group_by` or `group_by[]` for OpenAI); a bad
//!   one gets a 400 in the provider's error shape.
//! - Buckets are served as given (so a test controls every byte: string or number amounts,
//!   null dimensions, partial buckets, bad values), sorted by start and kept to the asked range
//!   (a bucket is served when its start is in `[start, end)`), `page_size` per page with an
//!   opaque base64 `next_page`. Anthropic answers `{data, has_more, next_page}`, OpenAI adds
//!   `"object": "page"`.
//! - `failures` are answered first, one per request, whatever the route (after the auth check).
//! - [`FakeProvider::set`] may change the data between calls (a revised late bucket).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::{ClientConfig, Provider, Secret};

/// The body of a scripted failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureBody {
    /// An error in the shape of the provider the request was for.
    ProviderError {
        /// The error type (`rate_limit_error`, `invalid_request_error`, ...).
        kind: String,
        /// The message.
        message: String,
    },
    /// These bytes exactly.
    Raw(String),
}

/// An answer served instead of the next real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: FailureBody,
    /// A `retry-after` header value: seconds (`"2"`) or an HTTP date.
    pub retry_after: Option<String>,
}

impl Failure {
    /// `status` with the provider's error body for it (Anthropic's `error.type` by status:
    /// 429 `rate_limit_error`, 529 `overloaded_error`, 5xx `api_error`, else
    /// `invalid_request_error`), and `retry-after` seconds if given.
    pub fn status(status: u16, retry_after_secs: Option<u64>) -> Failure {
        let kind = match status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        Failure {
            status,
            body: FailureBody::ProviderError { kind: kind.into(), message: format!("fake {status}") },
            retry_after: retry_after_secs.map(|s| s.to_string()),
        }
    }

    /// `status` with the provider's error body of this type and message.
    pub fn error(status: u16, kind: &str, message: &str) -> Failure {
        Failure {
            status,
            body: FailureBody::ProviderError { kind: kind.into(), message: message.into() },
            retry_after: None,
        }
    }

    /// A 200 with this body exactly (malformed JSON, missing fields, bad values...).
    pub fn body(body: &str) -> Failure {
        Failure { status: 200, body: FailureBody::Raw(body.to_string()), retry_after: None }
    }

    /// `status` with this body exactly (an HTML error page...).
    pub fn raw(status: u16, body: &str) -> Failure {
        Failure { status, body: FailureBody::Raw(body.to_string()), retry_after: None }
    }

    /// The same failure with `retry-after` given as an HTTP date.
    pub fn retry_at(mut self, at: DateTime<Utc>) -> Failure {
        self.retry_after = Some(at.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        self
    }
}

/// What the fake serves. Buckets are each provider's exact JSON (see the builders below).
#[derive(Debug, Clone, Default)]
pub struct FakeData {
    /// `usage_report/messages` buckets: `{"starting_at","ending_at","results":[...]}`.
    pub anthropic_usage: Vec<Value>,
    /// `cost_report` buckets: `{"starting_at","ending_at","results":[...]}`.
    pub anthropic_costs: Vec<Value>,
    /// `usage/completions` buckets: `{"object":"bucket","start_time","end_time","results":[...]}`.
    pub openai_usage: Vec<Value>,
    /// `costs` buckets, same shape.
    pub openai_costs: Vec<Value>,
    /// Buckets per page; 0: the request's `limit` (or the documented default).
    pub page_size: usize,
    /// Serve every `bucket_width` interval of the asked range, with `results: []` where no
    /// bucket is given (as the providers do); OpenAI's first bucket then starts at
    /// `start_time` (partial). Needs an end in the query.
    pub fill_empty_buckets: bool,
    /// Answers served first, one per request, instead of real ones.
    pub failures: VecDeque<Failure>,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Decoded query parameters, in order (repeated keys repeated).
    pub params: Vec<(String, String)>,
    /// Whether it carried the right admin key the provider's way (and, for Anthropic, an
    /// `anthropic-version`).
    pub authorized: bool,
    /// `anthropic-version`, if sent.
    pub anthropic_version: Option<String>,
    /// `User-Agent`, if sent.
    pub user_agent: Option<String>,
}

impl RecordedRequest {
    /// Every value of a query parameter.
    pub fn param_values(&self, key: &str) -> Vec<&str> {
        self.params.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The first value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.param_values(key).first().copied()
    }
}

/// An `usage_report/messages` or `cost_report` bucket.
pub fn anthropic_bucket(starting_at: &str, ending_at: &str, results: Vec<Value>) -> Value {
    json!({"starting_at": starting_at, "ending_at": ending_at, "results": results})
}

/// A `MessagesUsageReportItem` with every documented key: `uncached_input` and `output`
/// tokens, zero cache and web search counts (set them on the value), `model` as given, other
/// dimensions null.
pub fn anthropic_usage_result(model: Option<&str>, uncached_input: u64, output: u64) -> Value {
    json!({
        "uncached_input_tokens": uncached_input, "cache_read_input_tokens": 0, "output_tokens": output,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": {"web_search_requests": 0},
        "model": model, "api_key_id": null, "workspace_id": null, "service_tier": null, "context_window": null
    })
}

/// A `CostReportItem` of `amount_cents` (a decimal string of cents, as Anthropic sends it).
pub fn anthropic_cost_result(amount_cents: &str, description: Option<&str>) -> Value {
    json!({
        "currency": "USD", "amount": amount_cents, "workspace_id": null, "description": description,
        "cost_type": if description.is_some() { json!("tokens") } else { Value::Null },
        "context_window": null, "model": null, "service_tier": null, "token_type": null
    })
}

/// A `usage/completions` or `costs` bucket (Unix seconds).
pub fn openai_bucket(start_time: i64, end_time: i64, results: Vec<Value>) -> Value {
    json!({"object": "bucket", "start_time": start_time, "end_time": end_time, "results": results})
}

/// A completions usage result: `input` tokens (cached included), `output`, `requests`, `model`
/// as given, other dimensions null.
pub fn openai_usage_result(model: Option<&str>, input: u64, output: u64, requests: u64) -> Value {
    json!({
        "object": "organization.usage.completions.result",
        "input_tokens": input, "output_tokens": output, "num_model_requests": requests,
        "input_cached_tokens": 0, "input_audio_tokens": 0, "output_audio_tokens": 0,
        "project_id": null, "user_id": null, "api_key_id": null, "model": model, "batch": null, "service_tier": null
    })
}

/// A costs result; `value` is a JSON number (`json!(0.06)`, as the spec says) or a string
/// (`json!("12.50")`, as live answers have shown).
pub fn openai_cost_result(value: Value, line_item: Option<&str>) -> Value {
    json!({
        "object": "organization.costs.result", "amount": {"value": value, "currency": "usd"},
        "line_item": line_item, "project_id": null, "api_key_id": null, "quantity": null, "quantity_unit": null
    })
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
    key: String,
    shared: Arc<Mutex<Shared>>,
    handle: actix_web::dev::ServerHandle,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A test that panicked while holding the lock leaves valid data behind.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            if let Some(v) = hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b'%');
        } else if b == b'+' {
            out.push(b' ');
        } else {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}

/// Which provider an endpoint belongs to, and which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    AnthropicUsage,
    AnthropicCosts,
    OpenAiUsage,
    OpenAiCosts,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        match path {
            "/v1/organizations/usage_report/messages" => Some(Route::AnthropicUsage),
            "/v1/organizations/cost_report" => Some(Route::AnthropicCosts),
            "/v1/organization/usage/completions" => Some(Route::OpenAiUsage),
            "/v1/organization/costs" => Some(Route::OpenAiCosts),
            _ => None,
        }
    }

    fn anthropic(self) -> bool {
        matches!(self, Route::AnthropicUsage | Route::AnthropicCosts)
    }

    fn usage(self) -> bool {
        matches!(self, Route::AnthropicUsage | Route::OpenAiUsage)
    }

    /// Allowed `group_by` values (reference §1.2, §1.3, §2.2, §2.3).
    fn group_by(self) -> &'static [&'static str] {
        match self {
            Route::AnthropicUsage => &[
                "api_key_id",
                "workspace_id",
                "model",
                "service_tier",
                "context_window",
                "inference_geo",
                "speed",
                "account_id",
                "service_account_id",
            ],
            Route::AnthropicCosts => &["workspace_id", "description"],
            Route::OpenAiUsage => &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"],
            Route::OpenAiCosts => &["project_id", "line_item", "api_key_id"],
        }
    }

    /// Default and maximum `limit` for a bucket width.
    fn limits(self, width: &str) -> (usize, usize) {
        match (self, width) {
            (Route::OpenAiCosts, _) => (7, 180),
            (_, "1m") => (60, 1440),
            (_, "1h") => (24, 168),
            _ => (7, 31),
        }
    }
}

/// The provider's error body.
fn error_body(anthropic: bool, kind: &str, message: &str, param: Option<&str>) -> Value {
    if anthropic {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"})
    } else {
        json!({"error": {"message": message, "type": kind, "param": param, "code": null}})
    }
}

fn bad_request(anthropic: bool, message: &str, param: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(error_body(anthropic, "invalid_request_error", message, Some(param)))
}

fn width_of(w: &str) -> Option<TimeDelta> {
    match w {
        "1m" => Some(TimeDelta::minutes(1)),
        "1h" => Some(TimeDelta::hours(1)),
        "1d" => Some(TimeDelta::days(1)),
        _ => None,
    }
}

/// The start of the `width` interval holding `t` (UTC).
fn snap(t: DateTime<Utc>, width: TimeDelta) -> DateTime<Utc> {
    let secs = width.num_seconds().max(1);
    let s = t.timestamp().div_euclid(secs) * secs;
    DateTime::from_timestamp(s, 0).unwrap_or(t)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A bucket's start, whichever provider's shape.
fn bucket_start(b: &Value) -> Option<DateTime<Utc>> {
    match (&b["starting_at"], &b["start_time"]) {
        (Value::String(s), _) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
        (_, Value::Number(n)) => n.as_i64().and_then(|s| DateTime::from_timestamp(s, 0)),
        _ => None,
    }
}

/// The checked query: range, width, page size, page offset.
struct Asked {
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    width: TimeDelta,
    limit: usize,
    offset: usize,
}

fn check_query(route: Route, params: &[(String, String)]) -> Result<Asked, HttpResponse> {
    let anthropic = route.anthropic();
    let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let time = |k: &str| -> Result<Option<DateTime<Utc>>, HttpResponse> {
        let Some(v) = get(k) else { return Ok(None) };
        let t = if anthropic {
            DateTime::parse_from_rfc3339(v).ok().map(|t| t.with_timezone(&Utc))
        } else {
            v.parse::<i64>().ok().and_then(|s| DateTime::from_timestamp(s, 0))
        };
        t.map(Some).ok_or_else(|| bad_request(anthropic, &format!("{k}: invalid value {v:?}"), k))
    };
    let (start_key, end_key) = if anthropic { ("starting_at", "ending_at") } else { ("start_time", "end_time") };
    let from = time(start_key)?.ok_or_else(|| bad_request(anthropic, &format!("{start_key}: field required"), start_key))?;
    let to = time(end_key)?;
    let width_text = get("bucket_width").unwrap_or("1d");
    let width = width_of(width_text)
        .filter(|_| route.usage() || width_text == "1d")
        .ok_or_else(|| bad_request(anthropic, &format!("bucket_width: invalid value {width_text:?}"), "bucket_width"))?;
    let (default_limit, max_limit) = route.limits(width_text);
    let limit = match get("limit") {
        None => default_limit,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max_limit).contains(n))
            .ok_or_else(|| bad_request(anthropic, &format!("limit: must be 1..={max_limit}, got {v:?}"), "limit"))?,
    };
    for (k, v) in params {
        let is_group = if anthropic { k == "group_by[]" } else { k == "group_by" || k == "group_by[]" };
        if is_group && !route.group_by().contains(&v.as_str()) {
            return Err(bad_request(anthropic, &format!("group_by: invalid value {v:?}"), "group_by"));
        }
        if k.starts_with("group_by") && !is_group {
            return Err(bad_request(anthropic, &format!("{k}: unexpected parameter"), k));
        }
    }
    let offset = match get("page") {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix("page_")
            .and_then(|c| BASE64.decode(c).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| bad_request(anthropic, "page: invalid cursor", "page"))?,
    };
    Ok(Asked { from, to, width, limit, offset })
}

/// The buckets of the asked range, oldest first, empty intervals filled when asked.
fn buckets_for(route: Route, given: Vec<Value>, asked: &Asked, fill: bool) -> Vec<Value> {
    let anthropic = route.anthropic();
    // Anthropic snaps `starting_at` to the bucket start; OpenAI's first bucket starts at `start_time`.
    let from = if anthropic { snap(asked.from, asked.width) } else { asked.from };
    let mut inside: Vec<(DateTime<Utc>, Value)> = given
        .into_iter()
        .filter_map(|b| bucket_start(&b).map(|s| (s, b)))
        .filter(|(s, _)| *s >= from && asked.to.is_none_or(|t| *s < t))
        .collect();
    if let (true, Some(to)) = (fill, asked.to) {
        let mut start = from;
        while start < to {
            let end = snap(start, asked.width) + asked.width;
            if !inside.iter().any(|(s, _)| *s == start) {
                let empty = if anthropic {
                    anthropic_bucket(&stamp(start), &stamp(end), vec![])
                } else {
                    openai_bucket(start.timestamp(), end.timestamp(), vec![])
                };
                inside.push((start, empty));
            }
            start = end;
        }
    }
    inside.sort_by_key(|(s, _)| *s);
    inside.into_iter().map(|(_, b)| b).collect()
}

async fn serve(req: HttpRequest, shared: web::Data<Arc<Mutex<Shared>>>) -> HttpResponse {
    let path = req.path().to_string();
    let query = req.query_string().to_string();
    let params = parse_query(&query);
    let route = Route::of(&path);
    let anthropic = route.map_or(path.starts_with("/v1/organizations/"), Route::anthropic);
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let anthropic_version = header("anthropic-version");
    let mut s = lock(&shared);
    let authorized = if anthropic {
        header("x-api-key").as_deref() == Some(s.key.as_str()) && anthropic_version.is_some()
    } else {
        header("authorization") == Some(format!("Bearer {}", s.key))
    };
    s.requests.push(RecordedRequest {
        path: path.clone(),
        query: query.clone(),
        params: params.clone(),
        authorized,
        anthropic_version: anthropic_version.clone(),
        user_agent: header("user-agent"),
    });
    if anthropic && anthropic_version.is_none() {
        return bad_request(true, "anthropic-version: header is required", "anthropic-version");
    }
    if !authorized {
        let body = if anthropic {
            error_body(true, "authentication_error", "invalid x-api-key", None)
        } else {
            json!({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": null,
                             "code": "invalid_api_key"}})
        };
        return HttpResponse::Unauthorized().json(body);
    }
    if let Some(f) = s.data.failures.pop_front() {
        let mut b = HttpResponse::build(StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        if let Some(r) = &f.retry_after {
            b.insert_header(("retry-after", r.clone()));
        }
        let body = match f.body {
            FailureBody::ProviderError { kind, message } => error_body(anthropic, &kind, &message, None).to_string(),
            FailureBody::Raw(raw) => raw,
        };
        return b.content_type("application/json").body(body);
    }
    let Some(route) = route else {
        let kind = if anthropic { "not_found_error" } else { "invalid_request_error" };
        return HttpResponse::NotFound().json(error_body(anthropic, kind, &format!("no route {path}"), None));
    };
    let asked = match check_query(route, &params) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let given = match route {
        Route::AnthropicUsage => s.data.anthropic_usage.clone(),
        Route::AnthropicCosts => s.data.anthropic_costs.clone(),
        Route::OpenAiUsage => s.data.openai_usage.clone(),
        Route::OpenAiCosts => s.data.openai_costs.clone(),
    };
    let inside = buckets_for(route, given, &asked, s.data.fill_empty_buckets);
    let size = if s.data.page_size == 0 { asked.limit } else { s.data.page_size };
    let page: Vec<Value> = inside.iter().skip(asked.offset).take(size).cloned().collect();
    let more = asked.offset + size < inside.len();
    let next = more.then(|| format!("page_{}", BASE64.encode(format!("offset:{}", asked.offset + size))));
    let mut body = json!({"data": page, "has_more": more, "next_page": next});
    if !anthropic {
        body["object"] = json!("page");
    }
    HttpResponse::Ok().json(body)
}

impl FakeProvider {
    /// Start on 127.0.0.1:0 (its own thread and actix runtime), accepting `admin_key` as
    /// Anthropic's `x-api-key` and as OpenAI's bearer token.
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
        FakeProvider { base_url: format!("http://{addr}"), key: admin_key.to_string(), shared, handle }
    }

    /// A client config for this fake: its base URL and key, no pacing, 3 quick retries.
    pub fn config(&self, provider: Provider) -> ClientConfig {
        ClientConfig {
            provider,
            base_url: self.base_url.clone(),
            admin_key: Secret::new(self.key.clone()),
            user_agent: "tally-test/1.0".into(),
            min_interval: Duration::ZERO,
            max_retries: 3,
        }
    }

    /// Change what is served (between fetches: a revised late bucket, new failures...).
    pub fn set(&self, f: impl FnOnce(&mut FakeData)) {
        f(&mut lock(&self.shared).data);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared).requests.clear();
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        // Stop without waiting: the server thread ends when its runtime does.
        drop(self.handle.stop(false));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_decoded() {
        assert_eq!(
            parse_query("group_by%5B%5D=model&page=page_b2Zmc2V0OjI%3D&x"),
            vec![
                ("group_by[]".to_string(), "model".to_string()),
                ("page".to_string(), "page_b2Zmc2V0OjI=".to_string()),
                ("x".to_string(), String::new())
            ],
            "brackets, padding and bare keys"
        );
        assert_eq!(decode("a%2"), "a%2", "a cut escape is kept");
        assert_eq!(decode("100%"), "100%", "a trailing percent is kept");
    }
}
