//! Fetching both providers' reports from a local server that speaks their formats exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_domain::UsageKind;
use tally_import::testing::{Failure, FakeProvider};
use tally_import::{fetch_report, ClientConfig, ImportError, Provider, Secret};

const KEY: &str = "sk-ant-admin01-test-key-0123456789";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn cfg(fake: &FakeProvider, provider: Provider) -> ClientConfig {
    ClientConfig {
        provider,
        base_url: fake.base_url.clone(),
        admin_key: Secret::new(KEY.to_string()),
        user_agent: "tally-test/1".into(),
        min_interval: Duration::ZERO,
        max_retries: 3,
    }
}

fn anthropic_usage(start: &str, end: &str, results: Vec<Value>) -> Value {
    json!({"starting_at": start, "ending_at": end, "results": results})
}

fn a_result(model: Option<&str>, input: u64, output: u64) -> Value {
    json!({
        "uncached_input_tokens": input, "cache_read_input_tokens": 7, "output_tokens": output,
        "cache_creation": {"ephemeral_5m_input_tokens": 3, "ephemeral_1h_input_tokens": 0},
        "server_tool_use": {"web_search_requests": 1},
        "model": model, "api_key_id": null, "workspace_id": "wrkspc_1", "service_tier": "standard", "context_window": null
    })
}

fn q(b: &tally_import::UsageBucket, kind: UsageKind) -> u64 {
    b.quantities.iter().find(|(k, _)| *k == kind).map(|(_, n)| *n).unwrap_or(0)
}

#[actix_rt::test]
async fn anthropic_reads_every_page_maps_kinds_and_cents_exactly() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.page_size = 2;
        d.anthropic_usage = vec![
            anthropic_usage("2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", vec![a_result(Some("claude-3-5-haiku-20241022"), 100, 10)]),
            anthropic_usage("2026-11-01T11:00:00Z", "2026-11-01T12:00:00Z", vec![]),
            anthropic_usage(
                "2026-11-01T12:00:00Z",
                "2026-11-01T13:00:00Z",
                vec![a_result(Some("claude-3-5-haiku-20241022"), 200, 20), a_result(None, 5, 0)],
            ),
            anthropic_usage("2026-11-01T13:00:00Z", "2026-11-01T14:00:00Z", vec![a_result(Some("claude-sonnet-4-20250514"), 1, 1)]),
            // Outside the asked range: not served.
            anthropic_usage("2026-11-02T13:00:00Z", "2026-11-02T14:00:00Z", vec![a_result(Some("x"), 1, 1)]),
        ];
        d.anthropic_costs = vec![json!({"starting_at": "2026-11-01T00:00:00Z", "ending_at": "2026-11-02T00:00:00Z", "results": [
            {"currency": "USD", "amount": "123.78912", "workspace_id": null, "description": "Claude 3.5 Haiku Usage - Input Tokens",
             "cost_type": "tokens", "context_window": null, "model": "claude-3-5-haiku-20241022", "service_tier": "standard",
             "token_type": "uncached_input_tokens"},
            {"currency": "USD", "amount": "0.1", "workspace_id": "wrkspc_1", "description": null, "cost_type": "web_search",
             "context_window": null, "model": null, "service_tier": null, "token_type": null}]})];
    });
    let r = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(r.usage.len(), 4, "every non-empty result of every page, and none outside the range: {:?}", r.usage);
    assert_eq!(r.pages, 3, "two usage pages of two buckets, one cost page");
    let first = &r.usage[0];
    assert_eq!(q(first, UsageKind::InputTokens), 100, "uncached input");
    assert_eq!(q(first, UsageKind::CacheReadTokens), 7, "cache read");
    assert_eq!(q(first, UsageKind::CacheWrite5mTokens), 3, "cache write 5m");
    assert_eq!(q(first, UsageKind::CacheWrite1hTokens), 0, "zero kinds are left out");
    assert_eq!(q(first, UsageKind::Resource("web_search_requests".into())), 1, "web searches");
    assert!(r.usage.iter().any(|b| b.model.is_none()), "a null model is kept as none");
    let total: Decimal = r.costs.iter().map(|c| c.amount_usd).sum();
    assert_eq!(total, "1.2378912".parse::<Decimal>().unwrap() + "0.001".parse::<Decimal>().unwrap(), "cents to dollars exactly");
    assert_eq!(r.costs[1].description.as_deref(), Some("web_search"), "cost type when no description");
    let reqs = fake.requests();
    assert!(reqs.iter().all(|x| x.authorized), "x-api-key and anthropic-version on every request");
    assert!(reqs[0].query.contains("group_by[]=model") && reqs[0].query.contains("bucket_width=1h"), "grouped hourly: {}", reqs[0].query);
    assert!(reqs[1].query.contains("page=page_2"), "the second page follows next_page: {}", reqs[1].query);

    // The same fetch again: the same ids. A revised late bucket: same id, another hash.
    let again = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(
        r.usage.iter().map(|b| b.event_id()).collect::<Vec<_>>(),
        again.usage.iter().map(|b| b.event_id()).collect::<Vec<_>>(),
        "re-reading gives the same event ids"
    );
    fake.set(|d| d.anthropic_usage[0]["results"][0]["output_tokens"] = json!(11));
    let revised = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(revised.usage[0].event_id(), r.usage[0].event_id(), "a revised bucket keeps its id");
    assert_ne!(revised.usage[0].content_hash(), r.usage[0].content_hash(), "and changes its hash");
    let ids: std::collections::HashSet<_> = r.usage.iter().map(|b| b.event_id()).collect();
    assert_eq!(ids.len(), r.usage.len(), "every bucket x group has its own id");
}

