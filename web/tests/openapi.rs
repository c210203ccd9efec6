//! The API contract: every registered route and every error code is in the OpenAPI document; it is served with its docs page; text with NUL is refused alike on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_json::{json, Value};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::Store;
use tally_web::{AppState, HttpConfig};

const CATALOG: &str = include_str!("../../catalog/prices.json");
const PG_URL_VAR: &str = "TALLY_TEST_POSTGRES_URL";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The sources that register routes on a node: the web crate, and the collector's ingest
/// routes (mounted on a node in embedded mode).
fn route_sources() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&workspace().join("web/src"), &mut files);
    files.push(workspace().join("collector/src/http.rs"));
    files.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect()
}

/// `{name:regex}` -> `{name}`, as OpenAPI writes path parameters.
fn openapi_path(actix: &str) -> String {
    Regex::new(r"\{(\w+):[^}]*\}").unwrap().replace_all(actix, "{$1}").into_owned()
}

/// Every (method, path) registered in the sources: `#[get("..")]`-style macros, `.route("..",
/// web::post()..)`, and `web::resource(..)..route(web::get()..)`; paths given as constants
/// (`EVENTS_PATH`, `SPEC_PATH`) are resolved from their `const` items.
fn registered_routes() -> BTreeSet<(String, String)> {
    let sources = route_sources();
    let consts: BTreeMap<String, String> = {
        let re = Regex::new(r#"const (\w+): &str = "([^"]*)";"#).unwrap();
        sources.iter().flat_map(|(_, s)| re.captures_iter(s).map(|c| (c[1].to_string(), c[2].to_string())).collect::<Vec<_>>()).collect()
    };
    let resolve = |raw: &str| -> String {
        let raw = raw.trim();
        match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            Some(literal) => literal.to_string(),
            None => consts.get(raw).unwrap_or_else(|| panic!("route path constant {raw} is not a `const &str` in the sources")).clone(),
        }
    };
    let macro_re = Regex::new(r#"#\[(get|post|put|patch|delete)\("([^"]+)"\)\]"#).unwrap();
    let route_re = Regex::new(r#"\.route\(\s*("[^"]+"|[A-Z_]+)\s*,\s*web::(get|post|put|patch|delete)\(\)"#).unwrap();
    let resource_re = Regex::new(r#"(?s)web::resource\(\s*("[^"]+"|[A-Z_]+)\s*\)(.*?);"#).unwrap();
    let method_re = Regex::new(r"web::(get|post|put|patch|delete)\(\)").unwrap();
    let mut out = BTreeSet::new();
    for (file, src) in &sources {
        // Test modules register throwaway routes.
        let src = src.split("#[cfg(test)]").next().unwrap_or_default();
        for c in macro_re.captures_iter(src) {
            out.insert((c[1].to_string(), openapi_path(&c[2])));
        }
        for c in route_re.captures_iter(src) {
            out.insert((c[2].to_string(), openapi_path(&resolve(&c[1]))));
        }
        for c in resource_re.captures_iter(src) {
            let methods: Vec<_> = method_re.captures_iter(&c[2]).map(|m| m[1].to_string()).collect();
            assert!(!methods.is_empty(), "{}: web::resource({}) registers no method the test can read", file.display(), &c[1]);
            for m in methods {
                out.insert((m, openapi_path(&resolve(&c[1]))));
            }
        }
    }
    out
}

fn spec() -> Value {
    serde_json::from_str(&tally_web::openapi::spec_json().unwrap()).unwrap()
}

fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_registered_route_is_in_the_spec_and_every_operation_is_registered() {
    let registered = registered_routes();
    assert!(registered.len() >= 70, "the source scan finds the node's routes (found {}): {registered:?}", registered.len());
    for expected in [("post", "/v1/events"), ("post", "/v1/chat/completions"), ("get", "/api/dashboard/stream"), ("get", "/{tail}")] {
        let expected = (expected.0.to_string(), expected.1.to_string());
        assert!(registered.contains(&expected), "the scan sees {expected:?} (ingest, gateway, SSE, SPA)");
    }
    let spec = spec();
    let documented = operations(&spec);
    // Swagger UI's own asset route sits under the documented `/docs` page.
    let registered: BTreeSet<_> = registered.into_iter().filter(|(_, p)| !p.starts_with("/docs/")).collect();
    let missing: Vec<_> = registered.difference(&documented).collect();
    assert!(missing.is_empty(), "registered routes missing from /openapi.json: {missing:?}");
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(unregistered.is_empty(), "operations in /openapi.json that no code registers: {unregistered:?}");
}

#[test]
fn the_spec_is_openapi_3_1_with_bearer_security_and_error_answers() {
    let spec = spec();
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "OpenAPI 3.1: {}", spec["openapi"]);
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "an HTTP bearer scheme");
    assert!(spec["components"]["schemas"]["ErrorBody"]["properties"]["code"].is_object(), "the error body schema");
    // Public in the spec exactly where the access table says so (`{tail:.*}` is `{tail}` in the spec).
    let public: Vec<String> = tally_web::auth::ROUTES
        .iter()
        .filter(|(_, _, a)| *a == tally_web::auth::Access::Public)
        .map(|(_, p, _)| p.replace("{tail:.*}", "{tail}"))
        .collect();
    let public: Vec<&str> = public.iter().map(String::as_str).collect();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert_eq!(secured, !public.contains(&path.as_str()), "{method} {path}: bearer security unless public");
            if path.starts_with("/api/") {
                for status in ["400", "401", "403", "404", "500", "503"] {
                    let r = &op["responses"][status];
                    assert!(r.is_object(), "{method} {path} documents {status}");
                }
                let err = &op["responses"]["401"]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(err, "#/components/schemas/ErrorBody", "{method} {path}: errors use ErrorBody");
                if op.get("requestBody").is_some() {
                    assert!(op["responses"]["413"].is_object(), "{method} {path} has a body: documents 413");
                }
            }
        }
    }
}

