//! Provider import end to end: a connection pointing at a local server that speaks Anthropic's
//! Admin API; a run and an overlapping backfill import exactly the served usage and cost; a
//! re-import changes nothing; a revised late bucket replaces its import; a malformed answer
//! imports nothing; reconciliation shows the planted difference and no other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_actors::billing::{BillUsage, UsageEvent};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::{Catalog, Usage, UsageKind};
use tally_import::testing::{Failure, FakeProvider};
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::analytics::{AnalyticsFilter, Dim};
use tally_store::Store;
use tally_web::providers::crypto::EncryptionKey;
use tally_web::providers::{ImportSettings, ProviderImports};
use uuid::Uuid;

const CATALOG: &str = include_str!("../../catalog/prices.json");
const HAIKU: &str = "claude-3-5-haiku-20241022";
const ADMIN_KEY: &str = "sk-ant-admin01-import-test-SECRET-9876";

struct App {
    base: String,
    actors: ActorSystem,
    store: Store,
    handle: actix_web::dev::ServerHandle,
    client: reqwest::Client,
}

async fn start(dir: &tempfile::TempDir) -> App {
    let db_url = format!("sqlite://{}", dir.path().join("tally.db").display());
    let store = Store::open(&db_url).unwrap();
    store.seed(&Catalog::parse(CATALOG).unwrap()).unwrap();
    let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(1) });
    let router = Arc::new(ProviderRouter::new(None, None, sim));
    let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
    let actors = ActorSystem::start(store.clone(), cache, router, ActorSystemConfig::default()).unwrap();
    let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
    let settings = ImportSettings {
        anthropic_min_interval: Duration::ZERO,
        openai_min_interval: Duration::ZERO,
        max_retries: 1,
        ..ImportSettings::default()
    };
    let imports =
        ProviderImports::new(store.clone(), actors.billing.clone().recipient(), actors.prices.clone(), Some(key), settings)
            .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(tally_web::routes::providers::configure(imports.clone()))
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .disable_signals()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    App { base: format!("http://{addr}"), actors, store, handle, client: reqwest::Client::new() }
}

