//! Benchmark: delay from a usage event's acceptance (priced at `occurred_at`) to its arrival on the
//! dashboard SSE stream, under concurrent chat load, on a real server over loopback.
//!
//! `cargo run --release -p tally-web --example dashboard_freshness -- [turns] [concurrency]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::Store;
use tally_web::{AppState, HttpConfig};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    // Server and load generator run in one actix system; the SSE reader gets its own
    // runtime thread so that the load generator cannot starve it.
    actix_web::rt::System::new().block_on(run());
}

async fn run() {
    let args: Vec<String> = std::env::args().collect();
    let turns: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}", dir.path().join("bench.db").display())).unwrap();
    let catalog = Catalog::parse(include_str!("../../catalog/prices.json")).unwrap();
    store.seed(&catalog).unwrap();
    let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::ZERO });
    let router = Arc::new(ProviderRouter::new(None, None, sim));
    let actors = ActorSystem::start(store, tally_store::cache::Cache::memory(Default::default()).unwrap(), router, ActorSystemConfig::default()).unwrap();
    let state = AppState::new(actors.clone(), catalog.default_model.clone());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(tally_web::configure(state.clone(), HttpConfig::default()))
    })
    .listen(listener)
    .unwrap()
    .disable_signals()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let client = reqwest::Client::new();
    let mut threads = Vec::new();
    for i in 0..concurrency {
        let user = format!("bench{i}");
        client.post(format!("{base}/api/users/")).json(&json!({ "user_id": user })).send().await.unwrap();
        let t: Value = client
            .post(format!("{base}/api/threads/"))
            .json(&json!({ "user_id": user }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        threads.push((user, t["thread_id"].as_str().unwrap().to_string()));
    }

    // The dashboard client: records arrival time of every `usage` event.
    let sse = client.get(format!("{base}/api/dashboard/stream")).send().await.unwrap();
    let collector = tokio::spawn(async move {
        let mut delays = Vec::with_capacity(turns);
        let mut body = sse.bytes_stream();
        let mut buf = String::new();
        while delays.len() < turns {
            // Stop when nothing arrives for a while (a dropped slow client, or the end of the run).
            let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), body.next()).await else { break };
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if !frame.contains("event: usage") {
                    continue;
                }
                let arrived = Utc::now();
                let data: String = frame.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                let v: Value = serde_json::from_str(&data).unwrap();
                let occurred: DateTime<Utc> = v["occurred_at"].as_str().unwrap().parse().unwrap();
                delays.push((arrived - occurred).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        delays
    });

    let started = Instant::now();
    let per_worker = turns / concurrency;
    let mut workers = Vec::new();
    for (user, thread) in threads {
        let client = client.clone();
        let base = base.clone();
        workers.push(tokio::spawn(async move {
            for n in 0..per_worker {
                let r = client
                    .post(format!("{base}/api/messages/"))
                    .json(&json!({ "thread_id": thread, "user_id": user, "content": format!("message {n}") }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "turn failed: {}", r.status());
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = per_worker * concurrency;
    let mut delays = collector.await.unwrap();
    delays.sort_by(|a, b| a.total_cmp(b));
    println!("dashboard freshness: {total} chat turns, {concurrency} concurrent clients, release={}", !cfg!(debug_assertions));
    println!("  turns/s (accepted, priced, persisted): {:.0}", total as f64 / elapsed.as_secs_f64());
    println!("  usage events seen on SSE: {}", delays.len());
    println!(
        "  acceptance -> SSE arrival: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        delays.last().copied().unwrap_or(f64::NAN)
    );
    handle.stop(false).await;
}