/// Codes that only ever reach a client as 500 `internal` (the specific code is logged).
const INTERNAL_ONLY: [&str; 6] = ["invalid_catalog", "history_not_contiguous", "invalid_cost", "rng", "invalid_budget", "database"];

#[test]
fn every_error_code_the_sources_raise_is_in_the_spec() {
    let spec = spec();
    let listed: BTreeSet<String> = spec["x-error-codes"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|v| v.as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()))
        .collect();
    let ws = workspace();
    let mut files = Vec::new();
    rust_files(&ws.join("web/src"), &mut files);
    // Codes of the domain, forecast and chat-turn errors reach the API through `From` impls.
    files.extend(["domain/src/error.rs", "forecast/src/error.rs", "actors/src/thread.rs", "actors/src/error.rs"].map(|f| ws.join(f)));
    let raise = Regex::new(
        r#"(?:bad_request|not_found|bad|invalid|Internal \{ code:|Unavailable \{ code:|Conflict \{ code:|NotFound \{ code:|Unprocessable \{ code:|RateLimited \{ code:|Invalid \{ code:|Unauthorized \{ code:|Forbidden \{ code:|PaymentRequired \{ code:)\(?\s*"([a-z_]+)""#,
    )
    .unwrap();
    let code_fn = Regex::new(r#"=> "([a-z_]+)",?"#).unwrap();
    let mut found = BTreeSet::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let src = src.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(raise.captures_iter(src).map(|c| c[1].to_string()));
        // `fn code(&self)` tables of the error enums.
        if let Some(body) = src.split("pub fn code(&self) -> &'static str {").nth(1) {
            let table = body.split("\n    }\n").next().unwrap_or_default();
            found.extend(code_fn.captures_iter(table).map(|c| c[1].to_string()));
        }
    }
    assert!(found.len() >= 60, "the scan finds the codes ({}): {found:?}", found.len());
    assert!(found.contains("invalid_text") && found.contains("user_not_found"), "known codes are found: {found:?}");
    let missing: Vec<_> = found.iter().filter(|c| !listed.contains(*c) && !INTERNAL_ONLY.contains(&c.as_str())).collect();
    assert!(missing.is_empty(), "error codes raised in the sources but missing from the spec's x-error-codes: {missing:?}");
}

