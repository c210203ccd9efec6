//! Access control of the real `tally` binary in `token` mode: every route is called without a
//! credential, with another user's key, with the owner's key and with the admin token, and
//! the answers must match the table below. A route registered in the sources without a row
//! here, or without a rule in `tally_web::auth::ROUTES`, fails the suite. Also: `open` mode
//! refuses a non-loopback bind, failed authentications are rate-limited, secrets never reach
//! the logs, and a user's dashboard shows only their own spend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tally_web::auth::{rule_for, ROUTES};

const ADMIN: &str = "test-admin-token-0123456789abcdef";

struct Node {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, bind: &str, extra: &[&str]) -> Result<Node, String> {
    let log = dir.join(format!("node-{}.log", std::process::id() ^ rand_suffix()));
    let log_file = std::fs::File::create(&log).unwrap();
    let db = format!("sqlite://{}", dir.join("tally.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--bind", bind, "--database-url", &db])
        .args(extra)
        .env("TALLY_SIM_TOKEN_DELAY_MS", "1")
        .env("TALLY_ADMIN_TOKEN", ADMIN)
        .env("RUST_LOG", "debug")
        .env_remove("TALLY_AUTH")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stdout);
    reader.read_line(&mut line).unwrap();
    match line.trim().strip_prefix("tally listening on ") {
        Some(base) => {
            let base = base.replace("0.0.0.0", "127.0.0.1");
            // Keep draining stdout into the log so the pipe never fills.
            let log2 = log.clone();
            std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = stdout.read_to_string(&mut rest);
                let _ = std::fs::OpenOptions::new().append(true).open(log2).map(|mut f| std::io::Write::write_all(&mut f, rest.as_bytes()));
            });
            Ok(Node { child, base, log })
        }
        None => {
            let status = child.wait().unwrap();
            Err(format!("{status}: {}", std::fs::read_to_string(&log).unwrap_or_default()))
        }
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

async fn call(c: &reqwest::Client, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = c.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let is_sse = resp.headers().get("content-type").is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if is_sse {
        return (status, Value::Null);
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Routes as registered in the sources: `#[get("..")]`-style attributes, `.route("..", web::post()..)`,
/// `web::resource("..")` followed by its methods, and the ingest path.
fn routes_in_sources() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    for d in ["web/src", "collector/src"] {
        walk(&root.join(d), &mut files);
    }
    let methods = ["get", "post", "put", "patch", "delete"];
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for m in methods {
            let attr = format!("#[{m}(\"");
            for piece in text.split(&attr).skip(1) {
                let path = piece.split('"').next().unwrap();
                out.insert((m.to_uppercase(), path.to_string()));
            }
        }
        for piece in text.split(".route(\"").skip(1) {
            let path = piece.split('"').next().unwrap();
            let after = &piece[path.len()..piece.len().min(path.len() + 80)];
            for m in methods {
                if after.contains(&format!("web::{m}()")) {
                    out.insert((m.to_uppercase(), path.to_string()));
                }
            }
        }
        for piece in text.split("web::resource(\"").skip(1) {
            let path = piece.split('"').next().unwrap();
            let window = &piece[..piece.len().min(400)];
            let window = window.split("web::resource(").next().unwrap_or(window);
            for m in methods {
                if window.contains(&format!("web::{m}()")) {
                    out.insert((m.to_uppercase(), path.to_string()));
                }
            }
        }
        if text.contains("pub const EVENTS_PATH: &str = \"/v1/events\"") {
            out.insert(("POST".into(), "/v1/events".into()));
        }
    }
    out
}

/// Who calls.
#[derive(Clone, Copy, Debug)]
enum Who {
    Nobody,
    OtherUser,
    Owner,
    Admin,
}

/// What one caller must get: an exact status, or "allowed" (neither 401 nor 403: the route
/// ran; its own validation may still answer 4xx).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    Is(u16),
    Allowed,
}
use Want::{Allowed, Is};

