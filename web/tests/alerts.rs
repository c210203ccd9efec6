//! Budget alerts against real receivers: an SMTP server on loopback (tests/smtp/sink.py,
//! Debian's python3-aiosmtpd) and a local webhook receiver that checks signatures, with
//! priced usage in a real SQLite store and the budgets API on a real HTTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_actors::alerts::AlertEvaluator;
use tally_actors::kafka::retry::RetryPolicy;
use tally_actors::notify::{signature, Alert, Notifier, NotifyConfig, Secret, SmtpConfig};
use tally_actors::{UsageFeed, UsagePriced};
use tally_domain::{price_usage, Catalog, Cost, Usage, UsageKind};
use tally_store::alerts::{AlertBudget, AlertPeriod, AlertScope, DeliveryStatus};
use tally_store::forecasts::{StoredForecast, StoredPoint};
use tally_store::{Store, UsageRecord, WriteOp};
use uuid::Uuid;

const CATALOG: &str = include_str!("../../catalog/prices.json");
const HAIKU: &str = "claude-3-5-haiku-20241022";
const SECRET: &str = "a-webhook-secret-of-some-length";
const FROM: &str = "tally@example.com";

// --- the SMTP sink ---------------------------------------------------------------------

/// tests/smtp/sink.py, killed on drop.
struct SmtpSink {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mail.jsonl");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/sink.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/smtp/sink.py (needs python3-aiosmtpd: scripts/services.sh start)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("sink printed {line:?}, not a port"));
        SmtpSink {
            child,
            port,
            out,
            _dir: dir,
        }
    }

    /// Every message received so far.
    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Subjects of the messages received so far.
    fn subjects(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| {
                let data = m["data"].as_str().unwrap();
                data.lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            from: FROM.into(),
            username: None,
            password: None,
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the webhook receiver --------------------------------------------------------------

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    timestamp: String,
    signature: String,
    delivery: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// Whether the signature header is `t=<ts>,v1=<HMAC-SHA256(secret, "<ts>.<body>")>`.
    fn signed_with(&self, secret: &str) -> bool {
        let ts: i64 = self.timestamp.parse().unwrap();
        self.signature == signature(secret, ts, self.body.as_bytes())
            && self.signature.starts_with(&format!("t={ts},v1="))
    }
}

/// A local webhook receiver on port 0: records every POST and answers each path's scripted
/// statuses in order (then 204).
struct Hook {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Hook {
    fn start() -> Hook {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<HashMap<String, VecDeque<u16>>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (sink, plan) = (received.clone(), script.clone());
        let server = actix_web::HttpServer::new(move || {
            let (sink, plan) = (sink.clone(), plan.clone());
            actix_web::App::new().default_service(actix_web::web::to(
                move |req: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                    let (sink, plan) = (sink.clone(), plan.clone());
                    async move {
                        let h = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        sink.lock().unwrap().push(Received {
                            path: req.path().to_string(),
                            timestamp: h("x-tally-timestamp"),
                            signature: h("x-tally-signature"),
                            delivery: h("x-tally-delivery"),
                            body: String::from_utf8_lossy(&body).to_string(),
                        });
                        let status = plan
                            .lock()
                            .unwrap()
                            .get_mut(req.path())
                            .and_then(VecDeque::pop_front)
                            .unwrap_or(204);
                        actix_web::HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).unwrap(),
                        )
                        .finish()
                    }
                },
            ))
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Hook {
            base,
            received,
            script,
            handle,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answer the next requests to `path` with these statuses.
    fn answer(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.to_string(), statuses.iter().copied().collect());
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

// --- store, usage, evaluators ----------------------------------------------------------

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A seeded SQLite store in a temp dir (and its URL, to open it again as another node would).
fn store() -> (Store, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tally.db").display());
    let store = Store::open(&url).unwrap();
    store.seed(&Catalog::parse(CATALOG).unwrap()).unwrap();
    (store, url, dir)
}

fn usage() -> Usage {
    let mut u = Usage::new();
    u.add_tokens(UsageKind::InputTokens, 10_000);
    u.add_tokens(UsageKind::OutputTokens, 2_000);
    u
}

/// The exact cost of one [`usage`] at `when`.
fn unit_cost(store: &Store, when: DateTime<Utc>) -> Cost {
    price_usage(&store.load_price_book().unwrap(), HAIKU, when, &usage()).unwrap()
}

/// Write `n` priced usage events of alice at `when`; returns their total.
fn spend(store: &Store, n: usize, when: DateTime<Utc>) -> Decimal {
    let ops: Vec<WriteOp> = (0..n)
        .map(|_| {
            WriteOp::Usage(UsageRecord {
                event_id: Uuid::now_v7(),
                user_id: "alice".into(),
                thread_id: None,
                message_id: None,
                model: HAIKU.into(),
                event_type: String::new(),
                source: "ingest".into(),
                idempotency_key: None,
                occurred_at: when,
                cost: unit_cost(store, when),
                key_id: None,
                task: None,
                successful: true,
            })
        })
        .collect();
    store.write_batch(&ops).unwrap();
    unit_cost(store, when).total * Decimal::from(n)
}

/// Fast retries, so failure paths finish quickly.
fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retries: Some(4),
    }
}

fn notifier(store: &Store, smtp: &SmtpSink) -> Notifier {
    Notifier::new(
        store.clone(),
        NotifyConfig {
            smtp: Some(smtp.config()),
            webhook_secret: Some(Secret::new(SECRET)),
            retry: fast_retry(),
            ..NotifyConfig::default()
        },
    )
    .unwrap()
}

fn budget(
    name: &str,
    amount: Decimal,
    period: AlertPeriod,
    hook: Option<String>,
    created: DateTime<Utc>,
) -> AlertBudget {
    AlertBudget {
        budget_id: Uuid::now_v7(),
        name: name.into(),
        amount,
        period,
        scope: AlertScope::User("alice".into()),
        thresholds: vec![50, 80, 100],
        emails: vec!["ops@example.com".into()],
        webhook_url: hook,
        enabled: true,
        created_at: created,
        updated_at: created,
    }
}

// --- tests -----------------------------------------------------------------------------

#[actix_rt::test]
async fn each_threshold_alerts_once_by_email_and_webhook_across_evaluators() {
    let smtp = SmtpSink::start();
    let hook = Hook::start();
    let (store, url, _dir) = store();
    let now = at("2026-12-09T12:00:00Z");
    let unit = unit_cost(&store, now).total;
    // Ten events fill the budget exactly.
    let b = store
        .create_alert_budget(&budget(
            "Alice monthly",
            unit * Decimal::TEN,
            AlertPeriod::Monthly,
            Some(hook.url("/budget")),
            now,
        ))
        .unwrap();
    let evaluator = AlertEvaluator::new(store.clone(), notifier(&store, &smtp));
    // A second node: its own store handle and notifier on the same database.
    let other_store = Store::open(&url).unwrap();
    let other = AlertEvaluator::new(other_store.clone(), notifier(&other_store, &smtp));

    let r = evaluator.evaluate_at(now).await.unwrap();
    assert!(r.fired.is_empty(), "nothing spent, nothing fires: {r:?}");
    spend(&store, 6, now);
    let r = evaluator.evaluate_at(now).await.unwrap();
    assert_eq!(
        r.fired,
        vec![(b.budget_id, "threshold_50".to_string())],
        "60% passes 50 only"
    );
    assert!(
        r.deliveries
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivered),
        "log, email and webhook delivered: {:?}",
        r.deliveries
    );
    assert_eq!(
        r.deliveries.len(),
        3,
        "one log line, one email, one webhook"
    );
    spend(&store, 3, now);
    let r = other.evaluate_at(now).await.unwrap();
    assert_eq!(
        r.fired,
        vec![(b.budget_id, "threshold_80".to_string())],
        "90% passes 80, on the other node too"
    );
    spend(&store, 2, now);
    let r = evaluator.evaluate_at(now).await.unwrap();
    assert_eq!(
        r.fired,
        vec![(b.budget_id, "threshold_100".to_string())],
        "110% passes 100"
    );
    for e in [&evaluator, &other, &evaluator] {
        let r = e
            .evaluate_at(now + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(
            r.fired.is_empty(),
            "evaluating again sends nothing more: {r:?}"
        );
    }
    let r = evaluator
        .evaluate_at(at("2027-01-01T00:30:00Z"))
        .await
        .unwrap();
    assert!(
        r.fired.is_empty(),
        "a new month starts from zero spend: {r:?}"
    );

    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        3,
        "three emails, one per threshold: {:?}",
        smtp.subjects()
    );
    for m in &mails {
        assert_eq!(m["mail_from"], FROM, "sent from the configured sender");
        assert_eq!(
            m["rcpt_tos"],
            json!(["ops@example.com"]),
            "to the budget's recipient"
        );
    }
    let subjects = smtp.subjects();
    for pct in ["50%", "80%", "100%"] {
        assert_eq!(
            subjects.iter().filter(|s| s.contains(pct)).count(),
            1,
            "one email at {pct}: {subjects:?}"
        );
    }
    let posts = hook.at("/budget");
    assert_eq!(posts.len(), 3, "three webhooks, one per threshold");
    let kinds: Vec<String> = posts
        .iter()
        .map(|p| p.json()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec!["threshold_50", "threshold_80", "threshold_100"],
        "in firing order"
    );
    for p in &posts {
        assert!(
            p.signed_with(SECRET),
            "signed with the shared secret: {p:?}"
        );
        let body = p.json();
        assert_eq!(body["source"], "budget", "source");
        assert_eq!(body["budget_id"], b.budget_id.to_string(), "which budget");
        assert_eq!(
            body["event"],
            format!("budget.{}", body["kind"].as_str().unwrap()),
            "event name"
        );
        assert!(
            body["spent"].is_string() && body["amount"].is_string(),
            "money as strings: {body}"
        );
        assert!(
            Uuid::parse_str(&p.delivery).is_ok(),
            "the delivery id is sent"
        );
    }
    let logged = store
        .list_deliveries(Some(&b.budget_id.to_string()), 100)
        .unwrap();
    assert_eq!(
        logged.len(),
        9,
        "three alerts x (log, email, webhook) in the delivery log"
    );
    assert!(
        logged
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivered && d.attempts == 1),
        "all first-time deliveries"
    );
    let mut fired = store
        .fired(b.budget_id, at("2026-12-01T00:00:00Z"))
        .unwrap();
    fired.sort();
    assert_eq!(fired, vec!["100", "50", "80"], "the window's durable marks");
    hook.stop().await;
}

