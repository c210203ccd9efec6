//! Prices and the scheduler over a real node (SQLite, HTTP on 127.0.0.1:0): verification and
//! staleness in the listing, LiteLLM sync (dry run, apply through the BillingActor, verify the
//! unchanged), the `tally prices sync` CLI against the node, and the scheduler routes running
//! the stale-price reminder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tally_actors::scheduler::{Job, Scheduler, SchedulerConfig};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::Store;
use tally_web::price_sync_cli::{sync_cli, PriceSource};
use tally_web::routes::prices::{stale_price_job, PriceAlerts, PriceSettings};
use tally_web::{AppState, HttpConfig};

const CATALOG: &str = include_str!("../../catalog/prices.json");
const FIXTURE: &str = include_str!("../../catalog/fixtures/litellm_prices_sample.json");
const FIXTURE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog/fixtures/litellm_prices_sample.json");
const NEVER_SOON: &str = "0 0 1 1 *";

/// Alerts the node sent: (kind, title, text, data).
#[derive(Default)]
struct Recorded(Mutex<Vec<(String, String, String, Value)>>);

impl PriceAlerts for Recorded {
    fn price_alert(&self, kind: &str, title: String, text: String, data: Value) {
        self.0.lock().unwrap().push((kind.to_string(), title, text, data));
    }
}

impl Recorded {
    fn kinds(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|a| a.0.clone()).collect()
    }
}

struct Node {
    base: String,
    actors: ActorSystem,
    store: Store,
    scheduler: Scheduler,
    alerts: Arc<Recorded>,
    handle: actix_web::dev::ServerHandle,
    client: reqwest::Client,
}

impl Node {
    async fn start(dir: &tempfile::TempDir) -> Node {
        let store = Store::open(&format!("sqlite://{}", dir.path().join("tally.db").display())).unwrap();
        let catalog = Catalog::parse(CATALOG).unwrap();
        store.seed(&catalog).unwrap();
        let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(1) });
        let router = Arc::new(ProviderRouter::new(None, None, sim));
        let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
        let actors = ActorSystem::start(store.clone(), cache, router, ActorSystemConfig::default()).unwrap();
        let state = AppState::new(actors.clone(), catalog.default_model.clone());
        let alerts = Arc::new(Recorded::default());
        let settings = PriceSettings { stale_days: 30, alerts: Some(alerts.clone() as Arc<dyn PriceAlerts>) };
        let scheduler = Scheduler::new(store.clone(), SchedulerConfig::new("node-a"));
        let (job_store, job_alerts) = (store.clone(), settings.alerts.clone());
        scheduler
            .register(Job::new("price-staleness", "Stale price reminder", NEVER_SOON, move || {
                stale_price_job(job_store.clone(), job_alerts.clone(), 30)
            }))
            .unwrap();
        scheduler.start().await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sched = scheduler.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(actix_web::web::Data::new(settings.clone()))
                // Before the web routes: they end in a catch-all.
                .configure(tally_web::routes::scheduler::configure(sched.clone()))
                .configure(tally_web::configure(state.clone(), HttpConfig::default()))
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Node {
            base: format!("http://{addr}"),
            actors,
            store,
            scheduler,
            alerts,
            handle,
            client: reqwest::Client::new(),
        }
    }

    async fn stop(self) {
        self.scheduler.stop().await;
        self.handle.stop(true).await;
        self.actors.drain().await.unwrap();
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        self.send(
            self.client.post(format!("{}{path}", self.base)).header("content-type", "application/json").body(body),
        )
        .await
    }
}

fn find<'a>(versions: &'a Value, model: &str, kind: &str) -> Vec<&'a Value> {
    versions.as_array().unwrap().iter().filter(|v| v["model"] == model && v["kind"] == kind).collect()
}

#[actix_rt::test]
async fn prices_list_verified_at_and_staleness_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let (s, prices) = node.get("/api/prices?model=gpt-4o").await;
    assert_eq!(s, 200, "listing: {prices}");
    let input = find(&prices, "gpt-4o", "input_tokens")[0].clone();
    assert_eq!(input["price"], "2.50", "money is a string");
    assert_eq!(input["verified_at"], Value::Null, "never verified");
    assert_eq!(input["stale"], true, "never verified and in force since 2024: stale");
    let id = input["id"].as_str().unwrap().to_string();

    let (s, v) = node.post_raw(&format!("/api/prices/{id}/verify"), "").await;
    assert_eq!(s, 200, "verified: {v}");
    assert_eq!(v["id"], id.as_str(), "the same version");
    assert!(v["verified_at"].is_string(), "verified_at set: {v}");
    assert_eq!(v["stale"], false, "just verified: not stale");
    let (_, prices) = node.get("/api/prices?model=gpt-4o&kind=input_tokens").await;
    assert_eq!(prices[0]["stale"], false, "the listing agrees");
    assert_eq!(prices[0]["verified_at"], v["verified_at"], "same verified_at");

    let (s, e) = node.post_raw("/api/prices/not-a-uuid/verify", "").await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_pricing_id")), "bad id");
    let (s, _) = node.post_raw(&format!("/api/prices/{}/verify", uuid::Uuid::now_v7()), "").await;
    assert_eq!(s, 404, "unknown version");
    node.stop().await;
}

