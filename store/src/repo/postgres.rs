//! PostgreSQL copy of the shared queries (`queries.rs`).

type Conn = diesel::pg::PgConnection;

/// Run `f` in a write transaction (READ COMMITTED; the writes guard themselves
/// against concurrent writers with ON CONFLICT and `is_current` conditions).
fn write_tx<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, crate::error::StoreError>,
) -> Result<T, crate::error::StoreError> {
    diesel::Connection::transaction(conn, f)
}

/// `INSERT` of `$values` into `$table` that skips rows whose key is already stored
/// (`ON CONFLICT DO NOTHING`).
macro_rules! insert_skipping_existing {
    ($table:expr, $values:expr) => {
        diesel::insert_into($table).values($values).on_conflict_do_nothing()
    };
}

/// The persister's batch: an ordinary write transaction (foreign keys stay enforced).
fn bulk_write_tx<T>(
    conn: &mut Conn,
    f: impl FnOnce(&mut Conn) -> Result<T, crate::error::StoreError>,
) -> Result<T, crate::error::StoreError> {
    write_tx(conn, f)
}

/// PostgreSQL always enforces foreign keys.
pub(crate) fn foreign_keys_enforced(_conn: &mut Conn) -> Result<bool, crate::error::StoreError> {
    Ok(true)
}

include!("queries.rs");

/// Gateway queries (keys, budgets, calls) for this backend.
pub(crate) mod gateway {
    include!("gateway_queries.rs");
}