#[actix_rt::test]
async fn a_projected_breach_warns_once_before_the_amount_is_spent() {
    let smtp = SmtpSink::start();
    let hook = Hook::start();
    let (store, _url, _dir) = store();
    let now = at("2026-12-09T12:00:00Z"); // a Wednesday, half over
                                          // One event a day for the 14 days before today: the mean day costs one event.
    let mut history = Decimal::ZERO;
    for d in 1..=14 {
        history += spend(&store, 1, now - chrono::Duration::days(d));
    }
    let unit = unit_cost(&store, now).total;
    assert_eq!(history, unit * Decimal::from(14), "fourteen equal days");
    // This week: Monday and Tuesday spent 2 units; the rest of today (0.5) and Thu-Sun (4)
    // project 6.5 units, above a 6-unit budget, while 2/6 = 33% passes no threshold.
    let b = store
        .create_alert_budget(&budget(
            "Alice weekly",
            unit * Decimal::from(6),
            AlertPeriod::Weekly,
            Some(hook.url("/p")),
            now,
        ))
        .unwrap();
    let evaluator = AlertEvaluator::new(store.clone(), notifier(&store, &smtp));
    let check = evaluator.check_budget_at(b.clone(), now).await.unwrap();
    assert_eq!(
        check.spent,
        (unit * Decimal::TWO).normalize(),
        "Monday and Tuesday"
    );
    assert_eq!(
        check.projected_spend,
        (unit * Decimal::new(65, 1)).normalize(),
        "spent + 0.5 + 4 mean days"
    );
    assert_eq!(
        check.projected_breach_date.map(|d| d.to_string()),
        Some("2026-12-13".into()),
        "reached on Sunday"
    );
    let r = evaluator.evaluate_at(now).await.unwrap();
    assert_eq!(
        r.fired,
        vec![(b.budget_id, "projected_breach".to_string())],
        "only the projection fires"
    );
    let r = evaluator
        .evaluate_at(now + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert!(r.fired.is_empty(), "once per window");
    assert_eq!(
        smtp.subjects()
            .iter()
            .filter(|s| s.contains("projected"))
            .count(),
        1,
        "one warning email"
    );
    assert_eq!(
        hook.at("/p")[0].json()["kind"],
        "projected_breach",
        "and one webhook"
    );

    // A stored forecast of the scope wins over the recent mean: it expects nothing more.
    let points = (9..=31)
        .map(|d| StoredPoint {
            date: chrono::NaiveDate::from_ymd_opt(2026, 12, d).unwrap(),
            mean: Decimal::ZERO,
            lower_80: Decimal::ZERO,
            upper_80: Decimal::ZERO,
            lower_95: Decimal::ZERO,
            upper_95: Decimal::ZERO,
        })
        .collect::<Vec<_>>();
    store
        .save_forecast(&StoredForecast {
            forecast_id: Uuid::now_v7(),
            scope: "user:alice".into(),
            trained_at: now,
            data_from: chrono::NaiveDate::from_ymd_opt(2026, 11, 25).unwrap(),
            data_to: chrono::NaiveDate::from_ymd_opt(2026, 12, 8).unwrap(),
            history_days: 14,
            horizon: 23,
            method: "test".into(),
            points,
        })
        .unwrap();
    let check = evaluator.check_budget_at(b, now).await.unwrap();
    assert_eq!(
        check.projected_spend, check.spent,
        "the forecast expects no more spend"
    );
    assert_eq!(
        check.projected_breach_date, None,
        "so no breach is projected"
    );
    hook.stop().await;
}

#[actix_rt::test]
async fn a_failing_webhook_is_retried_and_an_unreachable_one_ends_failed() {
    let hook = Hook::start();
    let (store, _url, _dir) = store();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/gone", l.local_addr().unwrap())
    };
    let notifier = Notifier::new(
        store.clone(),
        NotifyConfig {
            webhook_secret: Some(Secret::new(SECRET)),
            retry: fast_retry(),
            ..NotifyConfig::default()
        },
    )
    .unwrap();
    let alert = |url: String| Alert {
        source: "test".into(),
        subject_id: Some("subject-1".into()),
        kind: "test".into(),
        title: "Test".into(),
        text: "A test alert.".into(),
        data: json!({"n": 1}),
        emails: vec![],
        webhook_url: Some(url),
    };
    hook.answer("/flaky", &[500, 503]);
    let d = notifier.send(alert(hook.url("/flaky"))).await;
    let webhook = d.iter().find(|d| d.channel == "webhook").unwrap();
    assert_eq!(
        (webhook.status, webhook.attempts),
        (DeliveryStatus::Delivered, 3),
        "two 5xx retried, then delivered"
    );
    let posts = hook.at("/flaky");
    assert_eq!(posts.len(), 3, "the receiver saw every attempt");
    assert!(
        posts.windows(2).all(|w| w[0].delivery == w[1].delivery),
        "retries carry the same delivery id"
    );
    assert!(
        posts.iter().all(|p| p.signed_with(SECRET)),
        "every attempt is signed"
    );

    hook.answer("/refused", &[400]);
    let d = notifier.send(alert(hook.url("/refused"))).await;
    let webhook = d.iter().find(|d| d.channel == "webhook").unwrap();
    assert_eq!(
        (webhook.status, webhook.attempts),
        (DeliveryStatus::Failed, 1),
        "a 4xx is not retried"
    );
    assert_eq!(
        webhook.last_error.as_deref(),
        Some("webhook answered HTTP 400"),
        "and says why"
    );

    hook.answer("/limited", &[429]);
    let d = notifier.send(alert(hook.url("/limited"))).await;
    let webhook = d.iter().find(|d| d.channel == "webhook").unwrap();
    assert_eq!(
        (webhook.status, webhook.attempts),
        (DeliveryStatus::Delivered, 2),
        "429 is retried"
    );

    let d = notifier.send(alert(dead.clone())).await;
    let webhook = d.iter().find(|d| d.channel == "webhook").unwrap();
    assert_eq!(
        (webhook.status, webhook.attempts),
        (DeliveryStatus::Failed, 5),
        "unreachable: 1 + 4 retries, then failed"
    );
    assert!(
        webhook
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("unreachable"),
        "the error: {:?}",
        webhook.last_error
    );
    let email = notifier
        .send(Alert {
            emails: vec!["ops@example.com".into()],
            webhook_url: None,
            ..alert(dead)
        })
        .await;
    let email = email.iter().find(|d| d.channel == "email").unwrap();
    assert_eq!(
        email.status,
        DeliveryStatus::Failed,
        "no SMTP relay configured: the email is logged failed"
    );

    let log = store.list_deliveries(Some("subject-1"), 100).unwrap();
    let count = |channel: &str, status: DeliveryStatus| {
        log.iter()
            .filter(|d| d.channel == channel && d.status == status)
            .count()
    };
    assert_eq!(
        count("log", DeliveryStatus::Delivered),
        5,
        "every alert has its log line"
    );
    assert_eq!(
        count("webhook", DeliveryStatus::Delivered),
        2,
        "flaky and rate-limited webhooks delivered"
    );
    assert_eq!(
        count("webhook", DeliveryStatus::Failed),
        2,
        "refused and unreachable webhooks failed"
    );
    assert!(
        log.iter().all(|d| d.status != DeliveryStatus::Pending),
        "nothing is left pending"
    );
    hook.stop().await;
}

