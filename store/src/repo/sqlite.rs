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

/// Run the persister's batch `f` in a write transaction without foreign-key enforcement,
/// then turn enforcement back on (SQLite ignores the pragma inside a transaction).
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