struct Row {
    method: &'static str,
    pattern: &'static str,
    path: String,
    body: Option<Value>,
    /// Nobody, another user's key, the owner's key, the admin token.
    want: [Want; 4],
}

const ADMIN_ONLY: [Want; 4] = [Is(401), Is(403), Is(403), Allowed];
const OWNED: [Want; 4] = [Is(401), Is(403), Is(200), Is(200)];
const OWNED_BY_ID: [Want; 4] = [Is(401), Is(404), Is(200), Is(200)];
const SIGNED_IN: [Want; 4] = [Is(401), Is(200), Is(200), Is(200)];
const PUBLIC: [Want; 4] = [Is(200), Is(200), Is(200), Is(200)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_refuses_every_unauthorised_call_in_the_route_table() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "127.0.0.1:0", &["--auth", "token"]).unwrap();
    let c = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let u = |p: &str| format!("{}{p}", node.base);

    // The admin sets up two users with keys, threads, a turn and an invoice each.
    let mut keys = std::collections::HashMap::new();
    let mut threads = std::collections::HashMap::new();
    for user in ["alice", "bob"] {
        let (s, _) = call(&c, "POST", &u("/api/users/"), Some(ADMIN), Some(&json!({"user_id": user}))).await;
        assert_eq!(s, 201, "admin creates {user}");
        let (s, k) = call(&c, "POST", &u("/api/keys"), Some(ADMIN), Some(&json!({"user_id": user, "name": "main"}))).await;
        assert_eq!(s, 201, "admin makes {user}'s key: {k}");
        keys.insert(user, (k["key"].as_str().unwrap().to_string(), k["key_id"].as_str().unwrap().to_string()));
        let key = keys[user].0.clone();
        let (s, t) = call(&c, "POST", &u("/api/threads/"), Some(&key), Some(&json!({"title": "mine"}))).await;
        assert_eq!((s, t["user_id"].as_str()), (201, Some(user)), "{user} makes a thread with their own key: {t}");
        let thread = t["thread_id"].as_str().unwrap().to_string();
        let (s, turn) = call(&c, "POST", &u("/api/messages/"), Some(&key), Some(&json!({"thread_id": thread, "content": "hi"}))).await;
        assert_eq!(s, 200, "{user} chats: {turn}");
        threads.insert(user, thread);
    }
    let (alice_key, alice_key_id) = keys["alice"].clone();
    let (bob_key, _) = keys["bob"].clone();
    let (s, spare) = call(&c, "POST", &u("/api/keys"), Some(ADMIN), Some(&json!({"user_id": "alice", "name": "spare"}))).await;
    assert_eq!(s, 201, "a spare key of alice's");
    let spare_id = spare["key_id"].as_str().unwrap().to_string();
    let (s, inv) = call(&c, "POST", &u("/api/billing/generate-invoice/user/alice"), Some(&alice_key), None).await;
    assert!(s == 200 || s == 201, "alice invoices herself: {s} {inv}");
    let invoice = inv["id"].as_str().unwrap_or_else(|| panic!("invoice id in {inv}")).to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, ev) = call(&c, "GET", &u("/api/usage/events"), Some(&alice_key), None).await;
    let events = ev["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["user_id"] == "alice"), "alice's usage log is hers only: {ev}");
    let event = events[0]["event_id"].as_str().unwrap().to_string();
    let alice_thread = threads["alice"].clone();

    let row = |method: &'static str, pattern: &'static str, path: String, body: Option<Value>, want: [Want; 4]| Row {
        method,
        pattern,
        path,
        body,
        want,
    };
    let t = &alice_thread;
    let k = &alice_key_id;
    let period = Some(json!({"period": "monthly", "max_budget": "5"}));
    let rows = vec![
        row("GET", "/healthz", "/healthz".into(), None, PUBLIC),
        row("GET", "/readyz", "/readyz".into(), None, PUBLIC),
        row("GET", "/metrics", "/metrics".into(), None, PUBLIC),
        row("GET", "/api/auth/whoami", "/api/auth/whoami".into(), None, PUBLIC),
        row("GET", "/{tail:.*}", "/".into(), None, PUBLIC),
        row("GET", "/openapi.json", "/openapi.json".into(), None, PUBLIC),
        row("GET", "/docs", "/docs".into(), None, PUBLIC),
        // The gateway: its own keys (any live key may list models).
        row("GET", "/v1/models", "/v1/models".into(), None, [Is(401), Is(200), Is(200), Is(401)]),
        row("POST", "/v1/chat/completions", "/v1/chat/completions".into(), Some(json!({})), [Is(401), Is(400), Is(400), Is(401)]),
        row("POST", "/v1/messages", "/v1/messages".into(), Some(json!({})), [Is(401), Is(400), Is(400), Is(401)]),
        row("POST", "/v1/events", "/v1/events".into(), Some(json!({"events": []})), ADMIN_ONLY),
        // Users.
        row("GET", "/api/users/", "/api/users/".into(), None, SIGNED_IN),
        row("POST", "/api/users/", "/api/users/".into(), Some(json!({"user_id": "carol"})), ADMIN_ONLY),
        row("GET", "/api/users/{user_id}", "/api/users/alice".into(), None, OWNED),
        // Threads and messages.
        row("GET", "/api/threads/", "/api/threads/?user_id=alice".into(), None, OWNED),
        row("POST", "/api/threads/", "/api/threads/".into(), Some(json!({"user_id": "alice"})), [Is(401), Is(403), Is(201), Is(201)]),
        row("GET", "/api/threads/{thread_id}", format!("/api/threads/{t}"), None, OWNED_BY_ID),
        row("POST", "/api/messages/", "/api/messages/".into(), Some(json!({"thread_id": t, "user_id": "alice", "content": "again"})), OWNED),
        row("POST", "/api/messages/stream", "/api/messages/stream".into(), Some(json!({"thread_id": t, "user_id": "alice", "content": "s"})), [Is(401), Is(403), Is(200), Allowed]),
        // (The owner's streamed turn may still be running: the admin's may answer 409 turn_in_progress.)
        row("GET", "/api/messages/{thread_id}/history", format!("/api/messages/{t}/history"), None, OWNED_BY_ID),
        // Billing.
        row("GET", "/api/billing/metrics/user/{user_id}", "/api/billing/metrics/user/alice".into(), None, OWNED),
        row("GET", "/api/billing/metrics/thread/{thread_id}", format!("/api/billing/metrics/thread/{t}"), None, OWNED_BY_ID),
        row("POST", "/api/billing/generate-invoice/thread/{thread_id}", format!("/api/billing/generate-invoice/thread/{t}"), None, [Is(401), Is(404), Allowed, Allowed]),
        row("POST", "/api/billing/generate-invoice/user/{user_id}", "/api/billing/generate-invoice/user/alice".into(), None, [Is(401), Is(403), Allowed, Allowed]),
        row("GET", "/api/billing/invoices/user/{user_id}", "/api/billing/invoices/user/alice".into(), None, OWNED),
        row("GET", "/api/billing/invoices/{invoice_id}", format!("/api/billing/invoices/{invoice}"), None, OWNED_BY_ID),
        row("POST", "/api/billing/invoices/{invoice_id}/status", format!("/api/billing/invoices/{invoice}/status"), Some(json!({"status": "paid"})), ADMIN_ONLY),
        // Usage and analytics.
        row("GET", "/api/usage/events", "/api/usage/events?user_id=alice".into(), None, OWNED),
        row("GET", "/api/usage/events/{event_id}", format!("/api/usage/events/{event}"), None, OWNED_BY_ID),
        row("GET", "/api/analytics/summary", "/api/analytics/summary?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/by-user", "/api/analytics/by-user?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/by-model", "/api/analytics/by-model?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/by-provider", "/api/analytics/by-provider?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/by-key", "/api/analytics/by-key?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/top-tasks", "/api/analytics/top-tasks?user_id=alice".into(), None, OWNED),
        row("GET", "/api/analytics/trends", "/api/analytics/trends?user_id=alice".into(), None, OWNED),
        row("GET", "/api/dashboard/snapshot", "/api/dashboard/snapshot".into(), None, SIGNED_IN),
        row("GET", "/api/dashboard/stream", "/api/dashboard/stream".into(), None, SIGNED_IN),
        // Prices.
        row("GET", "/api/models", "/api/models".into(), None, SIGNED_IN),
        row("GET", "/api/prices", "/api/prices".into(), None, SIGNED_IN),
        row("POST", "/api/prices", "/api/prices".into(), Some(json!({})), ADMIN_ONLY),
        row("POST", "/api/prices/{id}/verify", format!("/api/prices/{}/verify", uuid_zero()), None, ADMIN_ONLY),
        row("POST", "/api/prices/sync", "/api/prices/sync?dry_run=true".into(), Some(json!({})), ADMIN_ONLY),
        // Keys.
        row("GET", "/api/keys", "/api/keys?user_id=alice".into(), None, OWNED),
        row("POST", "/api/keys", "/api/keys".into(), Some(json!({"user_id": "alice", "name": "x"})), ADMIN_ONLY),
        row("GET", "/api/keys/{key_id}", format!("/api/keys/{k}"), None, OWNED_BY_ID),
        row("PATCH", "/api/keys/{key_id}", format!("/api/keys/{k}"), Some(json!({"name": "renamed"})), ADMIN_ONLY),
        row("GET", "/api/keys/{key_id}/usage", format!("/api/keys/{k}/usage"), None, OWNED_BY_ID),
        row("GET", "/api/billing/spend/{key_id}", format!("/api/billing/spend/{k}"), None, OWNED_BY_ID),
        row("GET", "/api/billing/budget/{key_id}", format!("/api/billing/budget/{k}"), None, OWNED_BY_ID),
        row("PUT", "/api/billing/budget/{key_id}", format!("/api/billing/budget/{k}"), period.clone(), ADMIN_ONLY),
        row("DELETE", "/api/billing/budget/{key_id}", format!("/api/billing/budget/{k}?period=monthly"), None, ADMIN_ONLY),
        row("GET", "/api/billing/budget/user/{user_id}", "/api/billing/budget/user/alice".into(), None, OWNED),
        row("PUT", "/api/billing/budget/user/{user_id}", "/api/billing/budget/user/alice".into(), period, ADMIN_ONLY),
        row("DELETE", "/api/billing/budget/user/{user_id}", "/api/billing/budget/user/alice?period=monthly".into(), None, ADMIN_ONLY),
        // Management.
        row("GET", "/api/budgets", "/api/budgets".into(), None, ADMIN_ONLY),
        row("POST", "/api/budgets", "/api/budgets".into(), Some(json!({})), ADMIN_ONLY),
        row("GET", "/api/budgets/check", "/api/budgets/check".into(), None, ADMIN_ONLY),
        row("GET", "/api/budgets/{id}", format!("/api/budgets/{}", uuid_zero()), None, ADMIN_ONLY),
        row("PATCH", "/api/budgets/{id}", format!("/api/budgets/{}", uuid_zero()), Some(json!({})), ADMIN_ONLY),
        row("DELETE", "/api/budgets/{id}", format!("/api/budgets/{}", uuid_zero()), None, ADMIN_ONLY),
        row("POST", "/api/budgets/{id}/test_alert", format!("/api/budgets/{}/test_alert", uuid_zero()), None, ADMIN_ONLY),
        row("GET", "/api/alerts/deliveries", "/api/alerts/deliveries".into(), None, ADMIN_ONLY),
        row("GET", "/api/forecasts", "/api/forecasts".into(), None, ADMIN_ONLY),
        row("POST", "/api/forecasts/train", "/api/forecasts/train".into(), None, ADMIN_ONLY),
        row("GET", "/api/providers", "/api/providers".into(), None, ADMIN_ONLY),
        row("POST", "/api/providers", "/api/providers".into(), Some(json!({})), ADMIN_ONLY),
        row("DELETE", "/api/providers/{id}", format!("/api/providers/{}", uuid_zero()), None, ADMIN_ONLY),
        row("POST", "/api/providers/{id}/import", format!("/api/providers/{}/import", uuid_zero()), None, ADMIN_ONLY),
        row("GET", "/api/providers/{id}/runs", format!("/api/providers/{}/runs", uuid_zero()), None, ADMIN_ONLY),
        row("GET", "/api/reconciliation", "/api/reconciliation".into(), None, ADMIN_ONLY),
        row("GET", "/api/scheduler/jobs", "/api/scheduler/jobs".into(), None, ADMIN_ONLY),
        row("POST", "/api/scheduler/jobs/{id}/trigger", "/api/scheduler/jobs/no-such-job/trigger".into(), None, ADMIN_ONLY),
        row("GET", "/api/scheduler/history", "/api/scheduler/history".into(), None, ADMIN_ONLY),
        row("GET", "/api/archives", "/api/archives".into(), None, ADMIN_ONLY),
        // Last: these change alice's spare key.
        row("POST", "/api/keys/{key_id}/rotate", format!("/api/keys/{spare_id}/rotate"), None, OWNED_BY_ID),
        row("POST", "/api/keys/{key_id}/revoke", format!("/api/keys/{spare_id}/revoke"), None, OWNED_BY_ID),
    ];

    // Every registered route has a row here and a rule in ROUTES; every rule has a row.
    let registered = routes_in_sources();
    assert!(registered.len() >= 70, "the source scan finds the routes: {registered:?}");
    let in_table: BTreeSet<(String, String)> = rows.iter().map(|r| (r.method.to_string(), r.pattern.to_string())).collect();
    for (m, p) in &registered {
        assert!(rule_for(m, p).is_some(), "{m} {p} is registered but has no access rule in tally_web::auth::ROUTES");
        assert!(in_table.contains(&(m.clone(), p.clone())), "{m} {p} is registered but not in this test's table");
    }
    for (m, p, _) in ROUTES {
        let optional = matches!(*p, "/docs/{_:.*}");
        assert!(optional || in_table.contains(&(m.to_string(), p.to_string())), "the rule for {m} {p} is tested");
    }

    let mut failures = Vec::new();
    for r in &rows {
        for (i, who) in [Who::Nobody, Who::OtherUser, Who::Owner, Who::Admin].into_iter().enumerate() {
            let token = match who {
                Who::Nobody => None,
                Who::OtherUser => Some(bob_key.as_str()),
                Who::Owner => Some(alice_key.as_str()),
                Who::Admin => Some(ADMIN),
            };
            let (status, body) = call(&c, r.method, &u(&r.path), token, r.body.as_ref()).await;
            let ok = match r.want[i] {
                Is(s) => status == s,
                Allowed => status != 401 && status != 403 && status < 500,
            };
            if !ok {
                failures.push(format!("{} {} as {who:?}: got {status}, want {:?}: {body}", r.method, r.path, r.want[i]));
            }
            if status == 401 || status == 403 {
                let code = body["code"].as_str().or(body["error"]["code"].as_str()).or(body["error"]["type"].as_str());
                if code.is_none() {
                    failures.push(format!("{} {} as {who:?}: a refusal without a stable code: {body}", r.method, r.path));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} unexpected answers:\n{}", failures.len(), failures.join("\n"));

    // Nothing leaks through lists: bob's views hold no alice.
    for path in ["/api/threads/", "/api/users/", "/api/usage/events", "/api/keys", "/api/analytics/by-user", "/api/dashboard/snapshot"] {
        let (s, body) = call(&c, "GET", &u(path), Some(&bob_key), None).await;
        assert_eq!(s, 200, "bob reads {path}");
        let text = body.to_string();
        assert!(!text.contains("alice") && !text.contains(&alice_thread), "bob's {path} shows nothing of alice's: {text}");
    }
    // Bob's dashboard stream: its first snapshot is bob's alone.
    let mut resp = c.get(u("/api/dashboard/stream")).bearer_auth(&bob_key).send().await.unwrap();
    let mut first = String::new();
    while !first.contains("\n\n") {
        match tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await {
            Ok(Ok(Some(bytes))) => first.push_str(&String::from_utf8_lossy(&bytes)),
            _ => break,
        }
    }
    assert!(first.contains("event: snapshot") && first.contains("bob"), "bob's stream starts with his snapshot: {first}");
    assert!(!first.contains("alice"), "and nothing of alice's: {first}");
    drop(resp);

    // whoami says who is calling.
    let (_, me) = call(&c, "GET", &u("/api/auth/whoami"), Some(&bob_key), None).await;
    assert_eq!((me["mode"].as_str(), me["caller"].as_str(), me["user_id"].as_str()), (Some("token"), Some("user"), Some("bob")), "{me}");
    let (_, me) = call(&c, "GET", &u("/api/auth/whoami"), None, None).await;
    assert_eq!(me["caller"], "anonymous", "{me}");

    // Secrets never reach the logs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("Access: token mode"), "the node logs its mode");
    for secret in [ADMIN, alice_key.as_str(), bob_key.as_str(), spare["key"].as_str().unwrap()] {
        let secret_part = secret.rsplit('-').next().unwrap();
        assert!(!log.contains(secret_part), "a secret is in the log");
    }
}

/// A nil UUID for routes whose target need not exist (the refusal comes first).
fn uuid_zero() -> &'static str {
    "00000000-0000-7000-8000-000000000000"
}

#[tokio::test]
async fn failed_authentications_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "127.0.0.1:0", &["--auth", "token"]).unwrap();
    let c = reqwest::Client::new();
    let url = format!("{}/api/budgets", node.base);
    for i in 0..tally_web::auth::MAX_AUTH_FAILURES {
        let (s, body) = call(&c, "GET", &url, Some("tk-000000000000-0000000000000000000000000000000000000000000000000000000000000000"), None).await;
        assert_eq!((s, body["code"].as_str()), (401, Some("invalid_credentials")), "failure {i} is a 401");
    }
    let resp = c.get(&url).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429, "over the limit even the right token waits");
    assert!(resp.headers().get("retry-after").is_some(), "with Retry-After");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "too_many_failed_auth");
    let (s, _) = call(&c, "GET", &format!("{}/healthz", node.base), None, None).await;
    assert_eq!(s, 200, "public routes stay open");
}

#[test]
fn open_mode_cannot_be_bound_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let refused = start(dir.path(), "0.0.0.0:0", &["--auth", "open"]);
    let err = refused.err().expect("open mode on 0.0.0.0 must not start");
    assert!(err.contains("loopback"), "the refusal says why: {err}");
}

#[tokio::test]
async fn a_non_loopback_bind_defaults_to_token_mode_and_loopback_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "0.0.0.0:0", &[]).unwrap();
    let c = reqwest::Client::new();
    let (_, me) = call(&c, "GET", &format!("{}/api/auth/whoami", node.base), None, None).await;
    assert_eq!(me["mode"], "token", "0.0.0.0 without --auth: token mode ({me})");
    let (s, _) = call(&c, "GET", &format!("{}/api/users/", node.base), None, None).await;
    assert_eq!(s, 401, "and anonymous calls are refused");
    drop(node);
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), "127.0.0.1:0", &[]).unwrap();
    let (_, me) = call(&c, "GET", &format!("{}/api/auth/whoami", node.base), None, None).await;
    assert_eq!((me["mode"].as_str(), me["caller"].as_str()), (Some("open"), Some("open")), "loopback: open mode ({me})");
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("open mode"), "open mode is logged as such");
}
