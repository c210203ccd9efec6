//! End-to-end API tests against a real server on port 0: chat, streaming, costs, invoices, prices, bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{dec, Node, HAIKU};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};

fn kind_amount(msg: &Value, kind: &str) -> (Decimal, Decimal, Decimal) {
    let line = msg["cost"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind} line in {msg}"));
    (dec(&line["quantity"]), dec(&line["unit_price"]), dec(&line["amount"]))
}

#[actix_rt::test]
async fn chat_turn_is_priced_exactly_at_catalogue_prices() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("alice", None).await;

    let (s, turn) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "Hello there, Tally!", "user_id": "alice" })).await;
    assert_eq!(s, 200, "send succeeds: {turn}");
    let a = &turn["assistant_message"];
    assert_eq!(a["role"], "assistant", "reply is the assistant's");
    assert_eq!(a["simulated"], true, "simulated replies are labelled");
    assert_eq!(turn["simulated"], true, "turn is labelled simulated");
    assert_eq!(a["model"], HAIKU, "default model is Claude 3.5 Haiku");
    let (in_q, in_p, in_a) = kind_amount(a, "input_tokens");
    let (out_q, out_p, out_a) = kind_amount(a, "output_tokens");
    assert!(in_q > Decimal::ZERO && out_q > Decimal::ZERO, "tokens counted");
    assert_eq!(in_p, dec!(0.80), "Haiku input at $0.80/MTok");
    assert_eq!(out_p, dec!(4), "Haiku output at $4/MTok");
    assert_eq!(in_a, in_q * dec!(0.80) / dec!(1000000), "input amount exact");
    assert_eq!(out_a, out_q * dec!(4) / dec!(1000000), "output amount exact");
    assert_eq!(dec(&a["cost_total"]), in_a + out_a, "message total = sum of kinds");
    assert_eq!(dec(&a["usage"]["input_tokens"]), in_q, "usage by kind matches the cost line");
    assert_eq!(dec(&turn["thread_total"]), in_a + out_a, "thread total after first reply");
    assert_eq!(dec(&a["cost_by_kind"]["output_tokens"]), out_a, "cost by kind");

    let (s, turn2) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "And again" , "user_id": "alice"})).await;
    assert_eq!(s, 200, "second send: {turn2}");
    let total2 = dec(&turn2["thread_total"]);
    assert_eq!(total2, in_a + out_a + dec(&turn2["assistant_message"]["cost_total"]), "running total accumulates");

    let (s, hist) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(s, 200, "history");
    let msgs = hist["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "two user messages and two replies");
    assert_eq!(dec(&msgs[1]["thread_total_after"]), in_a + out_a, "running total after first reply");
    assert_eq!(dec(&msgs[3]["thread_total_after"]), total2, "running total after second reply");
    assert_eq!(dec(&hist["total_cost"]), total2, "history total");

    let (s, m) = node.get(&format!("/api/billing/metrics/thread/{thread}")).await;
    assert_eq!(s, 200, "thread metrics");
    assert_eq!(dec(&m["metrics"]["total_cost"]), total2, "thread metrics total equals the running total");
    let (s, m) = node.get("/api/billing/metrics/user/alice").await;
    assert_eq!(s, 200, "user metrics");
    assert_eq!(dec(&m["metrics"]["total_cost"]), total2, "user metrics total");
    assert_eq!(dec(&m["metrics"]["by_model"][HAIKU]), total2, "cost by model");
    node.stop().await;
}

#[actix_rt::test]
async fn stream_sends_deltas_then_usage_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("bob", None).await;
    let (s, frames) = node.stream("/api/messages/stream", json!({ "thread_id": thread, "content": "Stream me a reply", "user_id": "bob" })).await;
    assert_eq!(s, 200, "stream opens");
    assert_eq!(frames.first().map(|f| f.0.as_str()), Some("start"), "first event is start");
    assert_eq!(frames.last().map(|f| f.0.as_str()), Some("done"), "last event is done");
    let text: String = frames.iter().filter(|f| f.0 == "delta").map(|f| f.1["text"].as_str().unwrap().to_string()).collect();
    assert!(frames.iter().filter(|f| f.0 == "delta").count() > 3, "reply arrives token by token");
    let done = &frames.last().unwrap().1;
    assert_eq!(done["assistant_message"]["content"].as_str().unwrap(), text, "deltas add up to the stored reply");
    assert_eq!(frames[0].1["simulated"], true, "start says simulated");
    let (s, hist) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(s, 200, "history");
    assert_eq!(hist["messages"][1]["cost"], done["assistant_message"]["cost"], "streamed cost equals stored cost");
    node.stop().await;
}

