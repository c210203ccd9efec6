//! Provider import records: connections (admin keys encrypted by the caller), import runs,
//! what each imported bucket became, provider-reported costs, revisions and reconciliation.
//!
//! The store never sees an admin key in clear: the web crate encrypts it and hands over
//! ciphertext, nonce and a 4-character hint. Imported usage is ordinary usage (`api_events`
//! with `source = provider_import`); `imported_buckets` maps each provider bucket x group
//! (its deterministic id) to the event currently standing for it, so a re-import or an
//! overlapping backfill never bills twice and a revised bucket replaces its event exactly.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::records::UsageRecord;
use crate::store::{run, Store};

/// `api_events.source` of imported provider usage.
pub const PROVIDER_IMPORT_SOURCE: &str = "provider_import";

/// A stored connection to a provider's organization reports.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Id (UUIDv7).
    pub connection_id: Uuid,
    /// `anthropic` or `openai`.
    pub provider: String,
    /// Unique name.
    pub name: String,
    /// Base URL of the provider's API.
    pub base_url: String,
    /// The admin key, AES-256-GCM encrypted.
    pub key_ciphertext: Vec<u8>,
    /// The 96-bit nonce it was encrypted with.
    pub key_nonce: Vec<u8>,
    /// The key's last 4 characters (for the masked display).
    pub key_hint: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// When the last run finished.
    pub last_run_at: Option<DateTime<Utc>>,
    /// Status of the last run (`success`, `failed`).
    pub last_status: Option<String>,
    /// Error of the last run, if it failed.
    pub last_error: Option<String>,
    /// Whether scheduled runs include it.
    pub enabled: bool,
}

impl std::fmt::Debug for ConnectionRecord {
    // The ciphertext is not secret, but there is no reason to print it either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecord")
            .field("connection_id", &self.connection_id)
            .field("provider", &self.provider)
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("key_hint", &self.key_hint)
            .field("last_status", &self.last_status)
            .finish_non_exhaustive()
    }
}

/// One import run, as started and then finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRunRecord {
    /// Id (UUIDv7).
    pub run_id: Uuid,
    /// The connection it ran for.
    pub connection_id: Uuid,
    /// `schedule`, `manual` or `backfill`.
    pub trigger: String,
    /// Range asked for: from (inclusive).
    pub range_from: DateTime<Utc>,
    /// Range asked for: to (exclusive).
    pub range_to: DateTime<Utc>,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished (None while running).
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `success` or `failed`.
    pub status: String,
    /// Pages read from the provider.
    pub pages: i64,
    /// Usage buckets x groups read.
    pub buckets: i64,
    /// Events newly billed.
    pub events_new: i64,
    /// Events replaced by a revised bucket.
    pub events_revised: i64,
    /// Buckets already imported with the same content.
    pub events_unchanged: i64,
    /// Revisions refused (the earlier event was invoiced) plus buckets Tally could not price
    /// (unknown model, no price), each named in `error`.
    pub skipped: i64,
    /// Provider cost items stored.
    pub costs: i64,
    /// Why it failed, or what it skipped.
    pub error: Option<String>,
}

/// A cost as the provider reported it (one day, one natural key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCostRecord {
    /// The connection it was imported through.
    pub connection_id: Uuid,
    /// Day start (UTC).
    pub starting_at: DateTime<Utc>,
    /// Day end (exclusive).
    pub ending_at: DateTime<Utc>,
    /// Model, when the provider (or Tally from the description) could tell.
    pub model: Option<String>,
    /// Line description (Anthropic) or line item (OpenAI).
    pub description: Option<String>,
    /// Workspace or project.
    pub workspace_id: Option<String>,
    /// Amount in dollars, exact.
    pub amount: Decimal,
    /// Currency as reported (`USD`, `usd`).
    pub currency: String,
    /// When it was (last) imported.
    pub imported_at: DateTime<Utc>,
}

/// What one provider bucket x group became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedBucket {
    /// The bucket's deterministic id (provider, bucket start, group).
    pub event_id: Uuid,
    /// Connection that (last) imported it.
    pub connection_id: Uuid,
    /// Bucket start.
    pub starting_at: DateTime<Utc>,
    /// The group's text (provider, model, key, workspace, tier).
    pub group_key: String,
    /// Hash of the content its current event was made from.
    pub content_hash: String,
    /// 0 for the first import, +1 per applied revision.
    pub revision: i64,
    /// The usage event currently standing for it.
    pub current_event_id: Uuid,
    /// When it was (last) imported.
    pub imported_at: DateTime<Utc>,
}

/// A revised bucket: replace its current event by `usage` (a new event id), exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRevision {
    /// The run that found it.
    pub run_id: Option<Uuid>,
    /// The bucket's new state (`revision`, `current_event_id` = `usage.event_id`, new hash).
    pub bucket: ImportedBucket,
    /// The new event, priced.
    pub usage: UsageRecord,
    /// The earlier quantities by kind, as JSON (audit).
    pub old_quantities: String,
    /// The new quantities by kind, as JSON (audit).
    pub new_quantities: String,
}

/// What became of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionOutcome {
    /// The earlier event was removed (lines, event, rollups) and the new one written.
    Applied,
    /// The earlier event is already invoiced and was kept; the refusal is in the audit trail.
    Refused(String),
    /// The stored bucket already has this content (a concurrent run applied it).
    Unchanged,
}