/// A node over `db_url` with the same middleware and routes `tally serve` mounts (minus the
/// gateway's and the scheduler's, which need more wiring and have their own tests).
struct Node {
    base: String,
    handle: actix_web::dev::ServerHandle,
    actors: ActorSystem,
    client: reqwest::Client,
}

impl Node {
    async fn start(db_url: &str) -> Node {
        let store = Store::open(db_url).unwrap();
        let catalog = Catalog::parse(CATALOG).unwrap();
        store.seed(&catalog).unwrap();
        let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(1) });
        let router = Arc::new(ProviderRouter::new(None, None, sim));
        let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
        let actors = ActorSystem::start(store, cache, router, ActorSystemConfig::default()).unwrap();
        let state = AppState::new(actors.clone(), catalog.default_model.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(tally_web::text::reject_nul))
                .configure(tally_web::configure(state.clone(), HttpConfig::default()))
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Node { base: format!("http://{addr}"), handle, actors, client: reqwest::Client::new() }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.handle.stop(false).await;
        self.actors.drain().await.unwrap();
    }
}

/// A fresh PostgreSQL database (through the admin URL in `TALLY_TEST_POSTGRES_URL`).
fn postgres_database() -> String {
    let admin = std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
        panic!("{PG_URL_VAR} is not set: run `scripts/services.sh start` and `eval \"$(scripts/services.sh env)\"`")
    });
    let name = format!("tally_openapi_{}", uuid::Uuid::now_v7().simple());
    let ok = Command::new("psql").args([admin.as_str(), "-q", "-c", &format!("CREATE DATABASE \"{name}\"")]).status().unwrap();
    assert!(ok.success(), "CREATE DATABASE through {PG_URL_VAR}");
    let (server, _) = admin.rsplit_once('/').expect("the admin URL has a database part");
    format!("{server}/{name}")
}

/// NUL in a body field, a query string or a path: 400 `invalid_text`, and nothing stored.
async fn nul_text_is_refused_alike(node: &Node) {
    use reqwest::Method;
    let (s, user) = node.send(Method::POST, "/api/users/", Some(json!({"user_id": "nul-owner", "username": "Owner"}))).await;
    assert_eq!(s, 201, "a plain user is created: {user}");
    let refused = [
        ("username", "/api/users/", json!({"user_id": "nul-1", "username": "a\u{0}b"})),
        ("email", "/api/users/", json!({"user_id": "nul-2", "email": "a\u{0}@example.com"})),
        ("thread title", "/api/threads/", json!({"user_id": "nul-owner", "title": "t\u{0}"})),
    ];
    for (what, path, body) in refused {
        let (s, b) = node.send(Method::POST, path, Some(body)).await;
        assert_eq!((s, b["code"].as_str()), (400, Some("invalid_text")), "NUL in the {what}: 400 invalid_text, got {b}");
        assert!(b.get("request_id").is_none(), "a 400 carries no request id: {b}");
    }
    let (s, thread) = node.send(Method::POST, "/api/threads/", Some(json!({"user_id": "nul-owner", "title": "ok"}))).await;
    assert_eq!(s, 201, "a plain thread is created: {thread}");
    let thread_id = thread["thread"]["thread_id"].as_str().or(thread["thread_id"].as_str()).unwrap().to_string();
    let (s, b) =
        node.send(Method::POST, "/api/messages/", Some(json!({"thread_id": thread_id, "user_id": "nul-owner", "content": "hi\u{0}"}))).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_text")), "NUL in message content: {b}");
    let (s, b) = node.send(Method::GET, "/api/threads/?user_id=nul%00owner", None).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_text")), "NUL in a query string: {b}");
    let (s, b) = node.send(Method::GET, "/api/users/nul%00owner", None).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_text")), "NUL in a path: {b}");
    // Nothing refused was stored; the thread has no message.
    let (_, users) = node.send(Method::GET, "/api/users/?limit=1000", None).await;
    let ids: Vec<&str> = users.as_array().unwrap().iter().filter_map(|u| u["user_id"].as_str()).collect();
    assert!(!ids.contains(&"nul-1") && !ids.contains(&"nul-2"), "refused users were not stored: {ids:?}");
    let (_, history) = node.send(Method::GET, &format!("/api/messages/{thread_id}/history"), None).await;
    assert_eq!(history["messages"].as_array().map(Vec::len), Some(0), "the refused message was not stored: {history}");
    // A backslash followed by `u0000` is text, not NUL, and is stored as given.
    let literal = "a\\u0000b";
    let (s, u) = node.send(Method::POST, "/api/users/", Some(json!({"user_id": "nul-3", "username": literal}))).await;
    assert_eq!((s, u["username"].as_str()), (201, Some(literal)), "escaped-backslash text is kept: {u}");
}

