//! Provider usage import (issue 14): connections, import runs and reconciliation.
//!
//! [`ProviderImports`] owns the connections' runs: it decrypts the admin key, fetches the
//! provider's usage and cost reports (`tally-import`), and imports them. New buckets are
//! billed through the normal billing path (`BillBatch`, `source = provider_import`, the
//! bucket's deterministic id as event id), unchanged ones are skipped, changed ones replace
//! their earlier event exactly (`Store::revise_imported_bucket`, audited), costs are stored
//! as reported. Runs of one connection never overlap (one async mutex per connection), and
//! every run re-reads the last [`RELOOK_HOURS`] for late data.

pub mod crypto;
pub mod drift;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Recipient;
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tally_actors::billing::{BillBatch, PriceBookHandle, UsageEvent};
use tally_domain::{price_usage, Usage};
use tally_import::{ClientConfig, CostItem, Provider, RateGate, UsageBucket};
use tally_observability::TraceContext;
use tally_store::providers::{
    BucketRevision, ConnectionRecord, ImportRunRecord, ImportedBucket, ProviderCostRecord, ReconciliationRow,
    RevisionOutcome, PROVIDER_IMPORT_SOURCE,
};
use tally_store::{Store, StoreError, UsageRecord};
use uuid::Uuid;

use crypto::{CryptoError, EncryptionKey, Sealed};

/// Hours of buckets re-read on every run: providers fill buckets minutes to hours late.
pub const RELOOK_HOURS: i64 = 6;
/// Hours a scheduled run looks back when its connection has never run.
pub const FIRST_RUN_HOURS: i64 = 24;
/// Longest range one run may ask for.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Longest connection name.
pub const MAX_NAME_LEN: usize = 40;
/// Longest admin key accepted.
pub const MAX_ADMIN_KEY_LEN: usize = 512;
/// Sustained polling interval for Anthropic ("once per minute for sustained use").
pub const ANTHROPIC_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Polling interval for OpenAI (no documented limit; be gentle).
pub const OPENAI_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Retries of a 429 / 5xx inside one run (the import client's backoff).
pub const DEFAULT_MAX_RETRIES: usize = 4;
/// Default `User-Agent` sent to the providers.
pub const DEFAULT_USER_AGENT: &str = concat!("Tally/", env!("CARGO_PKG_VERSION"), " (provider-import)");
/// Longest error text kept on a run.
const MAX_ERROR_CHARS: usize = 2_000;

/// Anthropic's API.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
/// OpenAI's API.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// What a run was started by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler.
    Schedule,
    /// `POST /api/providers/{id}/import`.
    Manual,
    /// `tally import backfill`.
    Backfill,
}

impl Trigger {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Backfill => "backfill",
        }
    }
}

/// Why a provider-import call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImportsError {
    /// Connections are stored but `TALLY_ENCRYPTION_KEY` is not set.
    #[error("{0} provider connection(s) are stored but TALLY_ENCRYPTION_KEY is not set: set it to the key they were encrypted with")]
    MissingKey(usize),
    /// The encryption key is unusable or does not decrypt the stored keys.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Bad input (stable code for the 400 body).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// No such connection.
    #[error("provider connection {0} not found")]
    NotFound(Uuid),
    /// A connection with that name exists.
    #[error("a provider connection named {0:?} exists")]
    Exists(String),
    /// The provider failed or answered something unusable; the run is recorded failed.
    #[error("provider error: {message}")]
    Provider {
        /// The failed run.
        run: Box<ImportRunRecord>,
        /// What went wrong (never contains the admin key).
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Billing failed.
    #[error("billing: {0}")]
    Billing(String),
}

impl ImportsError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ImportsError::Store(e) => e.is_retryable(),
            ImportsError::Provider { .. } | ImportsError::Billing(_) => true,
            ImportsError::MissingKey(_)
            | ImportsError::Crypto(_)
            | ImportsError::Invalid { .. }
            | ImportsError::NotFound(_)
            | ImportsError::Exists(_) => false,
        }
    }

    fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ImportsError::Invalid { code, message: message.into() }
    }
}

/// A connection as the API shows it: the key masked, never in clear.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionView {
    /// Id.
    pub connection_id: Uuid,
    /// `anthropic` or `openai`.
    pub provider: String,
    /// Unique name.
    pub name: String,
    /// API base URL.
    pub base_url: String,
    /// `sk-...abcd`.
    pub admin_key: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When the last run finished.
    pub last_run_at: Option<DateTime<Utc>>,
    /// `success` / `failed` / null.
    pub last_status: Option<String>,
    /// Last run's error.
    pub last_error: Option<String>,
    /// Included in scheduled runs.
    pub enabled: bool,
}