#[actix_rt::test]
async fn sync_dry_run_then_apply_through_the_billing_actor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let (s, dry) = node.post_raw("/api/prices/sync?dry_run=true", FIXTURE).await;
    assert_eq!(s, 200, "dry run: {dry}");
    assert_eq!(
        dry,
        json!({"dry_run": true,
               "changes": [{"model": "gpt-image-1", "kind": "cache_read_tokens", "old": null, "new": "1.25", "pricing_id": null}],
               "unchanged": 46, "verified": 0, "unknown_models": 5}),
        "the fixture differs from the catalogue in one price"
    );
    let (_, none) = node.get("/api/prices?model=gpt-image-1&kind=cache_read_tokens").await;
    assert_eq!(none, json!([]), "a dry run changes nothing");
    assert!(node.alerts.kinds().is_empty(), "a dry run sends no alert");

    let (s, applied) = node.post_raw("/api/prices/sync", FIXTURE).await;
    assert_eq!(s, 200, "applied: {applied}");
    assert_eq!(applied["dry_run"], false, "not a dry run");
    assert_eq!(applied["verified"], 46, "every unchanged current price is verified");
    let pricing_id = applied["changes"][0]["pricing_id"].as_str().expect("new version id").to_string();
    let (_, created) = node.get("/api/prices?model=gpt-image-1&kind=cache_read_tokens").await;
    assert_eq!(created[0]["id"], pricing_id.as_str(), "the new version is listed");
    assert_eq!(created[0]["price"], "1.25", "at the list's price");
    assert_eq!(created[0]["stale"], false, "a version starting now is not stale");
    let (_, models) = node.get("/api/models").await;
    let image = models.as_array().unwrap().iter().find(|m| m["name"] == "gpt-image-1").unwrap();
    assert!(
        image["prices"].as_array().unwrap().iter().any(|p| p["id"] == pricing_id.as_str()),
        "the BillingActor's in-memory book has the new version: {image}"
    );
    let (_, haiku45) = node.get("/api/prices?model=claude-haiku-4-5-20251001").await;
    for p in haiku45.as_array().unwrap() {
        let listed = p["kind"] != "web_search_requests";
        assert_eq!(p["verified_at"].is_string(), listed, "{}: verified exactly when the list has it", p["kind"]);
    }
    let alerts = node.alerts.0.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1, "one alert for the applied changes");
    assert_eq!(alerts[0].0, "price_changes", "kind");
    assert!(
        alerts[0].2.contains("gpt-image-1 cache_read_tokens: none -> 1.25"),
        "text lists the change: {}",
        alerts[0].2
    );

    let (_, again) = node.post_raw("/api/prices/sync", FIXTURE).await;
    assert_eq!(again["changes"], json!([]), "a second sync finds nothing to change");
    assert_eq!(again["unchanged"], 47, "the new price is now confirmed too");
    node.stop().await;
}