#[actix_rt::test]
async fn nul_text_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&format!("sqlite://{}", dir.path().join("tally.db").display())).await;
    nul_text_is_refused_alike(&node).await;
    node.stop().await;
}

#[actix_rt::test]
async fn nul_text_is_refused_on_postgres() {
    let node = Node::start(&postgres_database()).await;
    nul_text_is_refused_alike(&node).await;
    node.stop().await;
}

#[actix_rt::test]
async fn spec_and_offline_docs_are_served_and_the_spa_still_catches_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&format!("sqlite://{}", dir.path().join("tally.db").display())).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = |p: &str| format!("{}{p}", node.base);

    let resp = client.get(url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "/openapi.json is served");
    let served: Value = resp.json().await.unwrap();
    assert_eq!(served, spec(), "the served document is the generated one");

    let resp = client.get(url("/docs")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 308, "/docs is not taken by the SPA's catch-all");
    assert_eq!(resp.headers()["location"], "/docs/", "/docs redirects to the page");
    let page = client.get(url("/docs/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200, "the docs page");
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "Swagger UI's page: {html}");
    assert!(!html.contains("https://") || !html.contains("<script src=\"https://"), "no script from the internet: {html}");
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-initializer.js"] {
        let resp = client.get(url(asset)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{asset} is embedded in the binary");
        let body = resp.text().await.unwrap();
        assert!(body.len() > 100, "{asset} has content");
        if asset.ends_with("initializer.js") {
            assert!(body.contains("/openapi.json"), "the page loads this node's document: {body}");
        }
    }
    let spa = client.get(url("/analytics")).send().await.unwrap();
    assert_eq!(spa.status().as_u16(), 200, "client-side routes still get the SPA");
    let (s, b) = node.send(reqwest::Method::GET, "/api/nope", None).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("route_not_found")), "unknown API paths stay 404: {b}");
    node.stop().await;
}

/// Findings of scripts/schemathesis.sh, each kept fixed in the spec.
#[test]
fn schemathesis_findings_stay_fixed() {
    let spec = spec();
    // ST105: /metrics answers OpenMetrics text, not text/plain.
    let metrics = &spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
    assert!(metrics.get("application/openmetrics-text").is_some(), "/metrics documents its real content type: {metrics}");
    // ST103: rotating a revoked key is 409 key_revoked.
    let rotate = &spec["paths"]["/api/keys/{key_id}/rotate"]["post"]["responses"];
    assert!(rotate["409"].is_object(), "rotate documents 409 (key_revoked): {rotate}");
}