impl From<&ConnectionRecord> for ConnectionView {
    fn from(c: &ConnectionRecord) -> Self {
        ConnectionView {
            connection_id: c.connection_id,
            provider: c.provider.clone(),
            name: c.name.clone(),
            base_url: c.base_url.clone(),
            admin_key: crypto::masked(&c.key_hint),
            created_at: c.created_at,
            last_run_at: c.last_run_at,
            last_status: c.last_status.clone(),
            last_error: c.last_error.clone(),
            enabled: c.enabled,
        }
    }
}

/// Tunables of the import service.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// `User-Agent` sent to providers.
    pub user_agent: String,
    /// Minimum interval between runs (and pages) against Anthropic.
    pub anthropic_min_interval: Duration,
    /// Minimum interval against OpenAI.
    pub openai_min_interval: Duration,
    /// Retries of 429 / 5xx within a run.
    pub max_retries: usize,
}

impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            user_agent: DEFAULT_USER_AGENT.to_string(),
            anthropic_min_interval: ANTHROPIC_MIN_INTERVAL,
            openai_min_interval: OPENAI_MIN_INTERVAL,
            max_retries: DEFAULT_MAX_RETRIES,
        }
    }
}

struct Inner {
    store: Store,
    billing: Recipient<BillBatch>,
    prices: PriceBookHandle,
    key: Option<EncryptionKey>,
    settings: ImportSettings,
    gates: Mutex<HashMap<Uuid, Arc<RateGate>>>,
    runs: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// The provider-import service. Cheap to clone.
#[derive(Clone)]
pub struct ProviderImports {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ProviderImports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderImports").finish_non_exhaustive()
    }
}

/// Run a storage call off the event loop.
async fn blocking<T, F>(store: &Store, f: F) -> Result<T, ImportsError>
where
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ImportsError::Store(StoreError::Database(format!("blocking task: {e}"))))?
        .map_err(ImportsError::from)
}

impl ProviderImports {
    /// The service over `store`, billing through `billing`, pricing revisions with `prices`
    /// (the billing actor's book). With connections stored and no `key`: `MissingKey` (a
    /// start-up error). Blocking (one query): call it at start-up.
    pub fn new(
        store: Store,
        billing: Recipient<BillBatch>,
        prices: PriceBookHandle,
        key: Option<EncryptionKey>,
        settings: ImportSettings,
    ) -> Result<Self, ImportsError> {
        let connections = store.list_connections()?;
        match &key {
            None if !connections.is_empty() => return Err(ImportsError::MissingKey(connections.len())),
            Some(key) => {
                // Fail at start, not at the first scheduled run, when the key is the wrong one.
                if let Some(c) = connections.first() {
                    key.open(c.connection_id, &sealed_of(c))?;
                }
            }
            None => {}
        }
        Ok(ProviderImports {
            inner: Arc::new(Inner {
                store,
                billing,
                prices,
                key,
                settings,
                gates: Mutex::default(),
                runs: Mutex::default(),
            }),
        })
    }

    /// The store it works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Create a connection: validate, encrypt the admin key, store. Returns the masked view.
    pub async fn create_connection(
        &self,
        provider: &str,
        name: &str,
        admin_key: &str,
        base_url: Option<&str>,
    ) -> Result<ConnectionView, ImportsError> {
        let provider = Provider::from_str(provider).map_err(|_| {
            ImportsError::invalid("invalid_provider", format!("provider must be anthropic or openai, not {provider:?}"))
        })?;
        validate_name(name)?;
        validate_admin_key(admin_key)?;
        let base_url = match base_url {
            Some(url) => validate_base_url(url)?,
            None => default_base_url(provider).to_string(),
        };
        let key = self.inner.key.as_ref().ok_or_else(|| {
            ImportsError::invalid("encryption_key_missing", "set TALLY_ENCRYPTION_KEY to store provider admin keys")
        })?;
        let id = Uuid::now_v7();
        let sealed = key.seal(id, admin_key)?;
        let record = ConnectionRecord {
            connection_id: id,
            provider: provider.as_str().to_string(),
            name: name.to_string(),
            base_url,
            key_ciphertext: sealed.ciphertext,
            key_nonce: sealed.nonce,
            key_hint: crypto::key_hint(admin_key),
            created_at: Utc::now(),
            last_run_at: None,
            last_status: None,
            last_error: None,
            enabled: true,
        };
        let name = name.to_string();
        match blocking(&self.inner.store, move |s| s.create_connection(&record)).await {
            Ok(c) => Ok(ConnectionView::from(&c)),
            Err(ImportsError::Store(StoreError::Conflict(_))) => Err(ImportsError::Exists(name)),
            Err(e) => Err(e),
        }
    }

    /// Every connection, masked.
    pub async fn list_connections(&self) -> Result<Vec<ConnectionView>, ImportsError> {
        let all = blocking(&self.inner.store, |s| s.list_connections()).await?;
        Ok(all.iter().map(ConnectionView::from).collect())
    }