#[actix_rt::test]
async fn sync_refuses_malformed_lists_and_takes_large_ones() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    for (body, why) in [
        ("[]", "not an object"),
        (r#"{"gpt-4o": {"input_cost_per_token": "2.5e-06"}}"#, "a price as a string"),
        (r#"{"gpt-4o": {"input_cost_per_token": -1e-06}}"#, "negative"),
        ("{", "truncated"),
    ] {
        let (s, e) = node.post_raw("/api/prices/sync?dry_run=true", body).await;
        assert_eq!((s, e["code"].as_str()), (400, Some("invalid_price_list")), "refused: {why}: {e}");
    }
    // Well over the 256 KiB JSON limit of the other routes, as LiteLLM's real file is.
    let mut big: serde_json::Map<String, Value> = serde_json::from_str(FIXTURE).unwrap();
    for i in 0..6_000 {
        big.insert(
            format!("someone/model-{i}"),
            json!({"input_cost_per_token": 1e-06, "mode": "chat", "litellm_provider": "x"}),
        );
    }
    let body = serde_json::to_string(&big).unwrap();
    assert!(body.len() > 512 * 1024, "the body is large: {}", body.len());
    let (s, r) = node.post_raw("/api/prices/sync?dry_run=true", body).await;
    assert_eq!(s, 200, "a large list is accepted: {r}");
    assert_eq!(r["unknown_models"], 6_005, "the added entries are unknown");
    node.stop().await;
}

#[actix_rt::test]
async fn the_cli_posts_a_file_or_a_url_to_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let text = sync_cli(PriceSource::File(FIXTURE_PATH.into()), &node.base, true).await.expect("dry run");
    assert!(text.starts_with("Dry run (nothing changed): 1 change(s), 46 unchanged"), "summary: {text}");
    assert!(text.contains("gpt-image-1 cache_read_tokens: (none) -> 1.25"), "the change: {text}");

    // A URL: a second server on port 0 serves the file.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = actix_web::HttpServer::new(|| {
        actix_web::App::new().route(
            "/prices.json",
            actix_web::web::get()
                .to(|| async { actix_web::HttpResponse::Ok().content_type("application/json").body(FIXTURE) }),
        )
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .disable_signals()
    .run();
    let files_handle = files.handle();
    actix_rt::spawn(files);
    let text = sync_cli(PriceSource::Url(format!("http://{addr}/prices.json")), &format!("{}/", node.base), false)
        .await
        .expect("apply");
    assert!(text.starts_with("Applied: 1 change(s), 46 unchanged, 46 verified"), "applied: {text}");
    let missing = sync_cli(PriceSource::Url(format!("http://{addr}/nothing.json")), &node.base, true).await;
    assert!(missing.is_err(), "a failed download is an error");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1]").unwrap();
    let err = sync_cli(PriceSource::File(bad), &node.base, true).await.expect_err("refused");
    assert!(err.to_string().contains("invalid_price_list"), "the node's code is shown: {err}");
    let err = sync_cli(PriceSource::File(dir.path().join("absent.json")), &node.base, true).await.expect_err("no file");
    assert!(err.to_string().contains("cannot read"), "a missing file is named: {err}");
    files_handle.stop(true).await;
    node.stop().await;
}

#[actix_rt::test]
async fn scheduler_routes_list_trigger_and_show_history() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir).await;
    let (s, jobs) = node.get("/api/scheduler/jobs").await;
    assert_eq!(s, 200, "jobs: {jobs}");
    assert_eq!(jobs["running"], true, "the scheduler is started");
    assert_eq!(jobs["jobs"][0]["id"], "price-staleness", "the job is listed");
    assert_eq!(jobs["jobs"][0]["schedule"], NEVER_SOON, "with its cron expression");
    assert!(jobs["jobs"][0]["next_run"].is_string(), "and its next run");
    assert_eq!(jobs["jobs"][0]["last_run"], Value::Null, "never ran");

    let (s, t) = node.post_raw("/api/scheduler/jobs/price-staleness/trigger", "").await;
    assert_eq!(s, 202, "triggered: {t}");
    let run_id = t["run_id"].as_str().unwrap().to_string();
    let mut run = Value::Null;
    for _ in 0..100 {
        let (_, h) = node.get("/api/scheduler/history?job_id=price-staleness&limit=5").await;
        run = h["runs"][0].clone();
        if run["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run["run_id"], run_id.as_str(), "the triggered run is in the history");
    assert_eq!(run["status"], "success", "it succeeded: {run}");
    assert_eq!(run["trigger"], "manual", "manual trigger");
    assert_eq!(run["node"], "node-a", "node recorded");
    assert!(run["message"].as_str().unwrap().contains("current prices not verified for 30 days"), "summary: {run}");
    assert_eq!(node.alerts.kinds(), vec!["stale_prices".to_string()], "the reminder went out");
    let (_, jobs) = node.get("/api/scheduler/jobs").await;
    assert_eq!(jobs["jobs"][0]["last_run"]["run_id"], run_id.as_str(), "last run shown");

    let (s, e) = node.post_raw("/api/scheduler/jobs/nope/trigger", "").await;
    assert_eq!(s, 404, "unknown job: {e}");
    let (s, e) = node.get("/api/scheduler/history?limit=0").await;
    assert_eq!((s, e["code"].as_str()), (400, Some("invalid_limit")), "bad limit");

    // Everything verified: the job finds nothing stale.
    let all = node.store.verified_prices(true).unwrap();
    for p in &all {
        node.store.verify_price(p.version.id, chrono::Utc::now()).unwrap();
    }
    let summary = stale_price_job(node.store.clone(), None, 30).await.unwrap();
    assert!(summary.starts_with("no stale prices"), "nothing stale after verifying: {summary}");
    node.stop().await;
}
