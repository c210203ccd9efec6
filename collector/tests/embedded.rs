//! Embedded mode: the same `POST /v1/events` billing straight into a real BillingActor over SQLite (no Kafka).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_collector::{embedded_routes, CollectorConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::{LineFilter, Store};

const CATALOG: &str = include_str!("../../catalog/prices.json");
const HAIKU: &str = "claude-3-5-haiku-20241022";

fn ev(user: &str, key: &str, input: u64, output: u64) -> Value {
    json!({
        "user_id": user, "model": HAIKU, "event_type": "token_usage", "idempotency_key": key,
        "quantities": {"input_tokens": input.to_string(), "output_tokens": output},
        "occurred_at": chrono::Utc::now().to_rfc3339(),
    })
}

#[actix_rt::test]
async fn embedded_ingest_bills_once_and_rejects_without_effect() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).unwrap();
    store.seed(&Catalog::parse(CATALOG).unwrap()).unwrap();
    let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(1) });
    let router = Arc::new(ProviderRouter::new(None, None, sim));
    let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
    let actors = ActorSystem::start(store.clone(), cache, router, ActorSystemConfig::default()).unwrap();
    let billing = actors.billing.clone().recipient();
    let config = CollectorConfig { max_batch_events: 100, max_in_flight: 1000, ..CollectorConfig::default() };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || App::new().configure(embedded_routes(billing.clone(), config.clone())))
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let client = reqwest::Client::new();
    let post = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/v1/events");
        async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let mut unknown = ev("zed", "u1", 10, 10);
    unknown["model"] = json!("no-such-model");
    let mut fractional = ev("zed", "f1", 10, 10);
    fractional["quantities"]["input_tokens"] = json!("1.5");
    let (status, body) = post(json!([ev("zed", "k1", 1000, 2000), ev("zed", "k2", 500, 0), unknown, fractional])).await;
    assert_eq!(status, 200, "batch answered: {body}");
    let st: Vec<&str> = body["results"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(st, ["accepted", "accepted", "rejected", "rejected"], "results: {body}");
    assert_eq!(body["results"][2]["code"], "no_price", "unpriceable events are rejected with the pricing code");
    assert_eq!(body["results"][3]["code"], "fractional_tokens", "fractional tokens rejected");

    // A retry of the whole batch bills nothing new.
    let (status, again) = post(json!([ev("zed", "k1", 1000, 2000), ev("zed", "k2", 500, 0)])).await;
    assert_eq!(status, 200, "retry answered");
    assert_eq!(again["duplicates"].as_u64(), Some(2), "retried keys are duplicates: {again}");

    // Answered means durable: exactly two events, priced at Haiku's catalogue prices ($0.80 in, $4 out per million).
    let events = store.usage_events(&LineFilter { user_id: Some("zed".into()), ..LineFilter::default() }, 100).unwrap();
    assert_eq!(events.len(), 2, "two events stored, none for the rejects");
    let total: Decimal = events.iter().map(|e| e.cost.total).sum();
    let expected = Decimal::from(1500) * Decimal::new(80, 2) / Decimal::from(1_000_000)
        + Decimal::from(2000) * Decimal::from(4) / Decimal::from(1_000_000);
    assert_eq!(total, expected, "exact total from catalogue prices");
    handle.stop(true).await;
    actors.drain().await.unwrap();
}