    /// Delete a connection (its runs and costs; imported usage stays billed).
    pub async fn delete_connection(&self, id: Uuid) -> Result<ConnectionView, ImportsError> {
        match blocking(&self.inner.store, move |s| s.delete_connection(id)).await {
            Ok(c) => Ok(ConnectionView::from(&c)),
            Err(ImportsError::Store(StoreError::NotFound(_))) => Err(ImportsError::NotFound(id)),
            Err(e) => Err(e),
        }
    }

    /// A connection's runs, newest first.
    pub async fn runs(&self, id: Uuid, limit: i64) -> Result<Vec<ImportRunRecord>, ImportsError> {
        let c = blocking(&self.inner.store, move |s| s.get_connection(id)).await?;
        if c.is_none() {
            return Err(ImportsError::NotFound(id));
        }
        blocking(&self.inner.store, move |s| s.list_import_runs(id, limit)).await
    }

    fn run_lock(&self, id: Uuid) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means a panic while inserting an Arc; the map is whole.
        let mut runs = self.inner.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        runs.entry(id).or_default().clone()
    }

    fn gate(&self, id: Uuid, interval: Duration) -> Arc<RateGate> {
        let mut gates = self.inner.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gates.entry(id).or_insert_with(|| Arc::new(RateGate::new(interval))).clone()
    }

    /// One import run of a connection over `[from, to)` (widened back to re-read the last
    /// [`RELOOK_HOURS`] before `to`). Waits for a run of the same connection in progress.
    /// The provider failing, or answering something invalid, records the run failed with
    /// nothing imported and returns `Provider`.
    pub async fn run(
        &self,
        id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        trigger: Trigger,
    ) -> Result<ImportRunRecord, ImportsError> {
        if from >= to || to - from > TimeDelta::days(MAX_RANGE_DAYS) {
            return Err(ImportsError::invalid(
                "invalid_range",
                format!("the range must have from < to and span at most {MAX_RANGE_DAYS} days"),
            ));
        }
        let lock = self.run_lock(id);
        let _running = lock.lock().await;
        let connection = blocking(&self.inner.store, move |s| s.get_connection(id))
            .await?
            .ok_or(ImportsError::NotFound(id))?;
        let key = self.inner.key.as_ref().ok_or(ImportsError::MissingKey(1))?;
        let admin_key = key.open(id, &sealed_of(&connection))?;
        let provider = Provider::from_str(&connection.provider)
            .map_err(|_| StoreError::Database(format!("connection {id} has provider {:?}", connection.provider)))?;
        let from = from.min(to - TimeDelta::hours(RELOOK_HOURS));
        let interval = match provider {
            Provider::Anthropic => self.inner.settings.anthropic_min_interval,
            Provider::OpenAi => self.inner.settings.openai_min_interval,
        };
        let cfg = ClientConfig {
            provider,
            base_url: connection.base_url.clone(),
            admin_key: tally_import::Secret::new(admin_key),
            user_agent: self.inner.settings.user_agent.clone(),
            min_interval: interval,
            max_retries: self.inner.settings.max_retries,
        };
        let mut run = ImportRunRecord {
            run_id: Uuid::now_v7(),
            connection_id: id,
            trigger: trigger.as_str().to_string(),
            range_from: from,
            range_to: to,
            started_at: Utc::now(),
            finished_at: None,
            status: "running".into(),
            pages: 0,
            buckets: 0,
            events_new: 0,
            events_revised: 0,
            events_unchanged: 0,
            skipped: 0,
            costs: 0,
            error: None,
        };
        let started = run.clone();
        blocking(&self.inner.store, move |s| s.insert_import_run(&started)).await?;
        self.gate(id, interval).wait().await;
        let fetched = tally_import::fetch_report(&cfg, from, to).await;
        let report = match fetched.map_err(|e| e.to_string()).and_then(|r| validate_report(&r).map(|()| r)) {
            Ok(report) => report,
            Err(message) => return Err(self.fail(run, message).await),
        };
        run.pages = count(report.pages);
        run.buckets = count(report.usage.len());
        match self.import(&connection, &mut run, &report.usage, &report.costs).await {
            Ok(()) => {}
            Err(e) => {
                // Storage or billing failed mid-import: record it; a re-run completes the
                // import without counting twice (event ids are deterministic).
                let message = e.to_string();
                let _ = self.fail(run, message).await;
                return Err(e);
            }
        }
        run.status = "success".into();
        run.finished_at = Some(Utc::now());
        let finished = run.clone();
        blocking(&self.inner.store, move |s| s.finish_import_run(&finished)).await?;
        tracing::info!(run.id = %run.run_id, connection.id = %id, events_new = run.events_new,
            events_revised = run.events_revised, events_unchanged = run.events_unchanged, skipped = run.skipped,
            costs = run.costs, "Provider import run finished.");
        Ok(run)
    }

    /// Record a run failed; the error to return.
    async fn fail(&self, mut run: ImportRunRecord, message: String) -> ImportsError {
        run.status = "failed".into();
        run.finished_at = Some(Utc::now());
        run.error = Some(truncate(&message));
        tracing::warn!(run.id = %run.run_id, connection.id = %run.connection_id, error = %message,
            "Provider import run failed.");
        let finished = run.clone();
        if let Err(e) = blocking(&self.inner.store, move |s| s.finish_import_run(&finished)).await {
            return e;
        }
        ImportsError::Provider { run: Box::new(run), message }
    }

    /// Import a validated report: bill new buckets, revise changed ones, store costs.
    async fn import(
        &self,
        connection: &ConnectionRecord,
        run: &mut ImportRunRecord,
        usage: &[UsageBucket],
        costs: &[CostItem],
    ) -> Result<(), ImportsError> {
        let ids: Vec<Uuid> = usage.iter().map(UsageBucket::event_id).collect();
        let stored: HashMap<Uuid, ImportedBucket> = blocking(&self.inner.store, move |s| s.imported_buckets(&ids))
            .await?
            .into_iter()
            .map(|b| (b.event_id, b))
            .collect();
        let book = self.inner.prices.current();
        let user_id = import_user(&connection.name);
        let now = Utc::now();
        let mut notes: Vec<String> = Vec::new();
        let mut new_events: Vec<(UsageEvent, ImportedBucket)> = Vec::new();
        let mut revisions: Vec<BucketRevision> = Vec::new();
        for b in usage {
            let base_id = b.event_id();
            let hash = b.content_hash();
            let quantities = usage_of(b);
            let Some(model) = b.model.clone() else {
                run.skipped += 1;
                notes.push(format!("bucket {} {}: no model", b.starting_at.to_rfc3339(), b.group_key()));
                continue;
            };
            let quantities = match quantities {
                Ok(q) => q,
                Err(e) => {
                    run.skipped += 1;
                    notes.push(format!("bucket {} {}: {e}", b.starting_at.to_rfc3339(), b.group_key()));
                    continue;
                }
            };
            let cost = match price_usage(&book, &model, b.starting_at, &quantities) {
                Ok(c) => c,
                Err(e) => {
                    run.skipped += 1;
                    notes.push(format!("bucket {} {}: not priced: {e}", b.starting_at.to_rfc3339(), b.group_key()));
                    continue;
                }
            };
            match stored.get(&base_id) {
                Some(s) if s.content_hash == hash => run.events_unchanged += 1,
                Some(s) => {
                    let revision = s.revision + 1;
                    let event_id = revision_event_id(base_id, revision);
                    let old_quantities = old_quantities_json(&self.inner.store, s.current_event_id).await?;
                    revisions.push(BucketRevision {
                        run_id: Some(run.run_id),
                        bucket: ImportedBucket {
                            event_id: base_id,
                            connection_id: connection.connection_id,
                            starting_at: b.starting_at,
                            group_key: b.group_key(),
                            content_hash: hash,
                            revision,
                            current_event_id: event_id,
                            imported_at: now,
                        },
                        usage: UsageRecord {
                            event_id,
                            user_id: user_id.clone(),
                            thread_id: None,
                            message_id: None,
                            model,
                            event_type: String::new(),
                            source: PROVIDER_IMPORT_SOURCE.to_string(),
                            idempotency_key: Some(idempotency_key(b, revision)),
                            occurred_at: b.starting_at,
                            cost,
                            key_id: None,
                            task: None,
                            successful: true,
                        },
                        old_quantities,
                        new_quantities: quantities_json(&quantities),
                    });
                }
                None => new_events.push((
                    UsageEvent {
                        event_id: base_id,
                        user_id: user_id.clone(),
                        thread_id: None,
                        message_id: None,
                        model,
                        occurred_at: b.starting_at,
                        usage: quantities,
                        source: PROVIDER_IMPORT_SOURCE.to_string(),
                        idempotency_key: Some(idempotency_key(b, 0)),
                        key_id: None,
                        task: None,
                        successful: true,
                    },
                    ImportedBucket {
                        event_id: base_id,
                        connection_id: connection.connection_id,
                        starting_at: b.starting_at,
                        group_key: b.group_key(),
                        content_hash: hash,
                        revision: 0,
                        current_event_id: base_id,
                        imported_at: now,
                    },
                )),
            }
        }

        if !new_events.is_empty() {
            let events: Vec<UsageEvent> = new_events.iter().map(|(e, _)| e.clone()).collect();
            let billed = self
                .inner
                .billing
                .send(BillBatch { events, trace: TraceContext::current() })
                .await
                .map_err(|e| ImportsError::Billing(e.to_string()))?
                .map_err(|e| ImportsError::Billing(e.to_string()))?;
            let mut recorded = Vec::new();
            for ((event, bucket), outcome) in new_events.into_iter().zip(billed) {
                match outcome {
                    Ok(b) => {
                        // A duplicate is an event billed by an earlier run that stopped before
                        // recording its bucket: record it now.
                        if !b.duplicate {
                            run.events_new += 1;
                        } else {
                            run.events_unchanged += 1;
                        }
                        recorded.push(bucket);
                    }
                    Err(e) => {
                        run.skipped += 1;
                        notes.push(format!("event {}: not billed: {e}", event.event_id));
                    }
                }
            }
            blocking(&self.inner.store, move |s| s.record_imported_buckets(&recorded)).await?;
        }

        for revision in revisions {
            let outcome = blocking(&self.inner.store, move |s| s.revise_imported_bucket(&revision)).await?;
            match outcome {
                RevisionOutcome::Applied => run.events_revised += 1,
                RevisionOutcome::Unchanged => run.events_unchanged += 1,
                RevisionOutcome::Refused(why) => {
                    tracing::warn!(run.id = %run.run_id, reason = %why, "Revision of an invoiced import refused.");
                    run.skipped += 1;
                    notes.push(why);
                }
            }
        }

        let models: Vec<String> = book_models(&self.inner.store, &connection.provider).await?;
        let records: Vec<ProviderCostRecord> = costs
            .iter()
            .map(|c| ProviderCostRecord {
                connection_id: connection.connection_id,
                starting_at: c.starting_at,
                ending_at: c.ending_at,
                model: c.model.clone().or_else(|| c.description.as_deref().and_then(|d| model_of_description(d, &models))),
                description: c.description.clone(),
                workspace_id: c.workspace_id.clone(),
                amount: c.amount_usd,
                currency: c.currency.clone(),
                imported_at: now,
            })
            .collect();
        run.costs = count(records.len());
        if !records.is_empty() {
            blocking(&self.inner.store, move |s| s.upsert_provider_costs(&records)).await?;
        }
        if !notes.is_empty() {
            run.error = Some(truncate(&notes.join("; ")));
        }
        Ok(())
    }

    /// Scheduled runs of every enabled connection of `provider`: from the last successful
    /// run's end (or [`FIRST_RUN_HOURS`] back) to the start of the current hour, re-reading
    /// the last [`RELOOK_HOURS`]. A summary for the scheduler's history.
    pub async fn run_scheduled(&self, provider: &str, now: DateTime<Utc>) -> Result<String, ImportsError> {
        let to = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let mut summary = Vec::new();
        let mut failed = Vec::new();
        let all = blocking(&self.inner.store, |s| s.list_connections()).await?;
        for c in all.into_iter().filter(|c| c.provider == provider && c.enabled) {
            let id = c.connection_id;
            let runs = blocking(&self.inner.store, move |s| s.list_import_runs(id, 20)).await?;
            let from = runs
                .iter()
                .find(|r| r.status == "success")
                .map(|r| r.range_to)
                .unwrap_or(to - TimeDelta::hours(FIRST_RUN_HOURS))
                .min(to - TimeDelta::hours(RELOOK_HOURS));
            match self.run(id, from, to, Trigger::Schedule).await {
                Ok(r) => summary.push(format!(
                    "{}: {} new, {} revised, {} unchanged, {} skipped, {} costs",
                    c.name, r.events_new, r.events_revised, r.events_unchanged, r.skipped, r.costs
                )),
                Err(e) => failed.push(format!("{}: {e}", c.name)),
            }
        }
        if failed.is_empty() {
            Ok(if summary.is_empty() { format!("no enabled {provider} connections") } else { summary.join("; ") })
        } else {
            Err(ImportsError::Billing(failed.join("; ")))
        }
    }

    /// Backfill every connection of `provider` over the last `days` UTC days up to now.
    pub async fn backfill(&self, provider: &str, days: i64, now: DateTime<Utc>) -> Result<Vec<ImportRunRecord>, ImportsError> {
        let Ok(p) = Provider::from_str(provider) else {
            return Err(ImportsError::invalid("invalid_provider", format!("unknown provider {provider:?}")));
        };
        if !(1..=MAX_RANGE_DAYS).contains(&days) {
            return Err(ImportsError::invalid("invalid_range", format!("days must be 1-{MAX_RANGE_DAYS}")));
        }
        let to = now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now);
        let from = (to - TimeDelta::days(days)).duration_trunc(TimeDelta::days(1)).unwrap_or(to);
        let all = blocking(&self.inner.store, |s| s.list_connections()).await?;
        let mut runs = Vec::new();
        for c in all.into_iter().filter(|c| c.provider == p.as_str()) {
            runs.push(self.run(c.connection_id, from, to, Trigger::Backfill).await?);
        }
        Ok(runs)
    }

    /// Reconciliation rows of `provider` over the UTC days `from..=to` with differences.
    pub async fn reconciliation(
        &self,
        provider: &str,
        from: NaiveDate,
        to: NaiveDate,
        tolerance_pct: Decimal,
    ) -> Result<Vec<ReconciliationView>, ImportsError> {
        let (start, end) = (midnight(from), midnight(to) + TimeDelta::days(1));
        let provider = provider.to_string();
        let rows = blocking(&self.inner.store, move |s| s.reconciliation(&provider, start, end)).await?;
        Ok(rows.into_iter().map(|r| ReconciliationView::of(r, tolerance_pct)).collect())
    }
}