#[actix_rt::test]
async fn openai_derives_uncached_input_and_reads_amounts_as_numbers_or_strings() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.openai_usage = vec![
            // A partial first bucket (not on the hour), then a full one.
            json!({"object": "bucket", "start_time": 1_730_419_260i64, "end_time": 1_730_422_800i64, "results": [
                {"object": "organization.usage.completions.result", "input_tokens": 1000, "input_cached_tokens": 400,
                 "input_cache_write_tokens": 100, "output_tokens": 500, "num_model_requests": 5,
                 "project_id": null, "user_id": null, "api_key_id": "key_1", "model": "gpt-4o-mini", "batch": null, "service_tier": null}]}),
            json!({"object": "bucket", "start_time": 1_730_422_800i64, "end_time": 1_730_426_400i64, "results": [
                {"object": "organization.usage.completions.result", "input_tokens": 10, "input_uncached_tokens": 10,
                 "output_tokens": 1, "num_model_requests": 1, "model": "gpt-4o"}]}),
        ];
        d.openai_costs = vec![json!({"object": "bucket", "start_time": 1_730_419_200i64, "end_time": 1_730_505_600i64, "results": [
            {"object": "organization.costs.result", "amount": {"value": 0.06, "currency": "usd"}, "line_item": "input_tokens", "project_id": null},
            {"object": "organization.costs.result", "amount": {"value": "12.50", "currency": "usd"}, "line_item": "Text tokens", "project_id": "proj_1"},
            {"object": "organization.costs.result", "amount": {"value": 1.0000001, "currency": "usd"}, "line_item": null, "project_id": null}]})];
    });
    let from = DateTime::from_timestamp(1_730_419_200, 0).unwrap();
    let r = fetch_report(&cfg(&fake, Provider::OpenAi), from, from + chrono::TimeDelta::days(1)).await.unwrap();
    assert_eq!(r.usage.len(), 2, "both buckets");
    assert_eq!(q(&r.usage[0], UsageKind::InputTokens), 500, "uncached = input - cached - cache writes");
    assert_eq!(q(&r.usage[0], UsageKind::CacheReadTokens), 400, "cached input is a cache read");
    assert_eq!(r.usage[0].requests, Some(5), "model requests");
    assert_eq!(r.usage[0].starting_at, DateTime::from_timestamp(1_730_419_260, 0).unwrap(), "the partial bucket keeps its start");
    let total: Decimal = r.costs.iter().map(|c| c.amount_usd).sum();
    assert_eq!(total, "13.5600001".parse::<Decimal>().unwrap(), "numbers and strings, exactly");
    assert!(fake.requests().iter().all(|x| x.authorized), "Bearer admin key");
}

