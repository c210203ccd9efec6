//! Fetching both providers' reports from a local server that speaks their formats exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_domain::UsageKind;
use tally_import::testing::{
    anthropic_bucket, anthropic_cost_result, anthropic_usage_result, openai_bucket, openai_cost_result,
    openai_usage_result, Failure, FakeProvider,
};
use tally_import::{fetch_report, ClientConfig, ImportError, Provider, Report, Secret, UsageBucket};

const KEY: &str = "sk-ant-admin01-test-key-0123456789";
const HAIKU: &str = "claude-3-5-haiku-20241022";
const SONNET: &str = "claude-sonnet-4-20250514";
/// 2024-11-01T00:00:00Z.
const NOV1: i64 = 1_730_419_200;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn unix(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap()
}

/// The hourly Anthropic bucket starting at `start` (RFC 3339).
fn hour(start: &str, results: Vec<Value>) -> Value {
    let end = at(start) + TimeDelta::hours(1);
    anthropic_bucket(start, &end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), results)
}

/// An Anthropic usage result with every kind set and a workspace.
fn full_result(model: Option<&str>, input: u64, output: u64) -> Value {
    let mut r = anthropic_usage_result(model, input, output);
    r["cache_read_input_tokens"] = json!(7);
    r["cache_creation"]["ephemeral_5m_input_tokens"] = json!(3);
    r["cache_creation"]["ephemeral_1h_input_tokens"] = json!(2);
    r["server_tool_use"]["web_search_requests"] = json!(1);
    r["workspace_id"] = json!("wrkspc_1");
    r["api_key_id"] = json!("apikey_1");
    r["service_tier"] = json!("standard");
    r
}

fn q(b: &UsageBucket, kind: UsageKind) -> u64 {
    b.quantities.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
}

