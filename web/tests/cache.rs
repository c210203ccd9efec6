//! Cached reads (in-memory and a real Redis) follow every write: history, metrics, invoices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{dec, Node};
use rust_decimal::Decimal;
use serde_json::json;
use tally_store::cache::{Cache, CacheConfig};

async fn reads_follow_writes(cache: Cache) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_full(&dir, None, cache).await;
    let user = format!("cache{}", uuid::Uuid::now_v7().simple());
    let thread = node.user_and_thread(&user, None).await;
    let send = |text: &'static str| node.post("/api/messages/", json!({ "thread_id": thread, "content": text, "user_id": user }));

    let (s, _) = send("first").await;
    assert_eq!(s, 200, "first turn");
    let (_, h1) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(h1["messages"].as_array().map(|m| m.len()), Some(2), "history after one turn (fills the cache)");
    let (_, m1) = node.get(&format!("/api/billing/metrics/user/{user}")).await;
    let (_, t1) = node.get(&format!("/api/billing/metrics/thread/{thread}")).await;

    let (s, turn2) = send("second").await;
    assert_eq!(s, 200, "second turn");
    let (_, h2) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(h2["messages"].as_array().map(|m| m.len()), Some(4), "a new turn invalidates the cached history");
    let (_, m2) = node.get(&format!("/api/billing/metrics/user/{user}")).await;
    let total2 = dec(&turn2["thread_total"]);
    assert_eq!(dec(&m2["metrics"]["total_cost"]), total2, "user metrics are not stale");
    assert!(dec(&m2["metrics"]["total_cost"]) > dec(&m1["metrics"]["total_cost"]), "and grew");
    let (_, t2) = node.get(&format!("/api/billing/metrics/thread/{thread}")).await;
    assert!(dec(&t2["metrics"]["total_cost"]) > dec(&t1["metrics"]["total_cost"]), "thread metrics are not stale");

    let (s, _) = node.post(&format!("/api/billing/generate-invoice/thread/{thread}"), json!({})).await;
    assert_eq!(s, 201, "invoice");
    let (_, m3) = node.get(&format!("/api/billing/metrics/user/{user}")).await;
    assert_eq!(dec(&m3["metrics"]["uninvoiced_cost"]), Decimal::ZERO, "invoicing invalidates user metrics");
    let (_, t3) = node.get(&format!("/api/billing/metrics/thread/{thread}")).await;
    assert_eq!(dec(&t3["metrics"]["invoiced_cost"]), total2, "invoicing invalidates thread metrics");

    let (s, e) = node.get(&format!("/api/messages/{}/history", uuid::Uuid::now_v7())).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("thread_not_found")), "unknown threads are not cached as empty");
    node.stop().await;
}

#[actix_rt::test]
async fn memory_cache_reads_follow_writes() {
    reads_follow_writes(Cache::memory(CacheConfig::default()).unwrap()).await;
}

#[actix_rt::test]
async fn redis_cache_reads_follow_writes() {
    let url = std::env::var("TALLY_TEST_REDIS_URL")
        .expect("TALLY_TEST_REDIS_URL is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"");
    let config = CacheConfig { key_prefix: format!("test:{}:", uuid::Uuid::now_v7().simple()), ..CacheConfig::default() };
    let cache = Cache::from_url(Some(&url), config).unwrap();
    assert_eq!(cache.backend_name(), "redis", "a real Redis backs this test");
    reads_follow_writes(cache).await;
}
