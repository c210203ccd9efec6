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

include!("queries.rs");

/// Gateway queries (keys, budgets, calls) for this backend.
pub(crate) mod gateway {
    include!("gateway_queries.rs");
}