async fn anthropic_day(fake: &FakeProvider) -> Result<Report, ImportError> {
    fetch_report(&fake.config(Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await
}

async fn openai_day(fake: &FakeProvider) -> Result<Report, ImportError> {
    fetch_report(&fake.config(Provider::OpenAi), unix(NOV1), unix(NOV1 + 86_400)).await
}

fn invalid_field(r: Result<Report, ImportError>) -> (String, String) {
    match r {
        Err(ImportError::InvalidResponse { endpoint, field, .. }) => (endpoint, field),
        other => panic!("expected InvalidResponse, got {other:?}"),
    }
}

#[actix_rt::test]
async fn anthropic_usage_is_read_over_several_pages_and_mapped_to_kinds() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.page_size = 5;
        d.fill_empty_buckets = true; // 24 hourly buckets, most with `results: []`: 5 pages
        d.anthropic_usage = vec![
            hour("2026-11-01T10:00:00Z", vec![full_result(Some(HAIKU), 100, 10)]),
            hour("2026-11-01T12:00:00Z", vec![full_result(Some(HAIKU), 200, 20), full_result(Some(SONNET), 5, 1)]),
            hour("2026-11-01T23:00:00Z", vec![full_result(Some(SONNET), 1, 1)]),
            // Outside the asked range: not served.
            hour("2026-11-02T13:00:00Z", vec![full_result(Some(HAIKU), 1, 1)]),
        ];
    });
    let r = anthropic_day(&fake).await.unwrap();
    assert_eq!(r.usage.len(), 4, "every result of every page and none outside the range: {:?}", r.usage);
    assert_eq!(r.pages, 5 + 1, "24 buckets at 5 a page, then one cost page");
    assert_eq!(r.requests, 6, "one request a page");
    let first = &r.usage[0];
    assert_eq!(first.starting_at, at("2026-11-01T10:00:00Z"), "bucket start");
    assert_eq!(first.ending_at, at("2026-11-01T11:00:00Z"), "bucket end");
    assert_eq!(q(first, UsageKind::InputTokens), 100, "uncached input is input");
    assert_eq!(q(first, UsageKind::OutputTokens), 10, "output");
    assert_eq!(q(first, UsageKind::CacheReadTokens), 7, "cache read");
    assert_eq!(q(first, UsageKind::CacheWrite5mTokens), 3, "cache write 5m");
    assert_eq!(q(first, UsageKind::CacheWrite1hTokens), 2, "cache write 1h");
    assert_eq!(q(first, UsageKind::Resource("web_search_requests".into())), 1, "web search requests");
    assert_eq!(first.model.as_deref(), Some(HAIKU), "model");
    assert_eq!(first.api_key_id.as_deref(), Some("apikey_1"), "api key");
    assert_eq!(first.workspace_id.as_deref(), Some("wrkspc_1"), "workspace");
    assert_eq!(first.service_tier.as_deref(), Some("standard"), "service tier");
    assert_eq!(first.requests, None, "Anthropic counts no requests");
    assert_eq!(r.usage[3].starting_at, at("2026-11-01T23:00:00Z"), "the last page is read");

    let sent = fake.requests();
    let usage: Vec<_> = sent.iter().filter(|x| x.path == "/v1/organizations/usage_report/messages").collect();
    assert_eq!(usage.len(), 5, "five usage pages asked");
    for x in &sent {
        assert!(x.authorized, "x-api-key on every request: {x:?}");
        assert_eq!(x.anthropic_version.as_deref(), Some("2023-06-01"), "anthropic-version on every request");
        assert_eq!(x.user_agent.as_deref(), Some("tally-test/1.0"), "the configured user agent");
    }
    let u0 = usage[0];
    assert_eq!(u0.param("bucket_width"), Some("1h"), "hourly buckets");
    assert_eq!(u0.param("starting_at"), Some("2026-11-01T00:00:00Z"), "RFC 3339 start");
    assert_eq!(u0.param("ending_at"), Some("2026-11-02T00:00:00Z"), "RFC 3339 end");
    assert_eq!(
        u0.param_values("group_by[]"),
        vec!["model", "api_key_id", "workspace_id", "service_tier"],
        "grouped by the four dimensions, bracketed and repeated"
    );
    assert_eq!(u0.param("page"), None, "the first page has no cursor");
    for pair in usage.windows(2) {
        assert!(pair[1].param("page").is_some(), "each later page sends the previous next_page");
        assert_eq!(pair[1].param("starting_at"), u0.param("starting_at"), "the same query is repeated");
        assert_ne!(pair[0].param("page"), pair[1].param("page"), "the cursor advances");
    }
    let costs = sent.iter().find(|x| x.path == "/v1/organizations/cost_report").unwrap();
    assert_eq!(costs.param("bucket_width"), Some("1d"), "daily costs");
    assert_eq!(costs.param_values("group_by[]"), vec!["workspace_id", "description"], "costs by workspace and description");
}

