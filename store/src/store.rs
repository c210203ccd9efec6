//! The `Store`: one synchronous repository API over SQLite and PostgreSQL.
//!
//! Every call takes a pooled connection, runs one backend's copy of the query
//! (see `repo`), and gives the connection back. Calls block: run them off the
//! async event loop (`web::block`, `spawn_blocking`, a `SyncArbiter`).

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tally_domain::{Catalog, Invoice, InvoiceLine, InvoiceStatus, PriceBook, PriceVersion, UsageKind};
use uuid::Uuid;

use crate::error::StoreError;
use crate::gateway::{BudgetRecord, BudgetScope, GatewayCallCost, KeyPatch, KeyRecord};
use crate::pool::{self, Db, SqliteWriter};
use crate::records::{
    Backend, BatchOutcome, LineFilter, ModelRecord, SeedReport, StoredMessage, ThreadRecord, UsageRecord, UserRecord,
    WriteOp,
};
use crate::repo;

/// Handle to the database. Cheap to clone (the pool is shared); `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Take the SQLite writer lock. A poisoned lock only means an earlier writer
/// panicked: a pooled connection's transaction was rolled back when the pool dropped
/// it, and the batch connection, which it may have left inside a transaction, is
/// forgotten and opened afresh by the next batch.
pub(crate) fn lock_writer(writer: &Mutex<SqliteWriter>) -> MutexGuard<'_, SqliteWriter> {
    writer.lock().unwrap_or_else(|poisoned| {
        let mut guard = poisoned.into_inner();
        guard.reset();
        writer.clear_poison();
        guard
    })
}

/// Run `repo::<backend>::$f(conn, args..)` on a pooled connection. `write` calls
/// on SQLite first take the writer lock, so writers queue here instead of
/// failing with "database is locked".
macro_rules! run {
    ($self:ident, read, $($f:ident)::+ ($($arg:expr),* $(,)?)) => {
        match &$self.db {
            $crate::pool::Db::Sqlite { pool, .. } => {
                let mut conn = pool.get()?;
                $crate::repo::sqlite::$($f)::+(&mut conn, $($arg),*)
            }
            $crate::pool::Db::Postgres { pool } => {
                let mut conn = pool.get()?;
                $crate::repo::postgres::$($f)::+(&mut conn, $($arg),*)
            }
        }
    };
    ($self:ident, write, $($f:ident)::+ ($($arg:expr),* $(,)?)) => {
        match &$self.db {
            $crate::pool::Db::Sqlite { pool, writer } => {
                let _writer = $crate::store::lock_writer(writer);
                let mut conn = pool.get()?;
                $crate::repo::sqlite::$($f)::+(&mut conn, $($arg),*)
            }
            $crate::pool::Db::Postgres { pool } => {
                let mut conn = pool.get()?;
                $crate::repo::postgres::$($f)::+(&mut conn, $($arg),*)
            }
        }
    };
}

/// `run!` for the other files that add methods to [`Store`] (`analytics.rs`, `alerts.rs`, ...).
pub(crate) use run;