impl App {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.client.post(format!("{}{}", self.base, path)).json(&body).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(format!("{}{}", self.base, path)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Imported cost and input tokens (exact), from the store.
    fn imported(&self) -> (Decimal, Decimal, i64) {
        let f = AnalyticsFilter {
            from_day: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            to_day: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            user_id: Some("provider_import.org".into()),
            provider: None,
            model: None,
            key_id: None,
            task: None,
        };
        let g = self.store.analytics(&f, &[Dim::User]).unwrap();
        let fig = g.into_iter().next().map(|g| g.figures).unwrap_or_default();
        let input = fig.kinds.get("input_tokens").map(|k| k.quantity).unwrap_or_default();
        (fig.cost, input, fig.requests)
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// One hourly bucket for Haiku with `input` uncached input and `output` tokens.
fn bucket(start: &str, input: u64, output: u64) -> Value {
    let s = at(start);
    json!({"starting_at": start, "ending_at": (s + TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
           "results": [{"uncached_input_tokens": input, "cache_read_input_tokens": 0, "output_tokens": output,
                        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                        "server_tool_use": {"web_search_requests": 0},
                        "model": HAIKU, "api_key_id": "apikey_1", "workspace_id": null, "service_tier": "standard", "context_window": null}]})
}

fn usage(input: u64, output: u64) -> Usage {
    let mut u = Usage::new();
    u.add_tokens(UsageKind::InputTokens, input);
    u.add_tokens(UsageKind::OutputTokens, output);
    u
}

/// Tally's price of a bucket's usage at its time.
fn price(store: &Store, start: &str, input: u64, output: u64) -> Decimal {
    tally_domain::price_usage(&store.load_price_book().unwrap(), HAIKU, at(start), &usage(input, output)).unwrap().total
}

/// Meter the same usage through Tally (as the gateway would), at the bucket's time.
async fn meter(app: &App, start: &str, input: u64, output: u64) {
    let event = UsageEvent {
        event_id: Uuid::now_v7(),
        user_id: "alice".into(),
        thread_id: None,
        message_id: None,
        model: HAIKU.into(),
        occurred_at: at(start) + TimeDelta::minutes(5),
        usage: usage(input, output),
        source: "gateway".into(),
        idempotency_key: None,
        key_id: None,
        task: None,
        successful: true,
    };
    app.actors.billing.send(BillUsage { event, with: vec![], trace: Default::default() }).await.unwrap().unwrap();
}

#[actix_rt::test]
async fn imports_are_exact_idempotent_revisable_and_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(&dir).await;
    let fake = FakeProvider::start(ADMIN_KEY);
    // Three days of usage; the provider's daily cost equals Tally's price (in cents, as a string).
    let served = [
        ("2026-11-01T10:00:00Z", 1_000u64, 100u64),
        ("2026-11-01T11:00:00Z", 2_000, 300),
        ("2026-11-02T09:00:00Z", 5_000, 700),
        ("2026-11-03T15:00:00Z", 800, 90),
    ];
    let mut by_day: std::collections::BTreeMap<String, Decimal> = Default::default();
    for (s, i, o) in served {
        *by_day.entry(s[..10].to_string()).or_default() += price(&app.store, s, i, o);
    }
    fake.set(|d| {
        d.page_size = 1;
        d.anthropic_usage = served.iter().map(|(s, i, o)| bucket(s, *i, *o)).collect();
        d.anthropic_costs = by_day
            .iter()
            .map(|(day, cost)| {
                json!({"starting_at": format!("{day}T00:00:00Z"), "ending_at": format!("{day}T23:59:59Z"), "results": [
                    {"currency": "USD", "amount": (cost * Decimal::ONE_HUNDRED).normalize().to_string(), "workspace_id": null,
                     "description": "Claude 3.5 Haiku Usage - Input Tokens", "cost_type": "tokens", "model": HAIKU,
                     "service_tier": "standard", "context_window": null, "token_type": null}]})
            })
            .collect();
    });
    // Tally metered the same usage, except on 2026-11-02 where it metered 10% less output: the planted difference.
    for (s, i, o) in served {
        let o = if s.starts_with("2026-11-02") { o - o / 10 } else { o };
        meter(&app, s, i, o).await;
    }

    let (s, conn) = app
        .post(
            "/api/providers",
            json!({"provider": "anthropic", "name": "org", "admin_key": ADMIN_KEY, "base_url": fake.base_url}),
        )
        .await;
    assert_eq!(s, 201, "connection created: {conn}");
    assert!(!conn.to_string().contains("SECRET"), "the admin key is never returned: {conn}");
    let id = conn["connection_id"].as_str().unwrap().to_string();

    // A scheduled-style run over the first two days, then a backfill overlapping it.
    let (s, run) = app.post(&format!("/api/providers/{id}/import?from=2026-11-01&to=2026-11-03"), json!({})).await;
    assert_eq!(s, 200, "run: {run}");
    assert_eq!(run["events_new"], json!(3), "three buckets in the first two days: {run}");
    let (s, run) =
        app.post(&format!("/api/providers/{id}/import?from=2026-10-30&to=2026-11-05&trigger=backfill"), json!({})).await;
    assert_eq!(s, 200, "backfill: {run}");
    assert_eq!((run["events_new"].clone(), run["events_unchanged"].clone()), (json!(1), json!(3)), "the overlap counts once: {run}");
    let expected: Decimal = served.iter().map(|(s, i, o)| price(&app.store, s, *i, *o)).sum();
    let input: u64 = served.iter().map(|(_, i, _)| *i).sum();
    assert_eq!(app.imported(), (expected, Decimal::from(input), 4), "exactly the served usage, priced by the catalogue");

    // Re-import: nothing changes.
    let (_, run) = app.post(&format!("/api/providers/{id}/import?from=2026-10-30&to=2026-11-05"), json!({})).await;
    assert_eq!(run["events_new"], json!(0), "a re-import adds nothing: {run}");
    assert_eq!(app.imported(), (expected, Decimal::from(input), 4), "totals unchanged");

    // Reconciliation: only the planted day differs.
    let (s, rec) = app.get("/api/reconciliation?provider=anthropic&from=2026-11-01&to=2026-11-03").await;
    assert_eq!(s, 200, "reconciliation: {rec}");
    let rows = rec["rows"].as_array().unwrap();
    let flagged: Vec<&str> = rows.iter().filter(|r| r["flagged"] == json!(true)).map(|r| r["date"].as_str().unwrap()).collect();
    assert_eq!(flagged, vec!["2026-11-02"], "the planted difference and no other: {rec}");
    let nov1 = rows.iter().find(|r| r["date"] == "2026-11-01" && r["model"] == HAIKU).unwrap();
    assert_eq!(nov1["reported_cost"], json!(by_day["2026-11-01"].normalize().to_string()), "provider cost stored exactly");
    assert_eq!(nov1["tally_priced_cost"], json!(by_day["2026-11-01"].normalize().to_string()), "Tally's price of the reported usage");

    // A late revision of a bucket replaces its import exactly.
    fake.set(|d| d.anthropic_usage[3]["results"][0]["output_tokens"] = json!(120));
    let (_, run) = app.post(&format!("/api/providers/{id}/import?from=2026-11-03&to=2026-11-04"), json!({})).await;
    assert_eq!(run["events_revised"], json!(1), "the revised bucket is re-imported: {run}");
    let revised = expected - price(&app.store, served[3].0, 800, 90) + price(&app.store, served[3].0, 800, 120);
    assert_eq!(app.imported(), (revised, Decimal::from(input), 4), "the revision replaced the earlier import exactly");

    // A malformed answer fails the run and imports nothing.
    fake.set(|d| {
        d.anthropic_usage.push(bucket("2026-11-04T10:00:00Z", 9_999, 9));
        d.failures.push_back(Failure::body("{\"data\": [{\"starting_at\": 5}]"));
    });
    let (s, body) = app.post(&format!("/api/providers/{id}/import?from=2026-11-04&to=2026-11-05"), json!({})).await;
    assert_eq!(s, 502, "a malformed provider answer is a failed run: {body}");
    assert_eq!(app.imported(), (revised, Decimal::from(input), 4), "nothing partial was imported");
    let (_, runs) = app.get(&format!("/api/providers/{id}/runs")).await;
    assert_eq!(runs["runs"][0]["status"], json!("failed"), "the failed run is recorded: {runs}");
    assert!(fake.requests().iter().all(|r| r.authorized), "every request carried the admin key");

    // The admin key is unreadable at rest.
    let raw = std::fs::read(dir.path().join("tally.db")).unwrap();
    let wal = std::fs::read(dir.path().join("tally.db-wal")).unwrap_or_default();
    let needle = ADMIN_KEY.as_bytes();
    assert!(
        !raw.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle),
        "the admin key is not stored in clear"
    );
    app.handle.stop(false).await;
    app.actors.drain().await.unwrap();
}