#[actix_rt::test]
async fn anthropic_cost_cents_become_exact_dollars_over_pages() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.page_size = 1;
        d.anthropic_costs = vec![
            anthropic_bucket(
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
                vec![anthropic_cost_result("123.78912", Some("Claude 3.5 Haiku Usage - Input Tokens")), {
                    let mut web = anthropic_cost_result("0.1", None);
                    web["cost_type"] = json!("web_search");
                    web["workspace_id"] = json!("wrkspc_1");
                    web
                }],
            ),
            anthropic_bucket("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z", vec![anthropic_cost_result("1500", Some("x"))]),
            anthropic_bucket("2026-11-03T00:00:00Z", "2026-11-04T00:00:00Z", vec![]),
        ];
    });
    let r = fetch_report(&fake.config(Provider::Anthropic), at("2026-11-01T00:00:00Z"), at("2026-11-04T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(r.costs.len(), 3, "every cost item of the three cost pages");
    assert_eq!(r.costs[0].amount_usd, dec("1.2378912"), "123.78912 cents is $1.2378912, not $1.23");
    assert_eq!(r.costs[1].amount_usd, dec("0.001"), "0.1 cents");
    assert_eq!(r.costs[2].amount_usd, dec("15"), "1500 cents");
    let total: Decimal = r.costs.iter().map(|c| c.amount_usd).sum();
    assert_eq!(total, dec("16.2388912"), "the exact total");
    assert_eq!(r.costs[0].currency, "USD", "currency");
    assert_eq!(r.costs[0].description.as_deref(), Some("Claude 3.5 Haiku Usage - Input Tokens"), "the description as given");
    assert_eq!(r.costs[1].description.as_deref(), Some("web_search"), "the cost type when no description");
    assert_eq!(r.costs[1].workspace_id.as_deref(), Some("wrkspc_1"), "workspace");
    assert_eq!(r.costs[2].starting_at, at("2026-11-02T00:00:00Z"), "the day of the second page");
}

#[actix_rt::test]
async fn empty_buckets_and_zero_results_give_no_usage() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.fill_empty_buckets = true;
        d.anthropic_usage = vec![hour("2026-11-01T03:00:00Z", vec![anthropic_usage_result(Some(HAIKU), 0, 0)])];
        d.openai_usage = vec![];
    });
    let r = anthropic_day(&fake).await.unwrap();
    assert!(r.usage.is_empty(), "empty buckets (`results: []`) and all-zero results are no usage: {:?}", r.usage);
    assert!(r.costs.is_empty(), "no costs");
    assert_eq!(r.pages, 2, "one usage page of 24 empty buckets, one cost page");
    let r = openai_day(&fake).await.unwrap();
    assert!(r.usage.is_empty() && r.costs.is_empty(), "OpenAI empty buckets are no usage either");
}

#[actix_rt::test]
async fn null_dimensions_are_none_and_still_a_group_of_their_own() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.anthropic_usage = vec![hour(
            "2026-11-01T10:00:00Z",
            vec![
                anthropic_usage_result(None, 5, 0), // every dimension null (default workspace, console usage)
                full_result(None, 6, 0),
                full_result(Some(HAIKU), 7, 0),
            ],
        )];
        d.openai_usage = vec![openai_bucket(NOV1, NOV1 + 3600, vec![openai_usage_result(None, 10, 1, 1), {
            let mut r = openai_usage_result(Some("gpt-4o"), 10, 1, 1);
            r["project_id"] = json!("proj_1");
            r["api_key_id"] = json!("key_1");
            r
        }])];
    });
    let r = anthropic_day(&fake).await.unwrap();
    let none = &r.usage[0];
    assert_eq!(
        (&none.model, &none.api_key_id, &none.workspace_id, &none.service_tier),
        (&None, &None, &None, &None),
        "null dimensions are none, not empty strings"
    );
    let ids: HashSet<_> = r.usage.iter().map(UsageBucket::event_id).collect();
    assert_eq!(ids.len(), 3, "three groups of one bucket: three ids");
    let o = openai_day(&fake).await.unwrap();
    assert_eq!(o.usage[0].model, None, "OpenAI null model");
    assert_eq!(o.usage[1].workspace_id.as_deref(), Some("proj_1"), "OpenAI project is the workspace");
    assert_eq!(o.usage[1].api_key_id.as_deref(), Some("key_1"), "OpenAI api key");
    assert_ne!(o.usage[0].event_id(), o.usage[1].event_id(), "different groups, different ids");
}

