//! The gateway against a real Tally HTTP server (SQLite, in-process budget ledger,
//! simulated upstreams in both wire formats): keys, budgets under concurrency, bad input,
//! streams cut by the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::{dec, HAIKU};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const CATALOG: &str = common::CATALOG;
const MINI: &str = "gpt-4o-mini";

/// The shared test node with the gateway mounted, and the gateway's helpers.
struct Node {
    node: common::Node,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Node {
    type Target = common::Node;
    fn deref(&self) -> &common::Node {
        &self.node
    }
}

impl Node {
    async fn start(token_delay: Duration) -> Node {
        Self::start_with(token_delay, None).await
    }

    async fn start_with(token_delay: Duration, alerts: Option<tally_web::gateway::alerts::AlertWebhook>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let node = common::Node::start_gateway(&dir, token_delay, alerts).await;
        Node { node, _dir: dir }
    }

    async fn stop(self) {
        self.node.stop().await;
    }

    /// A user and a key with the given budgets; returns (key id, secret).
    async fn key(&self, user: &str, extra: Value) -> (String, String) {
        let (s, _) = self.post("/api/users/", json!({ "user_id": user })).await;
        assert!(s == 201 || s == 409, "user created, got {s}");
        let mut body = json!({ "user_id": user, "name": "test key" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, k) = self.post("/api/keys", body).await;
        assert_eq!(s, 201, "key created: {k}");
        (k["key_id"].as_str().unwrap().to_string(), k["key"].as_str().unwrap().to_string())
    }

    async fn gateway(&self, path: &str, key: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
        let r = self.client.post(self.url(path)).bearer_auth(key).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    /// The key's spend this month, once billing has caught up with `requests` calls.
    async fn settled_spend(&self, key_id: &str, requests: u64) -> Value {
        for _ in 0..200 {
            let (_, s) = self.get(&format!("/api/billing/spend/{key_id}?period=monthly")).await;
            if s["total_requests"].as_u64() == Some(requests) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("spend of {key_id} never reached {requests} requests");
    }
}

fn chat(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Say something short."}]})
}

#[actix_rt::test]
async fn keys_are_shown_once_and_calls_are_billed_to_the_key() {
    let node = Node::start(Duration::ZERO).await;
    let (key_id, secret) = node.key("alice", json!({})).await;
    assert!(secret.starts_with("tk-"), "the secret has Tally's prefix");
    let (s, k) = node.get(&format!("/api/keys/{key_id}")).await;
    assert_eq!(s, 200, "key readable");
    assert!(k.get("key").is_none(), "the secret is never shown again: {k}");
    assert!(!k.to_string().contains(&secret[16..]), "no part of the secret leaks");

    let r = node.client.get(node.url("/v1/models")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), 200, "models listed");
    let models: Value = r.json().await.unwrap();
    assert!(models["data"].as_array().unwrap().iter().any(|m| m["id"] == HAIKU), "the catalogue's models are listed");

    // OpenAI route on a Claude model (translated) and on an OpenAI model; Anthropic route.
    let (s, a, h) = node.gateway("/v1/chat/completions", &secret, chat(HAIKU, 40)).await;
    assert_eq!(s, 200, "claude through the OpenAI route: {a}");
    assert_eq!(a["object"], "chat.completion", "OpenAI shape");
    assert_eq!(h.get("x-tally-simulated").map(|v| v.to_str().unwrap()), Some("true"), "simulated is labelled");
    let (s, b, _) = node.gateway("/v1/chat/completions", &secret, chat(MINI, 40)).await;
    assert_eq!(s, 200, "gpt through the OpenAI route: {b}");
    let (s, c, _) = node.gateway("/v1/messages", &secret, chat(HAIKU, 40)).await;
    assert_eq!(s, 200, "claude through the Anthropic route: {c}");
    assert_eq!(c["type"], "message", "Anthropic shape");

    // Expected cost from the reported usage and the catalogue's prices.
    let price = |model: &str, kind: &str| -> Decimal {
        let cat: Value = serde_json::from_str(CATALOG).unwrap();
        let m = cat["models"].as_array().unwrap().iter().find(|m| m["name"] == model).unwrap();
        m["prices"].as_array().unwrap().iter().rev().find(|p| p["kind"] == kind).unwrap()["price"].as_str().unwrap().parse().unwrap()
    };
    let million = Decimal::from(1_000_000);
    let openai_cost = |v: &Value, model: &str| {
        Decimal::from(v["usage"]["prompt_tokens"].as_u64().unwrap()) * price(model, "input_tokens") / million
            + Decimal::from(v["usage"]["completion_tokens"].as_u64().unwrap()) * price(model, "output_tokens") / million
    };
    let expected = openai_cost(&a, HAIKU)
        + openai_cost(&b, MINI)
        + Decimal::from(c["usage"]["input_tokens"].as_u64().unwrap()) * price(HAIKU, "input_tokens") / million
        + Decimal::from(c["usage"]["output_tokens"].as_u64().unwrap()) * price(HAIKU, "output_tokens") / million;
    let spend = node.settled_spend(&key_id, 3).await;
    assert_eq!(dec(&spend["total_cost"]), expected, "the key's spend is the exact sum of its calls: {spend}");
    assert_eq!(dec(&spend["by_provider"]["simulator"]), expected, "by provider");
    let (_, user) = node.get("/api/billing/metrics/user/alice").await;
    assert!(user.to_string().contains(&expected.to_string()), "the user's metrics carry the same total: {user}");
    node.stop().await;
}

#[actix_rt::test]
async fn concurrent_calls_never_overspend_and_the_rest_get_402() {
    let node = Node::start(Duration::ZERO).await;
    // One call reserves about (body bytes + overheads) x input price + 64 x output price:
    // with Haiku that is about 0.0008 USD, so 0.01 USD admits a dozen or so of 200.
    let (key_id, secret) = node.key("bob", json!({"budgets": [{"max_budget": "0.01", "period": "daily"}]})).await;
    let calls = (0..200).map(|_| {
        let node = &node;
        let secret = secret.clone();
        async move { node.gateway("/v1/chat/completions", &secret, chat(HAIKU, 64)).await }
    });
    let results = futures::future::join_all(calls).await;
    let admitted = results.iter().filter(|(s, _, _)| *s == 200).count() as u64;
    let refused: Vec<_> = results.iter().filter(|(s, _, _)| *s == 402).collect();
    assert!(admitted > 0, "some calls fit the budget");
    assert_eq!(admitted as usize + refused.len(), 200, "every call is admitted or refused with 402");
    let (_, body, headers) = refused[0];
    assert_eq!(body["error"]["code"], "budget_exceeded", "OpenAI-shaped 402: {body}");
    assert!(headers.contains_key("x-tally-budget-remaining") && headers.contains_key("x-tally-budget-reset"), "budget headers");
    let spend = node.settled_spend(&key_id, admitted).await;
    assert!(dec(&spend["total_cost"]) <= Decimal::new(1, 2), "admitted cost never exceeds the budget: {spend}");
    let (_, b) = node.get(&format!("/api/billing/budget/{key_id}")).await;
    let budget = &b["budgets"][0];
    assert_eq!(dec(&budget["spent"]), dec(&spend["total_cost"]), "the ledger's spend is the billed spend: {b}");
    assert_eq!(dec(&budget["reserved"]), Decimal::ZERO, "every hold was settled");
    node.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_clear_errors_and_bills_nothing() {
    let node = Node::start(Duration::ZERO).await;
    let (key_id, secret) = node.key("carol", json!({"allowed_models": [HAIKU]})).await;
    let raw = |path: &'static str, body: &'static str| {
        let node = &node;
        let secret = secret.clone();
        async move {
            let r = node.client.post(node.url(path)).bearer_auth(&secret).header("content-type", "application/json").body(body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, e) = raw("/v1/chat/completions", "{not json").await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_json")), "malformed JSON: {e}");
    let (s, e) = raw("/v1/messages", "[]").await;
    assert_eq!((s, e["type"].as_str()), (400, Some("error")), "Anthropic-shaped error: {e}");
    let (s, e, _) = node.gateway("/v1/chat/completions", &secret, chat("no-such-model", 10)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("model_not_found")), "unknown model: {e}");
    let (s, e, _) = node.gateway("/v1/chat/completions", &secret, chat(MINI, 10)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("model_not_allowed")), "model outside the allow-list: {e}");
    let (s, e, _) = node
        .gateway("/v1/messages", &secret, json!({"model": HAIKU, "messages": [{"role": "user", "content": "hi"}]}))
        .await;
    assert_eq!((s, e["error"]["type"].as_str()), (400, Some("missing_max_tokens")), "max_tokens is required on /v1/messages: {e}");
    let (s, e, _) = node.gateway("/v1/messages", &secret, chat(HAIKU, 1_000_000_000)).await;
    assert_eq!((s, e["error"]["type"].as_str()), (400, Some("max_tokens_too_large")), "giant max_tokens: {e}");
    let (s, e, _) = node.gateway("/v1/chat/completions", "tk-000000000000-00", chat(HAIKU, 10)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("invalid_api_key")), "bad key: {e}");
    // Change the last character to a different one (a fixed "0" would equal the real one when the secret ends in 0).
    let last = if secret.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &secret[..secret.len() - 1]);
    assert_ne!(wrong, secret);
    let (s, _, _) = node.gateway("/v1/chat/completions", &wrong, chat(HAIKU, 10)).await;
    assert_eq!(s, 401, "a wrong secret with a real public id is refused");
    let (s, _) = node.post(&format!("/api/keys/{key_id}/revoke"), json!({})).await;
    assert_eq!(s, 200, "revoked");
    let (s, e, _) = node.gateway("/v1/chat/completions", &secret, chat(HAIKU, 10)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("revoked_api_key")), "revoked key: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, spend) = node.get(&format!("/api/billing/spend/{key_id}")).await;
    assert_eq!(spend["total_requests"], 0, "nothing refused was recorded: {spend}");
    assert_eq!(dec(&spend["total_cost"]), Decimal::ZERO, "nothing refused was billed");
    node.stop().await;
}

#[actix_rt::test]
async fn a_stream_cut_by_the_client_is_still_billed() {
    let node = Node::start(Duration::from_millis(20)).await;
    let (key_id, secret) = node.key("dave", json!({"budgets": [{"max_budget": "5", "period": "monthly"}]})).await;
    let mut body = chat(HAIKU, 40);
    body["stream"] = json!(true);
    let r = node.client.post(node.url("/v1/messages")).bearer_auth(&secret).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200, "stream started");
    let mut frames = r.bytes_stream();
    let first = frames.next().await;
    assert!(first.is_some(), "a first frame arrived");
    drop(frames); // the client goes away mid-stream
    let spend = node.settled_spend(&key_id, 1).await;
    assert!(dec(&spend["total_cost"]) > Decimal::ZERO, "the cut stream is billed: {spend}");
    let (_, b) = node.get(&format!("/api/billing/budget/{key_id}")).await;
    assert_eq!(dec(&b["budgets"][0]["reserved"]), Decimal::ZERO, "the hold was settled: {b}");
    assert_eq!(dec(&b["budgets"][0]["spent"]), dec(&spend["total_cost"]), "and charged at the billed cost");
    node.stop().await;
}

#[actix_rt::test]
async fn a_budget_alert_is_posted_once_per_window_signed() {
    use std::sync::Mutex;
    // A local webhook receiver that keeps what arrives.
    let received: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let sink = received.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_addr = listener.local_addr().unwrap();
    let receiver = actix_web::HttpServer::new(move || {
        let sink = sink.clone();
        actix_web::App::new().route(
            "/hook",
            actix_web::web::post().to(move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                let sink = sink.clone();
                async move {
                    let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    sink.lock().unwrap().push((h("x-tally-timestamp"), h("x-tally-signature"), String::from_utf8_lossy(&body).to_string()));
                    actix_web::HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .disable_signals()
    .run();
    let receiver_handle = receiver.handle();
    actix_rt::spawn(receiver);
    let secret = "a-webhook-secret-of-some-length";
    let hook = tally_web::gateway::alerts::AlertWebhook::new(&format!("http://{hook_addr}/hook"), secret).unwrap();
    let node = Node::start_with(Duration::ZERO, Some(hook)).await;
    // Threshold 5% of 0.01 USD: a Haiku call here costs ~0.0003 USD, so the second call passes it.
    let (key_id, key) = node
        .key("frank", json!({"budgets": [{"max_budget": "0.01", "period": "daily", "alert_threshold": "0.05"}]}))
        .await;
    for _ in 0..4 {
        let (s, _, _) = node.gateway("/v1/messages", &key, chat(HAIKU, 64)).await;
        assert_eq!(s, 200, "under budget");
    }
    node.settled_spend(&key_id, 4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while received.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one alert per budget window, however many calls pass the threshold: {got:?}");
    let (ts, sig, body) = &got[0];
    let expected = tally_web::gateway::alerts::signature(secret, ts.parse().unwrap(), body.as_bytes());
    assert_eq!(sig, &expected, "the body is signed with the shared secret");
    let alert: Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["event"], "budget.threshold_reached", "what happened: {alert}");
    assert_eq!(alert["key_id"], key_id.as_str(), "which key");
    assert!(dec(&alert["spent"]) >= Decimal::new(5, 4), "spend passed 5% of 0.01 USD");
    let (_, b) = node.get(&format!("/api/billing/budget/{key_id}")).await;
    assert_eq!(b["budgets"][0]["alert_state"], "alerted", "the budget shows its alert: {b}");
    receiver_handle.stop(false).await;
    node.stop().await;
}

#[actix_rt::test]
async fn task_labels_and_payloads_reach_the_usage_log() {
    let node = Node::start(Duration::ZERO).await;
    let (key_id, secret) = node.key("dora", json!({})).await;
    let r = node
        .client
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .header("x-tally-task", "summarize")
        .json(&chat(HAIKU, 20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "call answered");
    let event_id = r.headers()["x-tally-request-id"].to_str().unwrap().to_string();
    let answer: Value = r.json().await.unwrap();
    node.settled_spend(&key_id, 1).await;
    // The payload is written just after the hold settles: wait for it (bounded).
    let mut e = Value::Null;
    for _ in 0..100 {
        let (s, got) = node.get(&format!("/api/usage/events/{event_id}")).await;
        assert_eq!(s, 200, "the call's usage event is listed: {got}");
        e = got;
        if !e["payload"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(e["task"], json!("summarize"), "the x-tally-task label is kept");
    assert_eq!(e["key_id"], json!(key_id), "and the key");
    assert_eq!(e["gateway"]["route"], json!("chat_completions"), "with its gateway call");
    let request = e["payload"]["request"].as_str().unwrap_or_default();
    assert!(request.contains("\"messages\""), "the request body is kept when payloads are on: {e}");
    let response = e["payload"]["response"].as_str().unwrap_or_default();
    assert!(response.contains(answer["id"].as_str().unwrap()), "the response as the client got it: {response}");

    let r = node
        .client
        .post(node.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .header("x-tally-task", "not a label")
        .json(&chat(HAIKU, 20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a bad task label is refused");
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("invalid_task"), "with its code: {body}");
    let (_, tasks) = node.get("/api/analytics/top-tasks").await;
    assert_eq!(tasks["groups"][0]["task"], json!("summarize"), "analytics see the task: {tasks}");
    node.stop().await;
}

/// Every answered call is already billed: the answer (or a stream's last frame) waits for
/// the usage to be durable. Writes wait 300 ms in the persister here, so an answer sent before
/// its commit would find no event when read straight after it.
#[actix_rt::test]
async fn an_answer_goes_only_once_its_usage_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node {
        node: common::Node::start_gateway_slow_writes(&dir, Duration::from_millis(1), Duration::from_millis(300)).await,
        _dir: dir,
    };
    let (_, secret) = node.key("erin", json!({})).await;
    for _ in 0..5 {
        let (s, _, headers) = node.gateway("/v1/messages", &secret, chat(HAIKU, 30)).await;
        assert_eq!(s, 200);
        let id = headers["x-tally-request-id"].to_str().unwrap().to_string();
        let (s, e) = node.get(&format!("/api/usage/events/{id}")).await;
        assert_eq!(s, 200, "the answered call's usage is stored before the answer: {e}");
        assert!(dec(&e["cost"]) > Decimal::ZERO, "and priced: {e}");
    }
    let mut body = chat(HAIKU, 30);
    body["stream"] = json!(true);
    let r = node.client.post(node.url("/v1/messages")).bearer_auth(&secret).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-tally-request-id"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "the stream ended normally: {text}");
    let (s, e) = node.get(&format!("/api/usage/events/{id}")).await;
    assert_eq!(s, 200, "the stream's usage is stored before its last frame: {e}");
    node.stop().await;
}

/// When the usage cannot be stored, the call is not answered as a success: 503
/// `usage_not_recorded` (a stream ends with an error frame instead of `message_stop`), the
/// hold is settled at its reserved bound, and the call works again once storage does.
#[actix_rt::test]
async fn a_call_whose_usage_cannot_be_stored_is_not_answered_as_a_success() {
    use diesel::{Connection, RunQueryDsl};
    let node = Node::start(Duration::from_millis(1)).await;
    let (key_id, secret) = node.key("frank", json!({"budgets": [{"max_budget": "5", "period": "monthly"}]})).await;
    let path = node.db_url.trim_start_matches("sqlite://").to_string();
    let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
    diesel::sql_query("ALTER TABLE api_events RENAME TO api_events_away").execute(&mut conn).unwrap();

    let (s, body, _) = node.gateway("/v1/messages", &secret, chat(HAIKU, 30)).await;
    assert_eq!(s, 503, "not answered: {body}");
    assert_eq!(body["error"]["type"], "usage_not_recorded", "{body}");
    let (s, body, _) = node.gateway("/v1/chat/completions", &secret, chat(HAIKU, 30)).await;
    assert_eq!(s, 503, "not answered on the OpenAI route either: {body}");
    assert_eq!(body["error"]["code"], "usage_not_recorded", "{body}");

    let mut stream = chat(HAIKU, 30);
    stream["stream"] = json!(true);
    let r = node.client.post(node.url("/v1/messages")).bearer_auth(&secret).json(&stream).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(!text.contains("message_stop"), "no normal end: {text}");
    assert!(text.contains("event: error") && text.contains("usage_not_recorded"), "an error frame instead: {text}");

    let (_, b) = node.get(&format!("/api/billing/budget/{key_id}")).await;
    assert_eq!(dec(&b["budgets"][0]["reserved"]), Decimal::ZERO, "no hold left: {b}");
    assert!(dec(&b["budgets"][0]["spent"]) > Decimal::ZERO, "the unrecorded calls count against the budget at their bound: {b}");

    diesel::sql_query("ALTER TABLE api_events_away RENAME TO api_events").execute(&mut conn).unwrap();
    let (s, body, _) = node.gateway("/v1/messages", &secret, chat(HAIKU, 30)).await;
    assert_eq!(s, 200, "answered again once storage works: {body}");
    node.stop().await;
}