/// Midnight UTC of a day.
fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The scheduler's entry point: run every enabled connection of `provider` now.
pub async fn scheduled_run(imports: ProviderImports, provider: String) -> Result<String, String> {
    imports.run_scheduled(&provider, Utc::now()).await.map_err(|e| e.to_string())
}

/// `tally import backfill --provider P --days N`: one backfill run per connection of P.
pub async fn backfill_cli(imports: &ProviderImports, provider: &str, days: i64) -> anyhow::Result<String> {
    let runs = imports.backfill(provider, days, Utc::now()).await?;
    Ok(runs
        .iter()
        .map(|r| {
            format!(
                "run {} ({} .. {}): {} new, {} revised, {} unchanged, {} skipped, {} costs",
                r.run_id, r.range_from, r.range_to, r.events_new, r.events_revised, r.events_unchanged, r.skipped, r.costs
            )
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `tally keys rotate-encryption --old K --new K`: re-encrypt every stored admin key in one
/// transaction. Returns how many were re-encrypted. Nothing changes when `old` does not
/// decrypt every key.
pub fn rotate_encryption(store: &Store, old: &str, new: &str) -> Result<usize, ImportsError> {
    let old = EncryptionKey::from_base64(old)?;
    let new = EncryptionKey::from_base64(new)?;
    let connections = store.list_connections()?;
    let mut keys = Vec::with_capacity(connections.len());
    for c in &connections {
        let plain = old.open(c.connection_id, &sealed_of(c))?;
        let sealed = new.seal(c.connection_id, &plain)?;
        keys.push((c.connection_id, sealed.ciphertext, sealed.nonce));
    }
    store.replace_connection_keys(&keys)?;
    Ok(keys.len())
}

fn sealed_of(c: &ConnectionRecord) -> Sealed {
    Sealed { ciphertext: c.key_ciphertext.clone(), nonce: c.key_nonce.clone() }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_ERROR_CHARS).collect()
}

/// The user imported usage is billed to: one per connection (`provider_import.NAME`).
pub fn import_user(name: &str) -> String {
    format!("provider_import.{name}")
}

/// The default API base URL of a provider.
pub fn default_base_url(p: Provider) -> &'static str {
    match p {
        Provider::Anthropic => ANTHROPIC_BASE_URL,
        Provider::OpenAi => OPENAI_BASE_URL,
    }
}

/// 1-40 characters of letters, digits, `_ . -`.
fn validate_name(name: &str) -> Result<(), ImportsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ImportsError::invalid(
            "invalid_name",
            format!("name must be 1-{MAX_NAME_LEN} characters of letters, digits, '_', '.', '-'"),
        ))
    }
}