#[actix_rt::test]
async fn openai_usage_derives_uncached_input_and_keeps_a_partial_first_bucket() {
    let fake = FakeProvider::start(KEY);
    let from = unix(NOV1 + 1860); // 00:31: the first hourly bucket is partial
    fake.set(|d| {
        d.page_size = 4;
        d.fill_empty_buckets = true;
        d.openai_usage = vec![
            openai_bucket(NOV1 + 1860, NOV1 + 3600, vec![{
                let mut r = openai_usage_result(Some("gpt-4o-mini"), 1000, 500, 5);
                r["input_cached_tokens"] = json!(400);
                r["input_cache_write_tokens"] = json!(100);
                r
            }]),
            openai_bucket(NOV1 + 7200, NOV1 + 10_800, vec![{
                let mut r = openai_usage_result(Some("gpt-4o"), 10, 1, 1);
                r["input_uncached_tokens"] = json!(9);
                r["input_cached_tokens"] = json!(1);
                r
            }]),
            // 2024-12 shape: only the four original fields.
            openai_bucket(NOV1 + 14_400, NOV1 + 18_000, vec![json!({
                "object": "organization.usage.completions.result", "input_tokens": 30, "input_cached_tokens": 20,
                "output_tokens": 3, "num_model_requests": 2, "model": "gpt-4o"})]),
        ];
    });
    let r = fetch_report(&fake.config(Provider::OpenAi), from, unix(NOV1 + 86_400)).await.unwrap();
    assert_eq!(r.usage.len(), 3, "three buckets with usage among 24");
    let first = &r.usage[0];
    assert_eq!(first.starting_at, from, "the partial first bucket keeps its start");
    assert_eq!(first.ending_at, unix(NOV1 + 3600), "and ends on the hour");
    assert_eq!(q(first, UsageKind::InputTokens), 500, "uncached = input - cached - cache writes");
    assert_eq!(q(first, UsageKind::CacheReadTokens), 400, "cached input is a cache read");
    assert_eq!(q(first, UsageKind::CacheWrite5mTokens), 100, "cache writes count as 5-minute writes");
    assert_eq!(q(first, UsageKind::OutputTokens), 500, "output");
    assert_eq!(first.requests, Some(5), "model requests");
    assert_eq!(q(&r.usage[1], UsageKind::InputTokens), 9, "input_uncached_tokens is used when given");
    assert_eq!(q(&r.usage[2], UsageKind::InputTokens), 10, "the 2024 shape: input - cached");
    assert_eq!(r.pages, 6 + 1, "24 buckets at 4 a page, then one cost page");

    let sent = fake.requests();
    assert!(sent.iter().all(|x| x.authorized), "Authorization: Bearer on every request");
    let u = &sent[0];
    assert_eq!(u.path, "/v1/organization/usage/completions", "the completions usage endpoint");
    assert_eq!(u.param("start_time"), Some((NOV1 + 1860).to_string().as_str()), "Unix seconds start");
    assert_eq!(u.param("end_time"), Some((NOV1 + 86_400).to_string().as_str()), "Unix seconds end");
    assert_eq!(u.param("bucket_width"), Some("1h"), "hourly buckets");
    assert_eq!(u.param_values("group_by"), vec!["model", "project_id", "api_key_id"], "grouped by model, project, key");
    let c = sent.iter().find(|x| x.path == "/v1/organization/costs").unwrap();
    assert_eq!(c.param("bucket_width"), Some("1d"), "daily costs");
    assert_eq!(c.param_values("group_by"), vec!["line_item", "project_id"], "costs by line item and project");
}

#[actix_rt::test]
async fn openai_amounts_as_numbers_and_strings_are_exact() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.page_size = 1;
        d.openai_costs = vec![
            openai_bucket(NOV1, NOV1 + 86_400, vec![
                openai_cost_result(json!(0.06), Some("input_tokens")),
                openai_cost_result(json!("12.50"), Some("Text tokens")),
                openai_cost_result(json!(1.0000001), None),
            ]),
            openai_bucket(NOV1 + 86_400, NOV1 + 172_800, vec![{
                let mut c = openai_cost_result(json!(0.1), Some("output_tokens"));
                c["project_id"] = json!("proj_1");
                c
            }]),
        ];
    });
    let r = fetch_report(&fake.config(Provider::OpenAi), unix(NOV1), unix(NOV1 + 172_800)).await.unwrap();
    let amounts: Vec<Decimal> = r.costs.iter().map(|c| c.amount_usd).collect();
    assert_eq!(amounts, vec![dec("0.06"), dec("12.50"), dec("1.0000001"), dec("0.1")], "each amount exactly as written");
    let total: Decimal = amounts.iter().sum();
    assert_eq!(total, dec("13.6600001"), "the exact total (0.06 + 0.1 in f64 would not be)");
    assert_eq!(r.costs[0].currency, "USD", "currency upper-cased");
    assert_eq!(r.costs[1].description.as_deref(), Some("Text tokens"), "the line item as given");
    assert_eq!(r.costs[3].workspace_id.as_deref(), Some("proj_1"), "the project");
    assert_eq!(r.costs[3].starting_at, unix(NOV1 + 86_400), "the second day, from the second page");
}

