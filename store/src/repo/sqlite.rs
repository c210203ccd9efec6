//! SQLite copy of the shared queries (`queries.rs`).

type Conn = diesel::sqlite::SqliteConnection;

/// Run `f` in a write transaction. BEGIN IMMEDIATE takes the write lock up front,
/// so a transaction never has to upgrade a read lock mid-way (the upgrade is what
/// surfaces "database is locked" even with a busy timeout).
fn write_tx<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, crate::error::StoreError>,
) -> Result<T, crate::error::StoreError> {
    conn.immediate_transaction(f)
}

/// `INSERT` of `$values` into `$table` that skips rows whose key is already stored: SQLite's
/// `INSERT OR IGNORE`. Unlike `ON CONFLICT DO NOTHING`, diesel gives it a static query id, so
/// its prepared statement is found by type instead of by rebuilding and hashing its SQL (a
/// 256-row insert has thousands of placeholders), and with no constraint left to abort on
/// (foreign keys are off in the persister's batch) SQLite keeps no statement journal for it.
/// `OR IGNORE` would also skip a row breaking a NOT NULL or CHECK constraint; the rows it
/// gets are typed (non-optional fields, enum-made text), so none can.
macro_rules! insert_skipping_existing {
    ($table:expr, $values:expr) => {
        diesel::insert_or_ignore_into($table).values($values)
    };
}

/// Run the persister's batch `f` in a write transaction without foreign-key enforcement,
/// then turn enforcement back on (SQLite ignores the pragma inside a transaction). For
/// `:memory:`, whose one connection serves every call; a file database writes its batches
/// with [`write_batch_unenforced`] on a connection that never enforces.
///
/// The batch checks every reference before its first write (models, event types, price
/// versions, threads of messages), creates missing users in the same transaction, and
/// points lines at the events it has just inserted; SQLite's parent lookups for each row
/// only repeated that work, at ~10% of the writer's time (store/SCHEMA.md). Every other
/// write keeps enforcement, and so does PostgreSQL.
fn bulk_write_tx<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, crate::error::StoreError>,
) -> Result<T, crate::error::StoreError> {
    use diesel::connection::SimpleConnection;
    conn.batch_execute("PRAGMA foreign_keys = OFF")?;
    let result = conn.immediate_transaction(f);
    // Before anything else can use the connection, whether the batch committed or not.
    conn.batch_execute("PRAGMA foreign_keys = ON")?;
    result
}

/// The persister's batch, on a connection opened without foreign-key enforcement (the
/// store's batch connection, see `pool::SqliteWriter`): what [`bulk_write_tx`] does, without
/// the pragma switches, which would expire the connection's prepared statements.
pub(crate) fn write_batch_unenforced(conn: &mut Conn, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
    if ops.is_empty() {
        return Ok(BatchOutcome::default());
    }
    write_tx(conn, |conn| write_batch_tx(conn, ops))
}

/// Whether this connection enforces foreign keys.
pub(crate) fn foreign_keys_enforced(conn: &mut Conn) -> Result<bool, crate::error::StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Pragma {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        foreign_keys: i32,
    }
    let rows: Vec<Pragma> = diesel::sql_query("PRAGMA foreign_keys").load(conn)?;
    Ok(rows.first().is_some_and(|p| p.foreign_keys == 1))
}

/// Add `deltas` to the rollup rows, inside the caller's write transaction. Money is TEXT
/// here, so each row is read, added to in Rust (exactly) and written back; the write
/// transaction holds SQLite's one write lock, so no other writer interleaves.
pub(crate) fn add_rollup_deltas(conn: &mut Conn, deltas: &super::RollupDeltas) -> Result<(), StoreError> {
    use crate::rows::RollupRow;
    use crate::schema::usage_rollups::dsl as r;
    for (k, d) in deltas {
        let existing: Option<(i64, i64, DbDecimal, DbDecimal)> = r::usage_rollups
            .find((k.day, &k.user_id, k.model_id, &k.key_id, &k.task, &k.kind))
            .select((r::requests, r::failed, r::quantity, r::amount))
            .first(conn)
            .optional()?;
        let (requests, failed, quantity, amount) = existing
            .map(|(a, b, c, d)| (a, b, c.0, d.0))
            .unwrap_or((0, 0, Decimal::ZERO, Decimal::ZERO));
        let row = RollupRow {
            day: k.day,
            user_id: k.user_id.clone(),
            model_id: k.model_id,
            key_id: k.key_id.clone(),
            task: k.task.clone(),
            kind: k.kind.clone(),
            requests: requests + d.requests,
            failed: failed + d.failed,
            quantity: DbDecimal(quantity + d.quantity),
            amount: DbDecimal(amount + d.amount),
        };
        diesel::replace_into(r::usage_rollups).values(&row).execute(conn)?;
    }
    Ok(())
}

/// Rebuilding rollups needs no lock beyond the write transaction: SQLite has one writer.
pub(crate) fn lock_rollups(_conn: &mut Conn) -> Result<(), StoreError> {
    Ok(())
}

include!("queries.rs");

/// Gateway queries (keys, budgets, calls) for this backend.
pub(crate) mod gateway {
    include!("gateway_queries.rs");
}

/// Analytics queries (rollups, usage logs) for this backend.
pub(crate) mod analytics {
    include!("analytics_queries.rs");
}

/// Budget-alert queries (budgets, marks, deliveries) for this backend.
pub(crate) mod alerts {
    include!("alerts_queries.rs");
}

/// Forecast queries for this backend.
pub(crate) mod forecasts {
    include!("forecasts_queries.rs");
}

/// Operations queries (scheduler, price verification) for this backend.
pub(crate) mod ops {
    include!("ops_queries.rs");
}
