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

include!("queries.rs");