#[actix_rt::test]
async fn rate_limits_are_retried_after_what_retry_after_asks() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.anthropic_usage = vec![hour("2026-11-01T10:00:00Z", vec![full_result(Some(HAIKU), 1, 1)])];
        d.failures.push_back(Failure::status(429, Some(1)));
        d.failures.push_back(Failure::status(429, Some(1)));
    });
    let started = Instant::now();
    let r = anthropic_day(&fake).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "two retry-after: 1 waits of a second each");
    assert_eq!(r.usage.len(), 1, "served after the retries");
    assert_eq!(r.requests, 4, "two 429s, the usage page and the cost page");

    // An HTTP-date retry-after, on OpenAI.
    fake.set(|d| {
        d.openai_usage = vec![openai_bucket(NOV1, NOV1 + 3600, vec![openai_usage_result(Some("gpt-4o"), 1, 1, 1)])];
        d.failures.push_back(Failure::status(429, None).retry_at(Utc::now() + TimeDelta::seconds(2)));
    });
    let started = Instant::now();
    let r = openai_day(&fake).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "an HTTP-date retry-after is waited for");
    assert_eq!(r.usage.len(), 1, "served after the retry");
}

#[actix_rt::test]
async fn server_errors_are_retried_then_succeed() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.anthropic_usage = vec![hour("2026-11-01T10:00:00Z", vec![full_result(Some(HAIKU), 1, 1)])];
        d.failures.push_back(Failure::status(500, None));
        d.failures.push_back(Failure::status(529, None));
    });
    let r = anthropic_day(&fake).await.unwrap();
    assert_eq!(r.usage.len(), 1, "the answer after a 500 and a 529");
    assert_eq!(r.requests, 4, "two failures, then both reports");

    fake.set(|d| {
        d.openai_costs = vec![openai_bucket(NOV1, NOV1 + 86_400, vec![openai_cost_result(json!("1.5"), None)])];
        d.failures.push_back(Failure::raw(502, "<html>Bad Gateway</html>"));
    });
    let r = openai_day(&fake).await.unwrap();
    assert_eq!(r.costs.len(), 1, "the answer after a 502 HTML page");

    // Retries run out: the last error, retryable, and nothing returned.
    let mut cfg = fake.config(Provider::OpenAi);
    cfg.max_retries = 1;
    fake.set(|d| {
        d.failures.push_back(Failure::status(503, None));
        d.failures.push_back(Failure::status(503, None));
    });
    let e = fetch_report(&cfg, unix(NOV1), unix(NOV1 + 86_400)).await.unwrap_err();
    assert!(matches!(e, ImportError::Provider { status: 503, .. }), "the last 503: {e}");
    assert!(e.is_retryable(), "a later run may succeed");
}