#[actix_rt::test]
async fn priced_usage_triggers_an_evaluation_within_seconds() {
    let smtp = SmtpSink::start();
    let (store, _url, _dir) = store();
    let now = Utc::now();
    let unit = unit_cost(&store, now).total;
    store
        .create_alert_budget(&budget(
            "Alice daily",
            unit * Decimal::TEN,
            AlertPeriod::Daily,
            None,
            now,
        ))
        .unwrap();
    let feed = UsageFeed::default();
    let evaluator = AlertEvaluator::new(store.clone(), notifier(&store, &smtp));
    let task = evaluator.start(&feed);
    spend(&store, 11, now);
    feed.publish(UsagePriced {
        event_id: Uuid::now_v7(),
        user_id: "alice".into(),
        thread_id: None,
        message_id: None,
        model: HAIKU.into(),
        occurred_at: now,
        committed_at: now,
        cost: unit_cost(&store, now),
        key_id: None,
        origin: None,
        trace: Default::default(),
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while smtp.messages().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        smtp.messages().len(),
        3,
        "50, 80 and 100% emails within seconds of the usage being priced"
    );
    task.abort();
}

// --- the HTTP API ----------------------------------------------------------------------

async fn serve(evaluator: AlertEvaluator) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes = tally_web::routes::budgets::configure(evaluator);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(tally_web::json_config(tally_web::MAX_BODY_BYTES))
            .configure(routes.clone())
    })
    .listen(listener)
    .unwrap()
    .workers(1)
    .disable_signals()
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (base, handle)
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn the_budgets_api_validates_checks_tests_and_logs() {
    use reqwest::Method;
    let smtp = SmtpSink::start();
    let hook = Hook::start();
    let (store, _url, _dir) = store();
    let evaluator = AlertEvaluator::new(store.clone(), notifier(&store, &smtp));
    let (base, server) = serve(evaluator.clone()).await;
    let c = reqwest::Client::new();
    let u = |p: &str| format!("{base}{p}");

    let good = json!({"name": "Team monthly", "amount": "100.00", "period": "monthly",
        "scope": {"kind": "user", "value": "alice"}, "thresholds": [50, 80, 100],
        "emails": ["team@example.com"], "webhook_url": hook.url("/api-hook"), "enabled": true});
    let mut bad = good.clone();
    bad["amount"] = json!("-5");
    let (s, e) = call(&c, Method::POST, u("/api/budgets"), Some(bad)).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_amount")),
        "a negative amount is refused: {e}"
    );
    let mut bad = good.clone();
    bad["thresholds"] = json!([80, 80]);
    let (s, e) = call(&c, Method::POST, u("/api/budgets"), Some(bad)).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_thresholds")),
        "duplicate thresholds: {e}"
    );

    let (s, b) = call(&c, Method::POST, u("/api/budgets"), Some(good)).await;
    assert_eq!(s, 201, "created: {b}");
    assert_eq!(b["amount"], "100.00", "the amount as given, a string");
    assert_eq!(
        b["scope"],
        json!({"kind": "user", "value": "alice"}),
        "the scope"
    );
    let id = b["budget_id"].as_str().unwrap().to_string();
    let (s, list) = call(&c, Method::GET, u("/api/budgets"), None).await;
    assert_eq!(
        (s, list["budgets"].as_array().map(Vec::len)),
        (200, Some(1)),
        "listed: {list}"
    );
    let (s, one) = call(&c, Method::GET, u(&format!("/api/budgets/{id}")), None).await;
    assert_eq!((s, &one), (200, &b), "read back as created");
    let (s, e) = call(&c, Method::GET, u("/api/budgets/nope"), None).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_budget_id")),
        "a bad id: {e}"
    );
    let (s, e) = call(
        &c,
        Method::GET,
        u(&format!("/api/budgets/{}", Uuid::now_v7())),
        None,
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (404, Some("budget_not_found")),
        "an unknown id: {e}"
    );

    // 0.9 of 100 USD in events today: 0.9%, nothing fired, ok.
    let now = Utc::now();
    let unit = unit_cost(&store, now).total;
    let n = (Decimal::new(9, 1) / unit)
        .floor()
        .to_string()
        .parse::<usize>()
        .unwrap()
        .max(1);
    let spent = spend(&store, n, now);
    let (s, check) = call(&c, Method::GET, u("/api/budgets/check"), None).await;
    assert_eq!(s, 200, "checked: {check}");
    let row = &check["budgets"][0];
    assert_eq!(
        row["spent"],
        spent.normalize().to_string(),
        "the window's exact spend: {row}"
    );
    assert_eq!(row["status"], "ok", "well below the thresholds");
    assert_eq!(row["thresholds_fired"], json!([]), "nothing fired");
    assert!(
        row["window_start"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00.000000Z"),
        "a UTC midnight"
    );

    let (s, patched) = call(
        &c,
        Method::PATCH,
        u(&format!("/api/budgets/{id}")),
        Some(json!({"amount": "1", "thresholds": [10]})),
    )
    .await;
    assert_eq!(
        (s, patched["amount"].as_str()),
        (200, Some("1")),
        "patched: {patched}"
    );
    assert_eq!(patched["name"], "Team monthly", "other fields kept");
    let (s, e) = call(
        &c,
        Method::PATCH,
        u(&format!("/api/budgets/{id}")),
        Some(json!({"scope": {"kind": "all", "value": "x"}})),
    )
    .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_scope")),
        "an inconsistent scope: {e}"
    );
    let (_, check) = call(&c, Method::GET, u("/api/budgets/check"), None).await;
    assert_eq!(
        check["budgets"][0]["status"], "warning",
        "0.9 of 1 USD passes 10%: {check}"
    );

    let (s, t) = call(
        &c,
        Method::POST,
        u(&format!("/api/budgets/{id}/test_alert")),
        None,
    )
    .await;
    assert_eq!(s, 200, "test alert sent: {t}");
    let channels: Vec<(&str, &str)> = t["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["channel"].as_str().unwrap(),
                d["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        channels,
        vec![
            ("log", "delivered"),
            ("email", "delivered"),
            ("webhook", "delivered")
        ],
        "every channel delivered"
    );
    assert_eq!(smtp.messages().len(), 1, "the test email arrived");
    assert_eq!(
        smtp.messages()[0]["rcpt_tos"],
        json!(["team@example.com"]),
        "to the budget's recipient"
    );
    let posts = hook.at("/api-hook");
    assert_eq!(posts.len(), 1, "the test webhook arrived");
    assert!(posts[0].signed_with(SECRET), "signed");
    assert_eq!(posts[0].json()["source"], "test", "marked as a test");

    let (s, log) = call(
        &c,
        Method::GET,
        u(&format!("/api/alerts/deliveries?budget_id={id}&limit=10")),
        None,
    )
    .await;
    assert_eq!(s, 200, "the delivery log: {log}");
    let rows = log["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "three deliveries of the test alert");
    for d in rows {
        assert_eq!(
            (d["source"].as_str(), d["status"].as_str()),
            (Some("test"), Some("delivered")),
            "row: {d}"
        );
        assert_eq!(d["subject_id"], id.as_str(), "about the budget");
        assert!(d.get("payload").is_none(), "the payload stays internal");
    }
    let (s, e) = call(&c, Method::GET, u("/api/alerts/deliveries?limit=0"), None).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (400, Some("invalid_limit")),
        "a bad limit: {e}"
    );

    let (s, _) = call(&c, Method::DELETE, u(&format!("/api/budgets/{id}")), None).await;
    assert_eq!(s, 204, "deleted");
    let (s, _) = call(&c, Method::DELETE, u(&format!("/api/budgets/{id}")), None).await;
    assert_eq!(s, 404, "deleting twice is 404");
    server.stop(false).await;
    hook.stop().await;
}