#[actix_rt::test]
async fn rate_limits_and_server_errors_are_retried_and_client_errors_are_not() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.anthropic_usage = vec![anthropic_usage("2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", vec![a_result(Some("m"), 1, 1)])];
        d.failures.push_back(Failure::status(429, Some(1)));
        d.failures.push_back(Failure::status(529, None));
        d.failures.push_back(Failure::status(500, None));
    });
    let started = std::time::Instant::now();
    let r = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap();
    assert_eq!(r.usage.len(), 1, "served after the retries");
    assert!(started.elapsed() >= Duration::from_secs(1), "retry-after was honoured");
    assert_eq!(r.requests, 5, "three failures, then the usage page and the cost page");

    fake.set(|d| d.failures.push_back(Failure::status(403, None)));
    let e = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap_err();
    assert!(
        matches!(&e, ImportError::Provider { status: 403, kind, .. } if kind == "invalid_request_error"),
        "a 4xx fails at once with the provider's error type: {e}"
    );
    let mut bad = cfg(&fake, Provider::Anthropic);
    bad.admin_key = Secret::new("wrong".into());
    let e = fetch_report(&bad, at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap_err();
    assert!(matches!(&e, ImportError::Provider { status: 401, .. }), "a wrong key: 401 ({e})");
    assert!(!e.to_string().contains("wrong"), "the key is never in the error");
}

#[actix_rt::test]
async fn answers_outside_the_format_fail_the_whole_fetch() {
    let fake = FakeProvider::start(KEY);
    let good = anthropic_usage("2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", vec![a_result(Some("m"), 1, 1)]);
    for (label, bad) in [
        ("malformed JSON", Failure::body("{\"data\": [")),
        ("missing has_more", Failure::body("{\"data\": [], \"next_page\": null}")),
        ("negative count", Failure::body(&json!({"data": [anthropic_usage("2026-11-01T10:00:00Z", "2026-11-01T11:00:00Z", vec![a_result(Some("m"), 1, 1)])], "has_more": false, "next_page": null}).to_string().replace("\"output_tokens\":1", "\"output_tokens\":-1"))),
        ("missing field", Failure::body(&json!({"data": [{"starting_at": "2026-11-01T10:00:00Z", "ending_at": "2026-11-01T11:00:00Z", "results": [{"output_tokens": 1}]}], "has_more": false, "next_page": null}).to_string())),
        ("bad time", Failure::body(&json!({"data": [{"starting_at": "yesterday", "ending_at": "2026-11-01T11:00:00Z", "results": []}], "has_more": false, "next_page": null}).to_string())),
    ] {
        fake.set(|d| {
            d.anthropic_usage = vec![good.clone()];
            d.failures.push_back(bad);
        });
        let e = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await;
        assert!(matches!(e, Err(ImportError::InvalidResponse(_))), "{label}: the fetch fails as a whole: {e:?}");
    }
    fake.set(|d| {
        d.anthropic_costs = vec![json!({"starting_at": "2026-11-01T00:00:00Z", "ending_at": "2026-11-02T00:00:00Z", "results": [
            {"currency": "USD", "amount": 12.5, "workspace_id": null, "description": null}]})];
    });
    let e = fetch_report(&cfg(&fake, Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await;
    assert!(matches!(e, Err(ImportError::InvalidResponse(_))), "Anthropic amounts must be decimal strings: {e:?}");
}