#[actix_rt::test]
async fn client_errors_fail_at_once_with_the_providers_message() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| d.failures.push_back(Failure::error(403, "permission_error", "This key is not an admin key")));
    let e = anthropic_day(&fake).await.unwrap_err();
    match &e {
        ImportError::Provider { status, kind, message } => {
            assert_eq!(*status, 403, "status");
            assert_eq!(kind, "permission_error", "Anthropic error.type");
            assert!(message.contains("This key is not an admin key"), "Anthropic error.message: {message}");
        }
        other => panic!("expected a provider error, got {other:?}"),
    }
    assert!(!e.is_retryable(), "a 403 is not retried");
    assert_eq!(fake.requests().len(), 1, "one request, no retry");

    fake.clear_requests();
    fake.set(|d| {
        d.failures.push_back(Failure::error(400, "invalid_request_error", "Missing scopes: api.usage.read."));
    });
    let e = openai_day(&fake).await.unwrap_err();
    assert!(
        matches!(&e, ImportError::Provider { status: 400, kind, message }
            if kind == "invalid_request_error" && message.contains("api.usage.read")),
        "OpenAI's error body is surfaced: {e}"
    );
    assert_eq!(fake.requests().len(), 1, "one request, no retry");

    let mut wrong = fake.config(Provider::OpenAi);
    wrong.admin_key = Secret::new("sk-admin-wrong-key".into());
    let e = fetch_report(&wrong, unix(NOV1), unix(NOV1 + 3600)).await.unwrap_err();
    assert!(matches!(&e, ImportError::Provider { status: 401, .. }), "a wrong key: 401 ({e})");
    assert!(e.to_string().contains("invalid_api_key"), "OpenAI's error code is kept: {e}");
    assert!(!e.to_string().contains("wrong-key"), "the key is never in the error");
    let mut wrong = fake.config(Provider::Anthropic);
    wrong.admin_key = Secret::new("sk-ant-wrong".into());
    let e = fetch_report(&wrong, at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap_err();
    assert!(matches!(&e, ImportError::Provider { status: 401, kind, .. } if kind == "authentication_error"), "{e}");
    assert!(!format!("{wrong:?}").contains("sk-ant-wrong"), "Debug of the config hides the key");
}