#[actix_rt::test]
async fn client_disconnect_mid_stream_still_bills_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("carol", None).await;
    {
        use futures::StreamExt;
        let r = node
            .client
            .post(node.url("/api/messages/stream"))
            .json(&json!({ "thread_id": thread, "content": "I will hang up early", "user_id": "carol" }))
            .send()
            .await
            .unwrap();
        let mut body = r.bytes_stream();
        let _first = body.next().await;
        // Dropping the body here closes the connection mid-reply.
    }
    let mut billed = Value::Null;
    for _ in 0..100 {
        let (_, hist) = node.get(&format!("/api/messages/{thread}/history")).await;
        if hist["messages"].as_array().map(|m| m.len()) == Some(2) {
            billed = hist;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = &billed["messages"][1];
    assert_eq!(reply["role"], "assistant", "the reply was completed after the client left: {billed}");
    assert!(dec(&reply["cost_total"]) > Decimal::ZERO, "and its usage was billed");
    node.stop().await;
}

#[actix_rt::test]
async fn invoices_cover_uninvoiced_usage_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("dave", None).await;
    let mut total = Decimal::ZERO;
    for text in ["one", "two"] {
        let (s, t) = node.post("/api/messages/", json!({ "thread_id": thread, "content": text, "user_id": "dave" })).await;
        assert_eq!(s, 200, "send");
        total += dec(&t["assistant_message"]["cost_total"]);
    }
    let (s, inv) = node.post(&format!("/api/billing/generate-invoice/thread/{thread}"), json!({})).await;
    assert_eq!(s, 201, "invoice generated: {inv}");
    assert_eq!(dec(&inv["subtotal"]), total, "subtotal = sum of message costs");
    assert_eq!(dec(&inv["total"]), tally_domain::round_invoice_total(total), "total rounded half-even to 6 places");
    let lines = inv["lines"].as_array().unwrap();
    assert_eq!(lines.iter().map(|l| dec(&l["amount"])).sum::<Decimal>(), total, "lines sum to the subtotal");
    assert_eq!(inv["status"], "pending", "new invoices are pending");

    let (s, again) = node.post(&format!("/api/billing/generate-invoice/thread/{thread}"), json!({})).await;
    assert_eq!((s, again["code"].as_str()), (409, Some("nothing_to_invoice")), "usage is never invoiced twice");

    let id = inv["invoice_id"].as_str().or(inv["id"].as_str()).unwrap().to_string();
    let (s, paid) = node.post(&format!("/api/billing/invoices/{id}/status"), json!({ "status": "paid" })).await;
    assert_eq!((s, paid["status"].as_str()), (200, Some("paid")), "invoice marked paid");
    let (s, list) = node.get("/api/billing/invoices/user/dave").await;
    assert_eq!(s, 200, "invoice list");
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "one invoice");
    let (s, one) = node.get(&format!("/api/billing/invoices/{id}")).await;
    assert_eq!(s, 200, "one invoice");
    assert_eq!(one["lines"].as_array().map(|l| l.len()), Some(lines.len()), "invoice keeps its lines");
    let (_, m) = node.get("/api/billing/metrics/user/dave").await;
    assert_eq!(dec(&m["metrics"]["uninvoiced_cost"]), Decimal::ZERO, "nothing left to invoice");
    node.stop().await;
}