/// 8-512 printable characters without spaces. The message never repeats the key.
fn validate_admin_key(key: &str) -> Result<(), ImportsError> {
    let ok = (8..=MAX_ADMIN_KEY_LEN).contains(&key.len()) && key.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(ImportsError::invalid(
            "invalid_admin_key",
            format!("admin_key must be 8-{MAX_ADMIN_KEY_LEN} printable characters without spaces"),
        ))
    }
}

/// An `http(s)://host[:port][/path]` URL, without a trailing slash.
fn validate_base_url(url: &str) -> Result<String, ImportsError> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or_default();
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || matches!(c, '?' | '#' | '@'))
    });
    if ok && url.len() <= 2_048 {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(ImportsError::invalid("invalid_base_url", "base_url must be an http:// or https:// URL without query"))
    }
}

/// Checks on a fetched report before anything is written: a bucket ends after it starts and
/// each bucket x group appears once. (The client already refused malformed JSON, missing
/// fields and negative counts.)
fn validate_report(r: &tally_import::Report) -> Result<(), String> {
    let mut seen = HashSet::new();
    for b in &r.usage {
        if b.ending_at <= b.starting_at {
            return Err(format!("usage bucket starting {} does not end after it starts", b.starting_at));
        }
        if !seen.insert(b.event_id()) {
            return Err(format!("usage bucket {} group {} appears twice", b.starting_at, b.group_key()));
        }
    }
    for c in &r.costs {
        if c.ending_at <= c.starting_at {
            return Err(format!("cost bucket starting {} does not end after it starts", c.starting_at));
        }
    }
    Ok(())
}

