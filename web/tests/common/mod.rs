//! Shared harness: a real Tally HTTP server on 127.0.0.1:0 over SQLite, plus an SSE reader.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::Catalog;
use tally_llm::{Provider, ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::Store;
use tally_web::{AppState, HttpConfig};

pub const CATALOG: &str = include_str!("../../../catalog/prices.json");
pub const HAIKU: &str = "claude-3-5-haiku-20241022";

pub struct Node {
    pub base: String,
    pub actors: ActorSystem,
    pub handle: actix_web::dev::ServerHandle,
    pub client: reqwest::Client,
    pub db_url: String,
}

impl Node {
    pub async fn start(dir: &tempfile::TempDir) -> Node {
        Self::start_with(dir, None).await
    }

    pub async fn start_with(dir: &tempfile::TempDir, anthropic: Option<Arc<dyn Provider>>) -> Node {
        Self::start_full(dir, anthropic, tally_store::cache::Cache::memory(Default::default()).unwrap()).await
    }

    pub async fn start_full(
        dir: &tempfile::TempDir,
        anthropic: Option<Arc<dyn Provider>>,
        cache: tally_store::cache::Cache,
    ) -> Node {
        Self::start_inner(dir, anthropic, cache, None, ActorSystemConfig::default()).await
    }

    /// A node serving the gateway too: simulated upstreams pausing `token_delay` between
    /// streamed tokens, the in-process budget ledger, and alerts to `alerts` when given.
    pub async fn start_gateway(
        dir: &tempfile::TempDir,
        token_delay: Duration,
        alerts: Option<tally_web::gateway::alerts::AlertWebhook>,
    ) -> Node {
        let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
        Self::start_inner(dir, None, cache, Some((token_delay, alerts)), ActorSystemConfig::default()).await
    }

    /// The gateway node whose writes wait `flush_interval` in the persister before they commit.
    pub async fn start_gateway_slow_writes(dir: &tempfile::TempDir, token_delay: Duration, flush_interval: Duration) -> Node {
        let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
        let mut config = ActorSystemConfig::default();
        config.persister.flush_interval = flush_interval;
        Self::start_inner(dir, None, cache, Some((token_delay, None)), config).await
    }

    async fn start_inner(
        dir: &tempfile::TempDir,
        anthropic: Option<Arc<dyn Provider>>,
        cache: tally_store::cache::Cache,
        gateway: Option<(Duration, Option<tally_web::gateway::alerts::AlertWebhook>)>,
        config: ActorSystemConfig,
    ) -> Node {
        let db_url = format!("sqlite://{}", dir.path().join("tally.db").display());
        let store = Store::open(&db_url).unwrap();
        let catalog = Catalog::parse(CATALOG).unwrap();
        store.seed(&catalog).unwrap();
        let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(2) });
        let router = Arc::new(ProviderRouter::new(anthropic, None, sim));
        let actors = ActorSystem::start(store, cache, router, config).unwrap();
        let state = AppState::new(actors.clone(), catalog.default_model.clone());
        let gw = gateway.map(|(token_delay, alerts)| tally_web::gateway::Gateway {
            store: actors.store.clone(),
            keys: Default::default(),
            budgets: Default::default(),
            ledger: tally_actors::budget::local(tally_web::gateway::budgets::spend_loader(actors.store.clone())),
            upstreams: Arc::new(tally_llm::gateway::UpstreamRouter::new(None, None, token_delay)),
            billing: actors.billing.clone(),
            prices: actors.prices.clone(),
            persister: actors.persister.clone(),
            models: Arc::new(tally_web::gateway::Gateway::models_of(&catalog)),
            store_payloads: true,
            lease: tally_web::gateway::DEFAULT_HOLD_LEASE,
            rpm: Default::default(),
            alerts,
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = actix_web::HttpServer::new(move || {
            let mut app =
                actix_web::App::new().wrap(actix_web::middleware::from_fn(tally_web::metrics::record_request));
            if let Some(gw) = &gw {
                // Before the web routes: they end in a catch-all.
                app = app.configure(tally_web::gateway::configure(gw.clone()));
            }
            app.configure(tally_web::configure(state.clone(), HttpConfig::default()))
        })
        .listen(listener)
        .unwrap()
        .workers(2)
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Node { base: format!("http://{addr}"), actors, handle, client: reqwest::Client::new(), db_url }
    }

    /// Stop without waiting for open SSE connections (the dashboard test leaves one behind).
    pub async fn stop(self) {
        self.handle.stop(false).await;
        self.actors.drain().await.unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Create a user and a thread; returns the thread id.
    pub async fn user_and_thread(&self, user: &str, model: Option<&str>) -> String {
        let (s, _) = self.post("/api/users/", serde_json::json!({ "user_id": user })).await;
        assert!(s == 201 || s == 409, "user created (or already there), got {s}");
        let mut body = serde_json::json!({ "user_id": user, "title": "test" });
        if let Some(m) = model {
            body["model"] = Value::from(m);
        }
        let (s, t) = self.post("/api/threads/", body).await;
        assert_eq!(s, 201, "thread created: {t}");
        t["thread_id"].as_str().unwrap().to_string()
    }

    /// POST an SSE endpoint and collect (event, data) frames until the stream ends.
    pub async fn stream(&self, path: &str, body: Value) -> (u16, Vec<(String, Value)>) {
        let r = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        if status != 200 {
            return (status, vec![("http_error".into(), r.json().await.unwrap_or(Value::Null))]);
        }
        let mut frames = Vec::new();
        let mut buf = String::new();
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(f) = parse_frame(&frame) {
                    frames.push(f);
                }
            }
        }
        (status, frames)
    }
}

pub fn parse_frame(frame: &str) -> Option<(String, Value)> {
    let mut event = "message".to_string();
    let mut data = String::new();
    for line in frame.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            data.push_str(d);
        }
    }
    if data.is_empty() {
        return None;
    }
    Some((event, serde_json::from_str(&data).unwrap()))
}

pub fn dec(v: &Value) -> rust_decimal::Decimal {
    v.as_str().unwrap_or_else(|| panic!("money must be a JSON string, got {v}")).parse().unwrap()
}
