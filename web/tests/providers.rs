//! Provider connections over HTTP on a real node (port 0, SQLite): keys encrypted at rest and
//! never returned, stable error codes, a start without TALLY_ENCRYPTION_KEY refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tally_actors::{ActorSystem, ActorSystemConfig};
use tally_domain::Catalog;
use tally_llm::{ProviderRouter, SimulatorConfig, SimulatorProvider};
use tally_store::Store;
use tally_web::providers::crypto::EncryptionKey;
use tally_web::providers::{ImportSettings, ImportsError, ProviderImports};

const CATALOG: &str = include_str!("../../catalog/prices.json");
const ADMIN_KEY: &str = "sk-ant-admin01-TOPSECRETVALUE-wxyz";

struct App {
    base: String,
    actors: ActorSystem,
    handle: actix_web::dev::ServerHandle,
    client: reqwest::Client,
    db_url: String,
}

fn settings() -> ImportSettings {
    ImportSettings {
        anthropic_min_interval: Duration::ZERO,
        openai_min_interval: Duration::ZERO,
        max_retries: 1,
        ..ImportSettings::default()
    }
}

async fn start(dir: &tempfile::TempDir, key: Option<&str>) -> Result<App, ImportsError> {
    // Each start opens the same file: the second start must see the first one's connections.
    let db_url = format!("sqlite://{}", dir.path().join("tally.db").display());
    let store = Store::open(&db_url).unwrap();
    let catalog = Catalog::parse(CATALOG).unwrap();
    store.seed(&catalog).unwrap();
    let sim = SimulatorProvider::new(SimulatorConfig { token_delay: Duration::from_millis(1) });
    let router = Arc::new(ProviderRouter::new(None, None, sim));
    let cache = tally_store::cache::Cache::memory(Default::default()).unwrap();
    let actors = ActorSystem::start(store.clone(), cache, router, ActorSystemConfig::default()).unwrap();
    let key = key.map(|k| EncryptionKey::from_base64(k).unwrap());
    let imports = ProviderImports::new(store, actors.billing.clone().recipient(), actors.prices.clone(), key, settings())?;
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
    Ok(App { base: format!("http://{addr}"), actors, handle, client: reqwest::Client::new(), db_url })
}

impl App {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, String) {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn stop(self) {
        self.handle.stop(false).await;
        self.actors.drain().await.unwrap();
    }
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["code"].as_str().unwrap_or_default().to_string()
}