/// A bucket's quantities as Tally usage (zero kinds left out).
fn usage_of(b: &UsageBucket) -> Result<Usage, tally_domain::DomainError> {
    let mut u = Usage::new();
    for (kind, n) in &b.quantities {
        if *n > 0 {
            u.add(kind.clone(), Decimal::from(*n))?;
        }
    }
    Ok(u)
}

fn quantities_json(u: &Usage) -> String {
    let map: BTreeMap<String, String> = u.iter().map(|(k, q)| (k.as_str().to_string(), q.to_string())).collect();
    serde_json::to_string(&map).unwrap_or_default()
}

/// The stored quantities of an event, as JSON (audit).
async fn old_quantities_json(store: &Store, event_id: Uuid) -> Result<String, ImportsError> {
    let lines = blocking(store, move |s| {
        s.event_detail(event_id).map(|d| d.map(|d| d.event.usage.cost.lines).unwrap_or_default())
    })
    .await?;
    let mut map: BTreeMap<String, Decimal> = BTreeMap::new();
    for l in lines {
        *map.entry(l.kind.as_str().to_string()).or_default() += l.quantity;
    }
    let map: BTreeMap<String, String> = map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    Ok(serde_json::to_string(&map).unwrap_or_default())
}

/// The event id of a bucket's `revision`: revision 0 is the bucket's own deterministic id,
/// later ones are derived from it (SHA-256, as a UUIDv8), so the same revision of the same
/// bucket always gets the same id, on any node.
pub fn revision_event_id(base: Uuid, revision: i64) -> Uuid {
    if revision == 0 {
        return base;
    }
    let digest = Sha256::new()
        .chain_update(b"tally-import-revision")
        .chain_update(base.as_bytes())
        .chain_update(revision.to_be_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn idempotency_key(b: &UsageBucket, revision: i64) -> String {
    format!("{}|{}|{}|r{revision}", b.provider.as_str(), b.starting_at.to_rfc3339(), b.group_key())
}

/// The catalogue's model names of a provider.
async fn book_models(store: &Store, provider: &str) -> Result<Vec<String>, ImportsError> {
    let provider = provider.to_string();
    let models = blocking(store, |s| s.list_models()).await?;
    Ok(models.into_iter().filter(|m| m.provider == provider).map(|m| m.name).collect())
}

/// The model an Anthropic cost description names, when exactly one catalogue model fits:
/// `"Claude Sonnet 4 Usage - Input Tokens"` -> `claude-sonnet-4` -> `claude-sonnet-4-20250514`
/// (the name itself, or the name plus `-YYYYMMDD`).
pub fn model_of_description(description: &str, models: &[String]) -> Option<String> {
    let lower = description.to_ascii_lowercase();
    let head = lower.split(" usage").next()?.trim();
    if head.is_empty() {
        return None;
    }
    let stem: String = head.chars().map(|c| if c == ' ' || c == '.' { '-' } else { c }).collect();
    let fits = |m: &&String| {
        m.as_str() == stem
            || m.strip_prefix(stem.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| date.len() == 8 && date.chars().all(|c| c.is_ascii_digit()))
    };
    let found: Vec<&String> = models.iter().filter(fits).collect();
    match found.as_slice() {
        [one] => Some((*one).clone()),
        _ => None,
    }
}

/// One reconciliation row with differences, as the API shows it (money and counts as
/// exact decimal strings; percentages rounded to 4 places).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReconciliationView {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Model (null: provider cost Tally could not attribute).
    pub model: Option<String>,
    /// Provider-reported quantities by kind.
    pub reported_tokens: BTreeMap<String, String>,
    /// Tally-metered quantities by kind (chat, gateway, ingest...).
    pub metered_tokens: BTreeMap<String, String>,
    /// Metered minus reported, by kind.
    pub token_diff: BTreeMap<String, String>,
    /// Of the reported, by kind (null when nothing was reported of that kind).
    pub token_diff_pct: BTreeMap<String, Option<String>>,
    /// Provider-reported cost (null when none was reported).
    pub reported_cost: Option<String>,
    /// Tally's price for the reported usage.
    pub tally_priced_cost: String,
    /// Tally-metered cost.
    pub metered_cost: String,
    /// Metered minus reported cost (null without a reported cost).
    pub cost_diff: Option<String>,
    /// Of the reported cost.
    pub cost_diff_pct: Option<String>,
    /// Tally's price minus the reported cost: pricing drift.
    pub price_diff: Option<String>,
    /// Of the reported cost.
    pub price_diff_pct: Option<String>,
    /// Imported events behind the reported figures.
    pub reported_events: i64,
    /// Metered events.
    pub metered_events: i64,
    /// What is beyond tolerance: `tokens:KIND`, `cost`.
    pub flags: Vec<String>,
    /// Whether anything is beyond tolerance.
    pub flagged: bool,
}

/// `diff / base` in percent, rounded to 4 places; None when base is zero.
fn pct(diff: Decimal, base: Decimal) -> Option<Decimal> {
    (!base.is_zero()).then(|| (diff * Decimal::ONE_HUNDRED / base).round_dp(4))
}

/// Whether `diff` against `base` is beyond `tolerance` percent (any difference from zero is).
fn beyond(diff: Decimal, base: Decimal, tolerance: Decimal) -> bool {
    match pct(diff, base) {
        Some(p) => p.abs() > tolerance,
        None => !diff.is_zero(),
    }
}

impl ReconciliationView {
    /// Differences of a stored row at `tolerance` percent.
    pub fn of(r: ReconciliationRow, tolerance: Decimal) -> Self {
        let mut flags = Vec::new();
        let kinds: std::collections::BTreeSet<&String> = r.reported.keys().chain(r.metered.keys()).collect();
        let mut token_diff = BTreeMap::new();
        let mut token_diff_pct = BTreeMap::new();
        // Tokens are compared only where both sides exist: a day the provider reported nothing
        // for (or Tally metered nothing of) is a row of its own, flagged when non-zero.
        for kind in kinds {
            let rep = r.reported.get(kind).copied().unwrap_or_default();
            let met = r.metered.get(kind).copied().unwrap_or_default();
            let diff = met - rep;
            token_diff.insert(kind.clone(), diff.normalize().to_string());
            token_diff_pct.insert(kind.clone(), pct(diff, rep).map(|p| p.normalize().to_string()));
            if beyond(diff, rep, tolerance) {
                flags.push(format!("tokens:{kind}"));
            }
        }
        let cost_diff = r.reported_cost.map(|c| r.metered_cost - c);
        let price_diff = r.reported_cost.map(|c| r.tally_priced_cost - c);
        if let (Some(d), Some(c)) = (cost_diff, r.reported_cost) {
            if beyond(d, c, tolerance) {
                flags.push("cost".into());
            }
        }
        let s = |d: Decimal| d.normalize().to_string();
        ReconciliationView {
            date: r.day.map(|d| d.to_string()).unwrap_or_default(),
            model: r.model,
            reported_tokens: r.reported.iter().map(|(k, v)| (k.clone(), s(*v))).collect(),
            metered_tokens: r.metered.iter().map(|(k, v)| (k.clone(), s(*v))).collect(),
            token_diff,
            token_diff_pct,
            reported_cost: r.reported_cost.map(s),
            tally_priced_cost: s(r.tally_priced_cost),
            metered_cost: s(r.metered_cost),
            cost_diff: cost_diff.map(s),
            cost_diff_pct: match (cost_diff, r.reported_cost) {
                (Some(d), Some(c)) => pct(d, c).map(s),
                _ => None,
            },
            price_diff: price_diff.map(s),
            price_diff_pct: match (price_diff, r.reported_cost) {
                (Some(d), Some(c)) => pct(d, c).map(s),
                _ => None,
            },
            reported_events: r.reported_events,
            metered_events: r.metered_events,
            flagged: !flags.is_empty(),
            flags,
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_map_to_one_catalogue_model() {
        let models: Vec<String> = ["claude-sonnet-4-20250514", "claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            model_of_description("Claude Sonnet 4 Usage - Input Tokens", &models).as_deref(),
            Some("claude-sonnet-4-20250514"),
            "Sonnet 4, not Sonnet 4.5"
        );
        assert_eq!(
            model_of_description("Claude 3.5 Haiku Usage - Output Tokens", &models).as_deref(),
            Some("claude-3-5-haiku-20241022"),
            "dots become dashes"
        );
        assert_eq!(model_of_description("Code Execution Usage", &models), None, "not a model");
        assert_eq!(model_of_description("Web Search", &models), None, "no usage word, no model");
    }

    #[test]
    fn revision_ids_are_deterministic_and_distinct() {
        let base = Uuid::now_v7();
        assert_eq!(revision_event_id(base, 0), base, "revision 0 is the bucket's id");
        assert_eq!(revision_event_id(base, 1), revision_event_id(base, 1), "deterministic");
        assert_ne!(revision_event_id(base, 1), revision_event_id(base, 2), "each revision differs");
        assert_ne!(revision_event_id(base, 1), base, "a revision gets a new id");
    }

    #[test]
    fn differences_flag_beyond_tolerance_only() {
        let one = Decimal::ONE;
        let row = |rep: i64, met: i64| ReconciliationRow {
            day: NaiveDate::from_ymd_opt(2026, 12, 1),
            model: Some("m".into()),
            reported: BTreeMap::from([("input_tokens".to_string(), Decimal::from(rep))]),
            metered: BTreeMap::from([("input_tokens".to_string(), Decimal::from(met))]),
            reported_cost: Some(Decimal::new(100, 2)),
            metered_cost: Decimal::new(100, 2),
            ..Default::default()
        };
        assert!(!ReconciliationView::of(row(1000, 1005), one).flagged, "0.5% is within 1%");
        let v = ReconciliationView::of(row(1000, 900), one);
        assert_eq!(v.flags, vec!["tokens:input_tokens".to_string()], "10% is flagged");
        assert_eq!(v.token_diff["input_tokens"], "-100", "absolute difference as a string");
        assert_eq!(v.token_diff_pct["input_tokens"].as_deref(), Some("-10"), "percent difference");
        assert!(ReconciliationView::of(row(0, 5), one).flagged, "usage on one side only is flagged");
        assert!(validate_base_url("ftp://x").is_err() && validate_base_url("http://127.0.0.1:9/").is_ok(), "urls");
        assert!(validate_name("a b").is_err() && validate_name("anthropic-prod").is_ok(), "names");
    }
}
