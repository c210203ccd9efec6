//! The real `tally` binary: serve on port 0, chat, kill it (SIGKILL and SIGTERM), restart: nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command};

use common::serve as start;
use serde_json::{json, Value};

mod common;

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig} delivered");
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = c.post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn restarting_the_node_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tally.db").display());
    let c = reqwest::Client::new();

    let mut node = start(&db);
    let (s, _) = post(&c, format!("{}/api/users/", node.base), json!({ "user_id": "zoe" })).await;
    assert_eq!(s, 201, "user created");
    let (s, t) = post(&c, format!("{}/api/threads/", node.base), json!({ "user_id": "zoe" })).await;
    assert_eq!(s, 201, "thread created");
    let thread = t["thread_id"].as_str().unwrap().to_string();
    let (s, turn) = post(&c, format!("{}/api/messages/", node.base), json!({ "thread_id": thread, "content": "remember me", "user_id": "zoe" })).await;
    assert_eq!(s, 200, "first turn");
    let total1 = turn["thread_total"].as_str().unwrap().to_string();

    // SIGKILL: no chance to flush. An answered turn must already be durable.
    signal(&node.child, "-KILL");
    node.child.wait().unwrap();

    let mut node = start(&db);
    let hist: Value = c.get(format!("{}/api/messages/{thread}/history", node.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(hist["messages"].as_array().map(|m| m.len()), Some(2), "both messages survived SIGKILL");
    assert_eq!(hist["total_cost"].as_str(), Some(total1.as_str()), "the thread total survived");

    // The restarted node continues the same thread and running total.
    let (s, turn2) = post(&c, format!("{}/api/messages/", node.base), json!({ "thread_id": thread, "content": "still there?", "user_id": "zoe" })).await;
    assert_eq!(s, 200, "turn after restart");
    let total2: rust_decimal::Decimal = turn2["thread_total"].as_str().unwrap().parse().unwrap();
    let cost2: rust_decimal::Decimal = turn2["assistant_message"]["cost_total"].as_str().unwrap().parse().unwrap();
    let t1: rust_decimal::Decimal = total1.parse().unwrap();
    assert_eq!(total2, t1 + cost2, "running total continues from storage");

    // SIGTERM: graceful shutdown, then restart.
    signal(&node.child, "-TERM");
    let status = node.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0");
    let mut node = start(&db);
    let m: Value = c.get(format!("{}/api/billing/metrics/user/zoe", node.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(m["metrics"]["total_cost"].as_str().map(|s| s.parse::<rust_decimal::Decimal>().unwrap()), Some(total2), "user total after restart");
    signal(&node.child, "-TERM");
    node.child.wait().unwrap();
}