#[actix_rt::test]
async fn answers_outside_the_format_fail_the_whole_fetch() {
    let fake = FakeProvider::start(KEY);
    let good = || hour("2026-11-01T10:00:00Z", vec![full_result(Some(HAIKU), 1, 1)]);
    let envelope = |data: Value| json!({"data": [data], "has_more": false, "next_page": null}).to_string();
    let mut negative = full_result(Some(HAIKU), 1, 1);
    negative["output_tokens"] = json!(-1);
    let mut missing = full_result(Some(HAIKU), 1, 1);
    missing.as_object_mut().unwrap().remove("uncached_input_tokens");
    let mut wrong_type = full_result(Some(HAIKU), 1, 1);
    wrong_type["cache_creation"]["ephemeral_1h_input_tokens"] = json!("12");
    let mut bad_dim = full_result(Some(HAIKU), 1, 1);
    bad_dim["model"] = json!(42);
    let cases: Vec<(&str, Failure, &str)> = vec![
        ("malformed JSON", Failure::body("{\"data\": ["), "body"),
        ("not an object", Failure::body("[]"), "body"),
        ("missing has_more", Failure::body("{\"data\": [], \"next_page\": null}"), "has_more"),
        ("missing data", Failure::body("{\"has_more\": false, \"next_page\": null}"), "data"),
        ("has_more without a cursor", Failure::body("{\"data\": [], \"has_more\": true, \"next_page\": null}"), "next_page"),
        ("negative count", Failure::body(&envelope(hour("2026-11-01T10:00:00Z", vec![negative]))), "data[0].results[0].output_tokens"),
        ("missing field", Failure::body(&envelope(hour("2026-11-01T10:00:00Z", vec![missing]))), "data[0].results[0].uncached_input_tokens"),
        (
            "count as a string",
            Failure::body(&envelope(hour("2026-11-01T10:00:00Z", vec![wrong_type]))),
            "data[0].results[0].cache_creation.ephemeral_1h_input_tokens",
        ),
        ("dimension as a number", Failure::body(&envelope(hour("2026-11-01T10:00:00Z", vec![bad_dim]))), "data[0].results[0].model"),
        (
            "time not RFC 3339",
            Failure::body(&envelope(json!({"starting_at": "yesterday", "ending_at": "2026-11-01T11:00:00Z", "results": []}))),
            "data[0].starting_at",
        ),
        (
            "end before start",
            Failure::body(&envelope(anthropic_bucket("2026-11-01T11:00:00Z", "2026-11-01T10:00:00Z", vec![]))),
            "data[0].ending_at",
        ),
        ("results not an array", Failure::body(&envelope(json!({"starting_at": "2026-11-01T10:00:00Z", "ending_at": "2026-11-01T11:00:00Z", "results": {}}))), "data[0].results"),
    ];
    for (label, bad, field) in cases {
        fake.set(|d| {
            d.anthropic_usage = vec![good()];
            d.failures.push_back(bad);
        });
        let (endpoint, got) = invalid_field(anthropic_day(&fake).await);
        assert_eq!(got, field, "{label}: the error names the field");
        assert!(endpoint.contains("usage_report/messages"), "{label}: and the endpoint ({endpoint})");
    }

    // A bad value on a later page: the good pages before it are not returned either.
    fake.set(|d| {
        d.page_size = 1;
        let mut bad = full_result(Some(SONNET), 1, 1);
        bad["server_tool_use"]["web_search_requests"] = json!(-3);
        d.anthropic_usage = vec![good(), hour("2026-11-01T11:00:00Z", vec![bad])];
    });
    let (endpoint, field) = invalid_field(anthropic_day(&fake).await);
    assert_eq!(field, "data[0].results[0].server_tool_use.web_search_requests", "the bad field of page 2");
    assert!(endpoint.contains("page 2"), "the page is named: {endpoint}");

    // Costs: Anthropic amounts must be decimal strings in USD; OpenAI amounts numbers or strings.
    fake.set(|d| {
        d.page_size = 0;
        d.anthropic_usage = vec![good()];
        let mut number = anthropic_cost_result("1", None);
        number["amount"] = json!(12.5);
        d.anthropic_costs = vec![anthropic_bucket("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", vec![number])];
    });
    assert_eq!(invalid_field(anthropic_day(&fake).await).1, "data[0].results[0].amount", "a number amount from Anthropic");
    fake.set(|d| {
        let mut eur = anthropic_cost_result("1", None);
        eur["currency"] = json!("EUR");
        d.anthropic_costs = vec![anthropic_bucket("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", vec![eur])];
    });
    assert_eq!(invalid_field(anthropic_day(&fake).await).1, "data[0].results[0].currency", "a currency other than USD");

    let mut cached_over = openai_usage_result(Some("gpt-4o"), 10, 1, 1);
    cached_over["input_cached_tokens"] = json!(11);
    let mut no_requests = openai_usage_result(Some("gpt-4o"), 10, 1, 1);
    no_requests.as_object_mut().unwrap().remove("num_model_requests");
    let mut wrong_object = openai_usage_result(Some("gpt-4o"), 10, 1, 1);
    wrong_object["object"] = json!("organization.usage.embeddings.result");
    let openai_cases = vec![
        ("cached above input", vec![cached_over], "data[0].results[0].input_tokens"),
        ("missing num_model_requests", vec![no_requests], "data[0].results[0].num_model_requests"),
        ("another result type", vec![wrong_object], "data[0].results[0].object"),
    ];
    for (label, results, field) in openai_cases {
        fake.set(|d| d.openai_usage = vec![openai_bucket(NOV1, NOV1 + 3600, results)]);
        assert_eq!(invalid_field(openai_day(&fake).await).1, field, "OpenAI {label}");
    }
    fake.set(|d| {
        d.openai_usage = vec![openai_bucket(NOV1, NOV1 + 3600, vec![openai_usage_result(Some("gpt-4o"), 10, 1, 1)])];
        d.failures.push_back(Failure::body(&json!({"object": "page", "data": [{"object": "bucket", "start_time": "2024-11-01", "end_time": NOV1 + 3600, "results": []}], "has_more": false, "next_page": null}).to_string()));
    });
    assert_eq!(invalid_field(openai_day(&fake).await).1, "data[0].start_time", "OpenAI times are Unix seconds");
    for (label, value) in [("a word", json!("twelve")), ("a boolean", json!(true)), ("negative", json!(-0.5)), ("null", Value::Null)] {
        fake.set(|d| d.openai_costs = vec![openai_bucket(NOV1, NOV1 + 86_400, vec![openai_cost_result(value, None)])]);
        assert_eq!(invalid_field(openai_day(&fake).await).1, "data[0].results[0].amount.value", "OpenAI amount as {label}");
    }
}