#[actix_rt::test]
async fn new_price_version_prices_the_next_message_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("erin", None).await;
    let (_, before) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "before", "user_id": "erin" })).await;
    let old_version = kind_amount(&before["assistant_message"], "output_tokens");

    let (s, change) = node.post("/api/prices", json!({ "model": HAIKU, "kind": "output_tokens", "price": "5.5" })).await;
    assert_eq!(s, 201, "price version added: {change}");
    assert_eq!(change["closed"]["is_current"], false, "old version closed");
    assert_eq!(change["closed"]["effective_to"], change["created"]["effective_from"], "closed at the new start instant");

    let (_, after) = node.post("/api/messages/", json!({ "thread_id": thread, "content": "after", "user_id": "erin" })).await;
    let (q, p, a) = kind_amount(&after["assistant_message"], "output_tokens");
    assert_eq!(p, dec!(5.5), "next message uses the new price");
    assert_eq!(a, q * dec!(5.5) / dec!(1000000), "exact amount at the new price");
    let (_, hist) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(kind_amount(&hist["messages"][1], "output_tokens"), old_version, "earlier message keeps its price");

    let (s, versions) = node.get(&format!("/api/prices?model={HAIKU}&kind=output_tokens&history=true")).await;
    assert_eq!(s, 200, "history");
    assert_eq!(versions.as_array().map(|v| v.len()), Some(2), "two versions in history");

    let (s, e) = node.post("/api/prices", json!({ "model": HAIKU, "kind": "output_tokens", "price": "1", "effective_from": "2020-01-01T00:00:00Z" })).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("price_in_past")), "backdated versions are refused");
    let (s, e) = node.post("/api/prices", json!({ "model": HAIKU, "kind": "output_tokens", "price": "-1" })).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("negative_price")), "negative prices are refused");
    let (s, e) = node.post("/api/prices", json!({ "model": "no-such-model", "kind": "output_tokens", "price": "1" })).await;
    assert_eq!(s, 404, "unknown model: {e}");
    let (_, versions2) = node.get(&format!("/api/prices?model={HAIKU}&kind=output_tokens&history=true")).await;
    assert_eq!(versions2, versions, "refused changes change nothing");

    let (s, models) = node.get("/api/models").await;
    assert_eq!(s, 200, "models");
    let haiku = models.as_array().unwrap().iter().find(|m| m["name"] == HAIKU).unwrap();
    assert_eq!(haiku["is_default"], true, "Haiku is the default");
    node.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_4xx_with_stable_codes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let thread = node.user_and_thread("frank", None).await;
    let unknown = uuid::Uuid::now_v7();

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/api/messages/", json!({ "thread_id": unknown, "content": "hi", "user_id": "frank" }), 404, "thread_not_found"),
        ("/api/messages/", json!({ "thread_id": thread, "content": "   ", "user_id": "frank" }), 400, "empty_message"),
        ("/api/messages/", json!({ "thread_id": thread, "content": "hi", "user_id": "mallory" }), 404, "thread_not_found"),
        ("/api/messages/", json!({ "thread_id": thread, "content": "hi" }), 400, "missing_user_id"),
        ("/api/messages/", json!({ "thread_id": "not-a-uuid", "content": "hi", "user_id": "frank" }), 400, "invalid_json"),
        ("/api/messages/stream", json!({ "thread_id": unknown, "content": "hi", "user_id": "frank" }), 404, "thread_not_found"),
        ("/api/threads/", json!({ "user_id": "nobody" }), 404, "user_not_found"),
        ("/api/threads/", json!({ "user_id": "frank", "model": "gpt-99" }), 400, "unknown_model"),
        ("/api/users/", json!({ "user_id": "frank" }), 409, "user_exists"),
        ("/api/users/", json!({ "user_id": "bad id!" }), 400, "invalid_user_id"),
        ("/api/users/", json!({ "user_id": "x", "surprise": 1 }), 400, "invalid_json"),
        ("/api/prices", json!({ "model": HAIKU, "kind": "inptu_tokens", "price": "1" }), 400, "invalid_usage_kind"),
        ("/api/prices", json!({ "model": HAIKU, "kind": "input_tokens", "price": "abc" }), 400, "invalid_price"),
    ];
    for (path, body, status, code) in cases {
        let (s, e) = node.post(path, body.clone()).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{path} {body} -> {status} {code}, got {e}");
    }

    let r = node.client.post(node.url("/api/messages/")).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "malformed JSON is 400");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "invalid_json", "malformed JSON code");

    let huge = "x".repeat(tally_web::MAX_BODY_BYTES + 10);
    let (s, e) = node.post("/api/messages/", json!({ "thread_id": thread, "content": huge, "user_id": "frank" })).await;
    assert_eq!((s, e["code"].as_str()), (413, Some("payload_too_large")), "oversized body is 413");

    let (s, e) = node.get("/api/threads/not-a-uuid").await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_path")), "bad path id");
    let (s, e) = node.get(&format!("/api/threads/{unknown}")).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("thread_not_found")), "unknown thread");
    let (s, e) = node.post(&format!("/api/billing/generate-invoice/thread/{unknown}"), json!({})).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("thread_not_found")), "invoice for unknown thread");
    let (s, e) = node.post(&format!("/api/billing/generate-invoice/thread/{thread}"), json!({})).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("nothing_to_invoice")), "empty thread has nothing to invoice");

    let (_, hist) = node.get(&format!("/api/messages/{thread}/history")).await;
    assert_eq!(hist["messages"].as_array().map(|m| m.len()), Some(0), "no bad request stored a message");
    let (_, m) = node.get("/api/billing/metrics/user/frank").await;
    assert_eq!(dec(&m["metrics"]["total_cost"]), Decimal::ZERO, "no bad request billed anything");
    let (_, users) = node.get("/api/users/").await;
    assert_eq!(users.as_array().map(|u| u.len()), Some(1), "no bad request created a user");
    node.stop().await;
}