/// One audit row of `import_revisions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    /// Id.
    pub revision_id: Uuid,
    /// Run that found it.
    pub run_id: Option<Uuid>,
    /// The bucket's deterministic id.
    pub bucket_event_id: Uuid,
    /// The event replaced (or kept, when refused).
    pub old_event_id: Uuid,
    /// The event written (or that would have been).
    pub new_event_id: Uuid,
    /// Revision number of the new event.
    pub revision: i64,
    /// Bucket start.
    pub starting_at: DateTime<Utc>,
    /// The group's text.
    pub group_key: String,
    /// Content hash before.
    pub old_hash: String,
    /// Content hash after.
    pub new_hash: String,
    /// Quantities before (JSON).
    pub old_quantities: String,
    /// Quantities after (JSON).
    pub new_quantities: String,
    /// `applied` or `refused`.
    pub status: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// One reconciliation row: a UTC day and a model of one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRow {
    /// UTC day.
    pub day: Option<NaiveDate>,
    /// Model (None: provider costs Tally could not attribute to a model).
    pub model: Option<String>,
    /// Provider-reported quantities by kind (the imported events' lines).
    pub reported: BTreeMap<String, Decimal>,
    /// Imported events (bucket x group) behind `reported`.
    pub reported_events: i64,
    /// Provider-reported cost in dollars (None when the provider reported none).
    pub reported_cost: Option<Decimal>,
    /// Tally's price for the reported usage (the imported events' cost).
    pub tally_priced_cost: Decimal,
    /// Tally-metered quantities by kind (every other source: chat, gateway, ingest...).
    pub metered: BTreeMap<String, Decimal>,
    /// Tally-metered events.
    pub metered_events: i64,
    /// Tally-metered cost.
    pub metered_cost: Decimal,
}

impl Store {
    /// Insert a connection; a taken name is a `Conflict`.
    pub fn create_connection(&self, c: &ConnectionRecord) -> Result<ConnectionRecord, StoreError> {
        run!(self, write, providers::create_connection(c))
    }

    /// One connection.
    pub fn get_connection(&self, connection_id: Uuid) -> Result<Option<ConnectionRecord>, StoreError> {
        run!(self, read, providers::get_connection(connection_id))
    }

    /// Every connection, oldest first.
    pub fn list_connections(&self) -> Result<Vec<ConnectionRecord>, StoreError> {
        run!(self, read, providers::list_connections())
    }

    /// Delete a connection with its runs and costs (imported usage and the bucket map stay:
    /// the usage was billed). `NotFound` for an unknown id.
    pub fn delete_connection(&self, connection_id: Uuid) -> Result<ConnectionRecord, StoreError> {
        run!(self, write, providers::delete_connection(connection_id))
    }

    /// Replace the encrypted keys of several connections in ONE transaction (key rotation):
    /// `(connection id, ciphertext, nonce)`. An unknown id is `NotFound` and nothing changes.
    pub fn replace_connection_keys(&self, keys: &[(Uuid, Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        run!(self, write, providers::replace_connection_keys(keys))
    }

    /// Record a run as started.
    pub fn insert_import_run(&self, r: &ImportRunRecord) -> Result<(), StoreError> {
        run!(self, write, providers::insert_run(r))
    }

    /// Record a run's outcome and set its connection's last run, status and error.
    pub fn finish_import_run(&self, r: &ImportRunRecord) -> Result<(), StoreError> {
        run!(self, write, providers::finish_run(r))
    }

    /// A connection's runs, newest first.
    pub fn list_import_runs(&self, connection_id: Uuid, limit: i64) -> Result<Vec<ImportRunRecord>, StoreError> {
        run!(self, read, providers::list_runs(connection_id, limit))
    }

    /// The stored state of the given buckets (by their deterministic ids).
    pub fn imported_buckets(&self, event_ids: &[Uuid]) -> Result<Vec<ImportedBucket>, StoreError> {
        run!(self, read, providers::imported_buckets(event_ids))
    }

    /// Record newly imported buckets (ones already recorded are kept as they are).
    pub fn record_imported_buckets(&self, buckets: &[ImportedBucket]) -> Result<(), StoreError> {
        run!(self, write, providers::record_imported_buckets(buckets))
    }

    /// Insert or replace provider costs by natural key, in ONE transaction.
    pub fn upsert_provider_costs(&self, costs: &[ProviderCostRecord]) -> Result<usize, StoreError> {
        run!(self, write, providers::upsert_costs(costs))
    }

    /// Provider costs of a connection starting in `[from, to)`, by day then key.
    pub fn provider_costs(
        &self,
        connection_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ProviderCostRecord>, StoreError> {
        run!(self, read, providers::costs(connection_id, from, to))
    }

    /// Replace a bucket's current event by a revised one, in ONE transaction: remove the old
    /// event's lines and row and subtract it from the rollups, write the new event through the
    /// persister's batch path, move the bucket to the new revision and record the audit row.
    /// An invoiced old event is kept: the refusal is recorded and `Refused` returned.
    pub fn revise_imported_bucket(&self, revision: &BucketRevision) -> Result<RevisionOutcome, StoreError> {
        run!(self, write, providers::revise_bucket(revision))
    }

    /// Audit rows of a bucket (or all), oldest first.
    pub fn import_revisions(&self, bucket_event_id: Option<Uuid>) -> Result<Vec<RevisionRecord>, StoreError> {
        run!(self, read, providers::revisions(bucket_event_id))
    }

    /// Per UTC day and model of `provider`'s models, events in `[from, to)`: reported (imported)
    /// quantities and Tally's price for them, provider-reported cost, and what Tally metered
    /// from every other source. Ordered by day, then model (None last).
    pub fn reconciliation(
        &self,
        provider: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ReconciliationRow>, StoreError> {
        run!(self, read, providers::reconciliation(provider, from, to))
    }
}
