//! Archiving through the real binary: `tally archive run/restore` between runs of `tally serve`
//! on one SQLite database. A month with usage not invoiced yet stays hot; once invoiced it is
//! archived, and every metric (per user, per thread, by kind, model and message), the thread's
//! history and the invoices answer exactly as before, archived and after a restore.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use common::serve as start;
use serde_json::{json, Value};

mod common;

fn archive(db: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("archive")
        .args(args)
        .args(["--database-url", db, "--archive-dir"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "tally archive {args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    stdout
}

async fn call(c: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut r = c.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Everything that must read the same whether or not October is archived.
async fn answers(c: &reqwest::Client, base: &str, thread: &str) -> Value {
    let mut all = json!({});
    for (name, path) in [
        ("user", "/api/billing/metrics/user/ana".to_string()),
        ("thread", format!("/api/billing/metrics/thread/{thread}")),
        ("history", format!("/api/messages/{thread}/history")),
        ("invoices", "/api/billing/invoices/user/ana".to_string()),
    ] {
        let (s, v) = call(c, reqwest::Method::GET, format!("{base}{path}"), None).await;
        assert_eq!(s, 200, "{path}: {v}");
        all[name] = v;
    }
    all
}

#[tokio::test]
async fn archived_months_answer_every_metric_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("tally.db").display());
    let archive_dir = dir.path().join("archive");
    let c = reqwest::Client::new();
    let node = start(&db);
    let base = node.base.clone();
    let (s, _) = call(&c, reqwest::Method::POST, format!("{base}/api/users/"), Some(json!({ "user_id": "ana" }))).await;
    assert_eq!(s, 201);
    let (s, t) = call(&c, reqwest::Method::POST, format!("{base}/api/threads/"), Some(json!({ "user_id": "ana" }))).await;
    assert_eq!(s, 201);
    let thread = t["thread_id"].as_str().unwrap().to_string();
    // A chat turn now (this month: stays hot) and usage of the thread in October (two models).
    let (s, _) = call(&c, reqwest::Method::POST, format!("{base}/api/messages/"), Some(json!({ "thread_id": thread, "content": "hello", "user_id": "ana" }))).await;
    assert_eq!(s, 200);
    let events: Vec<Value> = (0..6)
        .map(|i| {
            json!({
                "user_id": "ana", "thread_id": thread, "event_type": "token_usage",
                "model": if i % 2 == 0 { "claude-3-5-haiku-20241022" } else { "gpt-4o-mini" },
                "idempotency_key": format!("oct-{i}"),
                "quantities": {"input_tokens": format!("{}", 1000 + i * 37), "output_tokens": format!("{}", 300 + i)},
                "occurred_at": format!("2026-10-{:02}T12:00:00Z", 3 + i * 4),
            })
        })
        .collect();
    let (s, v) = call(&c, reqwest::Method::POST, format!("{base}/v1/events"), Some(json!(events))).await;
    assert_eq!(s, 200, "ingested: {v}");
    assert_eq!(v["accepted"], 6, "all six accepted: {v}");
    let mut before = json!(null);
    for _ in 0..100 {
        before = answers(&c, &base, &thread).await;
        if before["user"]["metrics"]["event_count"] == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(before["user"]["metrics"]["event_count"], 7, "seven events billed: {before}");
    drop(node);

    // Not invoiced: October stays hot.
    let out = archive(&db, &archive_dir, &["run", "--before", "2026-11-30"]);
    assert!(out.contains("2026-10\tnot archived: 12 usage lines not invoiced yet"), "{out}");

    // Invoice everything, then archive.
    let node = start(&db);
    let base = node.base.clone();
    let (s, inv) = call(&c, reqwest::Method::POST, format!("{base}/api/billing/generate-invoice/user/ana"), None).await;
    assert_eq!(s, 201, "invoiced: {inv}");
    let before = answers(&c, &base, &thread).await;
    assert_eq!(before["user"]["metrics"]["uninvoiced_cost"], "0", "{before}");
    let (s, usage) = call(&c, reqwest::Method::GET, format!("{base}/api/usage/events?user_id=ana"), None).await;
    assert_eq!(s, 200);
    assert_eq!(usage.to_string().matches("oct-").count(), 6, "October's raw events are in the usage log while hot: {usage}");
    drop(node);
    let out = archive(&db, &archive_dir, &["run", "--before", "2026-11-30"]);
    assert!(out.contains("2026-10\tarchived"), "{out}");

    let node = start(&db);
    let archived = answers(&c, &node.base, &thread).await;
    assert_eq!(archived, before, "every answer identical while October is archived");
    let (s, usage) = call(&c, reqwest::Method::GET, format!("{}/api/usage/events?user_id=ana", node.base), None).await;
    assert_eq!(s, 200);
    assert!(usage.to_string().matches("oct-").count() == 0, "October's raw events left the hot tables: {usage}");
    drop(node);

    let out = archive(&db, &archive_dir, &["restore", "2026-10"]);
    assert!(out.contains("restored"), "{out}");
    let node = start(&db);
    assert_eq!(answers(&c, &node.base, &thread).await, before, "every answer identical after the restore");
}