#[actix_rt::test]
async fn event_ids_are_stable_and_revised_buckets_change_their_hash() {
    let fake = FakeProvider::start(KEY);
    fake.set(|d| {
        d.page_size = 1;
        d.anthropic_usage = vec![
            hour("2026-11-01T10:00:00Z", vec![full_result(Some(HAIKU), 100, 10), full_result(Some(SONNET), 100, 10)]),
            hour("2026-11-01T11:00:00Z", vec![full_result(Some(HAIKU), 100, 10)]),
        ];
    });
    let first = anthropic_day(&fake).await.unwrap();
    let again = anthropic_day(&fake).await.unwrap();
    let ids = |r: &Report| r.usage.iter().map(UsageBucket::event_id).collect::<Vec<_>>();
    let hashes = |r: &Report| r.usage.iter().map(UsageBucket::content_hash).collect::<Vec<_>>();
    assert_eq!(ids(&first), ids(&again), "re-reading gives the same event ids");
    assert_eq!(hashes(&first), hashes(&again), "and the same content hashes");
    assert_eq!(ids(&first).into_iter().collect::<HashSet<_>>().len(), 3, "each bucket x group has its own id");
    assert!(ids(&first).iter().all(|id| id.get_version_num() == 8), "UUIDv8 ids");

    // The provider revises a late bucket: same id, another hash; the others are untouched.
    fake.set(|d| d.anthropic_usage[1]["results"][0]["output_tokens"] = json!(11));
    let revised = anthropic_day(&fake).await.unwrap();
    assert_eq!(ids(&revised), ids(&first), "a revised bucket keeps its id");
    assert_ne!(revised.usage[2].content_hash(), first.usage[2].content_hash(), "the revised bucket's hash changes");
    assert_eq!(hashes(&revised)[..2], hashes(&first)[..2], "unrevised buckets keep their hash");
    assert_eq!(q(&revised.usage[2], UsageKind::OutputTokens), 11, "the revised numbers are read");

    // The same bucket and group under the other provider is another event.
    let mut other = first.usage[0].clone();
    other.provider = Provider::OpenAi;
    assert_ne!(other.event_id(), first.usage[0].event_id(), "the provider is part of the id");
}

#[actix_rt::test]
async fn bad_arguments_fail_before_any_request() {
    let fake = FakeProvider::start(KEY);
    let cfg = fake.config(Provider::Anthropic);
    let e = fetch_report(&cfg, at("2026-11-02T00:00:00Z"), at("2026-11-01T00:00:00Z")).await.unwrap_err();
    assert!(matches!(e, ImportError::InvalidRange(_)), "a reversed range: {e}");
    let mut bad = cfg.clone();
    bad.base_url = "not a url".into();
    let e = fetch_report(&bad, at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z")).await.unwrap_err();
    assert!(matches!(&e, ImportError::Config(m) if m.contains("base_url")), "a bad base URL names the key: {e}");
    assert!(fake.requests().is_empty(), "nothing was sent");
    let defaults = ClientConfig::new(Provider::OpenAi, Secret::new("sk-admin-x".into()));
    assert_eq!(defaults.base_url, "https://api.openai.com", "OpenAI's public base by default");
}