impl Store {
    /// Open the database at `url` and apply pending migrations.
    ///
    /// `url`: `sqlite://PATH`, `sqlite::memory:` or a bare path -> SQLite (parent
    /// directories created, WAL, busy timeout, foreign keys on, writers serialized);
    /// `postgres://...` -> PostgreSQL.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        let store = Store { db: pool::open(url)? };
        store.ensure_rollups()?;
        Ok(store)
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres { .. } => Backend::Postgres,
        }
    }

    /// One round trip to the database (health checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        run!(self, read, ping())
    }

    /// Idempotent: models, event types and price versions from the catalogue.
    ///
    /// A version for the same model, kind and `effective_from` is skipped; a version
    /// starting after the stored current one is added by the normal SCD2 close and
    /// insert; one starting before it is skipped with a warning. Returns counts inserted.
    pub fn seed(&self, catalog: &Catalog) -> Result<SeedReport, StoreError> {
        run!(self, write, seed(catalog))
    }

    /// Rows per table (diagnostics, tests).
    pub fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, StoreError> {
        run!(self, read, row_counts())
    }

    /// Whether the next write other than the persister's batch would run with foreign keys
    /// enforced (diagnostics, tests): always on PostgreSQL; on SQLite, pooled connections
    /// always enforce (the batch runs on a connection of its own that does not, or, for
    /// `:memory:`, turns enforcement off for its own transaction only).
    pub fn foreign_keys_enforced(&self) -> Result<bool, StoreError> {
        run!(self, write, foreign_keys_enforced())
    }

    /// Insert a user; `Conflict` when the id is taken. Returns it as stored (time to the microsecond).
    pub fn create_user(&self, user: &UserRecord) -> Result<UserRecord, StoreError> {
        run!(self, write, create_user(user))
    }

    /// One user.
    pub fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        run!(self, read, get_user(user_id))
    }

    /// Users, oldest first.
    pub fn list_users(&self, limit: i64, offset: i64) -> Result<Vec<UserRecord>, StoreError> {
        run!(self, read, list_users(limit, offset))
    }

    /// Insert the user with `username = user_id` if missing (usage from external sources).
    pub fn ensure_user(&self, user_id: &str) -> Result<(), StoreError> {
        run!(self, write, ensure_user(user_id))
    }

    /// All models, by name.
    pub fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError> {
        run!(self, read, list_models())
    }

    /// One model by name.
    pub fn get_model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError> {
        run!(self, read, get_model(name))
    }

    /// All price versions (token and resource) as a validated price book.
    pub fn load_price_book(&self) -> Result<PriceBook, StoreError> {
        run!(self, read, load_price_book())
    }

    /// Add a price version in one transaction: load the price's history, plan with
    /// the domain, close the current version, insert the new one.
    ///
    /// Unknown model, or resource kind without an event type -> `NotFound`; a
    /// refused plan (rewrites history, negative price) -> `Domain`. Nothing changes
    /// on error. `effective_from` is stored to the microsecond. Returns (closed, new).
    pub fn add_price_version(
        &self,
        model: &str,
        kind: &UsageKind,
        price: Decimal,
        effective_from: DateTime<Utc>,
    ) -> Result<(Option<PriceVersion>, PriceVersion), StoreError> {
        run!(self, write, add_price_version(model, kind, price, effective_from))
    }

    /// The versions of one price, oldest first. Unknown model -> `NotFound`.
    pub fn price_history(&self, model: &str, kind: &UsageKind) -> Result<Vec<PriceVersion>, StoreError> {
        run!(self, read, price_history(model, kind))
    }

    /// Insert a thread. Its user and model must exist (`NotFound`); a taken id is a `Conflict`.
    pub fn create_thread(&self, t: &ThreadRecord) -> Result<(), StoreError> {
        run!(self, write, create_thread(t))
    }

    /// One thread.
    pub fn get_thread(&self, thread_id: Uuid) -> Result<Option<ThreadRecord>, StoreError> {
        run!(self, read, get_thread(thread_id))
    }

    /// Threads (of one user, or all), most recently updated first.
    pub fn list_threads(
        &self,
        user_id: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<ThreadRecord>, StoreError> {
        run!(self, read, list_threads(user_id, limit, offset))
    }

    /// The persister's write: the whole batch in ONE transaction, idempotent.
    ///
    /// A message or usage event id already stored (or repeated in the batch) is
    /// skipped and reported as a duplicate. Usage rows go to `api_events`, token
    /// lines (with their counts, read back through the `message_tokens` view) to
    /// `user_invoice_line_item`, resource lines to `resource_invoice_line_item`,
    /// each with its `CostLine::price_version_id` and its event's `event_seq`.
    /// Missing users are created; an unknown model, event type or thread (of a
    /// message) is `Invalid` and nothing is written. Threads' `updated_at` moves
    /// forward to their newest message or usage.
    pub fn write_batch(&self, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
        match &self.db {
            Db::Sqlite { pool, writer } => lock_writer(writer).write_batch(pool, ops),
            Db::Postgres { pool } => {
                let mut conn = pool.get()?;
                repo::postgres::write_batch(&mut conn, ops)
            }
        }
    }

    /// A thread's messages, oldest first, each with the cost of the usage events
    /// that carry its message id.
    pub fn thread_messages(&self, thread_id: Uuid) -> Result<Vec<StoredMessage>, StoreError> {
        run!(self, read, thread_messages(thread_id))
    }

    /// Token and resource lines matching `filter`, ordered by `occurred_at` then kind.
    pub fn usage_lines(&self, filter: &LineFilter) -> Result<Vec<InvoiceLine>, StoreError> {
        run!(self, read, usage_lines(filter))
    }

    /// Usage events matching `filter`, newest first, at most `limit`, with cost lines.
    pub fn usage_events(&self, filter: &LineFilter, limit: i64) -> Result<Vec<UsageRecord>, StoreError> {
        run!(self, read, usage_events(filter, limit))
    }

    /// Insert the invoice and set `invoice_id` on exactly its lines, in ONE transaction.
    ///
    /// A line already invoiced (or an invoice id already used) -> `Conflict`; a line
    /// that does not exist -> `NotFound`; a line of another user -> `Invalid`.
    /// Nothing changes on error.
    pub fn create_invoice(&self, invoice: &Invoice) -> Result<(), StoreError> {
        run!(self, write, create_invoice(invoice))
    }

    /// One invoice with its lines (ordered by `occurred_at` then kind).
    pub fn get_invoice(&self, invoice_id: Uuid) -> Result<Option<Invoice>, StoreError> {
        run!(self, read, get_invoice(invoice_id))
    }

    /// A user's invoices, newest first, with their lines.
    pub fn list_invoices(&self, user_id: &str) -> Result<Vec<Invoice>, StoreError> {
        run!(self, read, list_invoices(user_id))
    }

    /// Set an invoice's status; `NotFound` when it does not exist. Returns the updated invoice.
    pub fn set_invoice_status(&self, invoice_id: Uuid, status: InvoiceStatus) -> Result<Invoice, StoreError> {
        run!(self, write, set_invoice_status(invoice_id, status))
    }

    // ------------------------------------------------------------ gateway

    /// Insert a virtual key. Unknown user: `NotFound`; a taken public id: `Conflict`.
    pub fn create_key(&self, key: &KeyRecord) -> Result<KeyRecord, StoreError> {
        run!(self, write, gateway::create_key(key))
    }

    /// One key by id.
    pub fn get_key(&self, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        run!(self, read, gateway::get_key(key_id))
    }

    /// One key by its public id (what the gateway reads from the presented key).
    pub fn key_by_public_id(&self, public_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        run!(self, read, gateway::key_by_public_id(public_id))
    }

    /// Keys of a user (or all keys), oldest first.
    pub fn list_keys(&self, user_id: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        run!(self, read, gateway::list_keys(user_id))
    }

    /// Change a key's name, models, expiry or rate limit. Unknown key: `NotFound`.
    pub fn update_key(&self, key_id: Uuid, patch: &KeyPatch) -> Result<KeyRecord, StoreError> {
        run!(self, write, gateway::update_key(key_id, patch))
    }

    /// Revoke a key (idempotent). Unknown key: `NotFound`.
    pub fn revoke_key(&self, key_id: Uuid, at: DateTime<Utc>) -> Result<KeyRecord, StoreError> {
        run!(self, write, gateway::revoke_key(key_id, at))
    }

    /// Replace a live key's secret hash. Revoked: `Conflict`; unknown: `NotFound`.
    pub fn rotate_key(&self, key_id: Uuid, secret_hash: &str) -> Result<KeyRecord, StoreError> {
        run!(self, write, gateway::rotate_key(key_id, secret_hash))
    }

    /// Insert or update the budget of its `(scope, period)`; returns it as stored.
    pub fn upsert_budget(&self, budget: &BudgetRecord) -> Result<BudgetRecord, StoreError> {
        run!(self, write, gateway::upsert_budget(budget))
    }

    /// Budgets of the given scopes.
    pub fn budgets_for(&self, scopes: &[BudgetScope]) -> Result<Vec<BudgetRecord>, StoreError> {
        run!(self, read, gateway::budgets_for(scopes))
    }

    /// One budget.
    pub fn get_budget(&self, budget_id: Uuid) -> Result<Option<BudgetRecord>, StoreError> {
        run!(self, read, gateway::get_budget(budget_id))
    }

    /// Delete the budget of `(scope, period)`; `NotFound` when there is none.
    pub fn delete_budget(&self, scope: &BudgetScope, period: &str) -> Result<BudgetRecord, StoreError> {
        run!(self, write, gateway::delete_budget(scope, period))
    }

    /// Gateway calls of a scope in `[from, to)`, each with its exact cost.
    pub fn gateway_costs(
        &self,
        scope: &BudgetScope,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<GatewayCallCost>, StoreError> {
        run!(self, read, gateway::gateway_costs(scope, from, to))
    }

    /// Exact gateway spend of a scope in `[from, to)` (the budgets' source of truth).
    pub fn gateway_spend(&self, scope: &BudgetScope, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Decimal, StoreError> {
        run!(self, read, gateway::gateway_spend(scope, from, to))
    }

    /// Durably mark a budget window's alert as sent; false when it already was.
    pub fn mark_alert_sent(
        &self,
        budget_id: Uuid,
        window_start: DateTime<Utc>,
        spent: Decimal,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        run!(self, write, gateway::mark_alert_sent(budget_id, window_start, spent, at))
    }

    /// `(event id, key id)` of every gateway call (the live dashboard's per-key totals at start-up).
    pub fn gateway_event_keys(&self) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        run!(self, read, gateway::gateway_event_keys())
    }

    /// Whether a budget window's alert was sent.
    pub fn alert_sent(&self, budget_id: Uuid, window_start: DateTime<Utc>) -> Result<bool, StoreError> {
        run!(self, read, gateway::alert_sent(budget_id, window_start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn store_is_send_sync_and_clone() {
        assert_send_sync::<Store>();
    }

    #[test]
    fn memory_store_opens_and_pings() {
        let store = Store::open("sqlite::memory:");
        assert!(store.is_ok(), "in-memory SQLite opens: {:?}", store.err());
        if let Ok(store) = store {
            assert_eq!(store.backend(), Backend::Sqlite, "memory URL is SQLite");
            assert!(store.ping().is_ok(), "ping works");
        }
    }
}