#[actix_rt::test]
async fn connections_keep_admin_keys_encrypted_and_masked() {
    let dir = tempfile::tempdir().unwrap();
    let key = EncryptionKey::generate_base64();
    let app = start(&dir, Some(&key)).await.expect("starts");
    let post = |body: Value| app.call(reqwest::Method::POST, "/api/providers", Some(body));

    let (s, body) = post(json!({"provider": "anthropic", "name": "anthropic-prod", "admin_key": ADMIN_KEY,
        "base_url": "http://127.0.0.1:9"}))
    .await;
    assert_eq!(s, 201, "created: {body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["admin_key"], "sk-...wxyz", "the key is masked to its last four characters");
    assert!(!body.contains("TOPSECRET"), "the key is not in the response");
    let id = created["connection_id"].as_str().unwrap().to_string();

    let (s, body) = post(json!({"provider": "anthropic", "name": "anthropic-prod", "admin_key": ADMIN_KEY})).await;
    assert_eq!((s, code(&body)), (409, "connection_exists".to_string()), "a taken name: {body}");
    for (bad, expected) in [
        (json!({"provider": "mistral", "name": "x", "admin_key": ADMIN_KEY}), "invalid_provider"),
        (json!({"provider": "openai", "name": "a b", "admin_key": ADMIN_KEY}), "invalid_name"),
        (json!({"provider": "openai", "name": "o", "admin_key": "short"}), "invalid_admin_key"),
        (json!({"provider": "openai", "name": "o", "admin_key": ADMIN_KEY, "base_url": "ftp://x"}), "invalid_base_url"),
    ] {
        let (s, body) = post(bad).await;
        assert_eq!((s, code(&body)), (400, expected.to_string()), "bad body gives {expected}: {body}");
        assert!(!body.contains("TOPSECRET"), "no error repeats the key");
    }
    let (s, body) = app.call(reqwest::Method::GET, "/api/providers", None).await;
    assert_eq!(s, 200, "listed");
    assert!(body.contains("sk-...wxyz") && !body.contains("TOPSECRET"), "the list shows the masked key only: {body}");

    let (s, body) =
        app.call(reqwest::Method::POST, &format!("/api/providers/{id}/import?from=2026-12-02&to=2026-12-01"), None).await;
    assert_eq!((s, code(&body)), (400, "invalid_range".to_string()), "from after to: {body}");
    let missing = uuid::Uuid::now_v7();
    let (s, body) = app.call(reqwest::Method::GET, &format!("/api/providers/{missing}/runs"), None).await;
    assert_eq!((s, code(&body)), (404, "connection_not_found".to_string()), "unknown connection: {body}");
    let (s, body) =
        app.call(reqwest::Method::GET, "/api/reconciliation?provider=anthropic&from=2026-12-01&to=2026-12-02", None).await;
    assert_eq!(s, 200, "reconciliation answers: {body}");
    let (s, body) = app.call(reqwest::Method::GET, "/api/reconciliation?provider=x", None).await;
    assert_eq!((s, code(&body)), (400, "invalid_provider".to_string()), "bad provider: {body}");

    // The raw row: ciphertext and nonce, never the key in clear, anywhere in the database file.
    let db_path = app.db_url.trim_start_matches("sqlite://").to_string();
    let store = Store::open(&app.db_url).unwrap();
    let stored = store.list_connections().unwrap();
    assert_eq!(stored.len(), 1, "one connection stored");
    assert_eq!(stored[0].key_nonce.len(), 12, "a 96-bit nonce is stored");
    assert!(
        !stored[0].key_ciphertext.windows(9).any(|w| w == b"TOPSECRET"),
        "the stored ciphertext does not hold the key"
    );
    let file = std::fs::read(&db_path).unwrap();
    let wal = std::fs::read(format!("{db_path}-wal")).unwrap_or_default();
    assert!(
        !file.windows(9).chain(wal.windows(9)).any(|w| w == b"TOPSECRET"),
        "the key is nowhere in the database files in clear"
    );

    // Rotation: re-encrypted with a new key, and only the new key starts the service.
    let new_key = EncryptionKey::generate_base64();
    assert_eq!(tally_web::providers::rotate_encryption(&store, &key, &new_key).unwrap(), 1, "one key rotated");
    let old = EncryptionKey::from_base64(&key).unwrap();
    let rotated = store.list_connections().unwrap();
    let sealed = tally_web::providers::crypto::Sealed {
        ciphertext: rotated[0].key_ciphertext.clone(),
        nonce: rotated[0].key_nonce.clone(),
    };
    assert!(old.open(rotated[0].connection_id, &sealed).is_err(), "the old key no longer decrypts");
    let new = EncryptionKey::from_base64(&new_key).unwrap();
    assert_eq!(new.open(rotated[0].connection_id, &sealed).unwrap(), ADMIN_KEY, "the new key does");

    let (s, _) = app.call(reqwest::Method::DELETE, &format!("/api/providers/{id}"), None).await;
    assert_eq!(s, 200, "deleted");
    let (s, body) = app.call(reqwest::Method::DELETE, &format!("/api/providers/{id}"), None).await;
    assert_eq!((s, code(&body)), (404, "connection_not_found".to_string()), "deleted twice: {body}");
    app.stop().await;
}

#[actix_rt::test]
async fn stored_connections_without_an_encryption_key_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = EncryptionKey::generate_base64();
    let app = start(&dir, Some(&key)).await.expect("starts with a key");
    let (s, _) = app
        .call(reqwest::Method::POST, "/api/providers", Some(json!({"provider": "openai", "name": "openai-prod",
            "admin_key": "sk-admin-abcdefgh1234"})))
        .await;
    assert_eq!(s, 201, "created");
    app.stop().await;
    let Err(err) = start(&dir, None).await else { panic!("no key with a stored connection must fail") };
    assert!(matches!(err, ImportsError::MissingKey(1)), "a clear start-up error: {err}");
    assert!(err.to_string().contains("TALLY_ENCRYPTION_KEY"), "it names the variable: {err}");
    let wrong = EncryptionKey::generate_base64();
    let Err(err) = start(&dir, Some(&wrong)).await else { panic!("a wrong key must fail") };
    assert!(matches!(err, ImportsError::Crypto(_)), "a wrong key is refused at start: {err}");
}
