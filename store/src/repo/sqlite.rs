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

/// Exact sum of a TEXT decimal column ([`register_functions`]).
const SUM_DECIMAL: &str = "tally_dec_sum";

/// The `n`th bind placeholder of a raw query.
fn placeholder(_n: usize) -> String {
    "?".to_string()
}

/// Rollup rows per upsert statement (13 binds each, under SQLite's 32,766).
const ROLLUP_ROWS: usize = 256;

#[diesel::declare_sql_function]
extern "SQL" {
    /// `a + b` of two exact decimals stored as TEXT (registered on every connection by
    /// [`register_functions`]): SQLite's own `+` would add them as floats.
    fn tally_dec_add(a: diesel::sql_types::Text, b: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

#[diesel::declare_sql_function]
extern "SQL" {
    /// The exact sum of TEXT decimals (an aggregate, registered by [`register_functions`]).
    #[aggregate]
    fn tally_dec_sum(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// State of `tally_dec_sum`: the running sum, or the first value that was not a decimal.
#[derive(Debug, Default)]
struct DecSum {
    sum: Decimal,
    bad: Option<String>,
}

impl diesel::sqlite::SqliteAggregateFunction<String> for DecSum {
    type Output = String;

    fn step(&mut self, x: String) {
        match x.parse::<Decimal>() {
            Ok(v) if self.bad.is_none() => self.sum += v,
            Ok(_) => {}
            Err(_) => self.bad = Some(x),
        }
    }

    fn finalize(agg: Option<Self>) -> String {
        match agg {
            None => Decimal::ZERO.to_string(),
            Some(DecSum { bad: Some(x), .. }) => format!("invalid decimal {x:?} in a sum"),
            Some(DecSum { sum, .. }) => sum.to_string(),
        }
    }
}

/// Register Tally's SQL functions on a new connection.
pub(crate) fn register_functions(conn: &mut Conn) -> Result<(), diesel::result::Error> {
    tally_dec_sum_utils::register_impl::<DecSum, _>(conn)?;
    tally_dec_add_utils::register_impl(conn, |a: String, b: String| -> String {
        match (a.parse::<Decimal>(), b.parse::<Decimal>()) {
            (Ok(a), Ok(b)) => (a + b).to_string(),
            // Never stored by Tally; the result then fails to parse on read, loudly.
            _ => format!("invalid decimal sum of {a:?} and {b:?}"),
        }
    })
}

/// Add `deltas` to the rollup rows, inside the caller's write transaction: multi-row upserts
/// whose money adds exactly through `tally_dec_add` (money is TEXT here). The write
/// transaction holds SQLite's one write lock, so no other writer interleaves.
pub(crate) fn add_rollup_deltas(conn: &mut Conn, deltas: &super::RollupDeltas) -> Result<(), StoreError> {
    use crate::rows::RollupRow;
    let rows: Vec<RollupRow> = deltas
        .iter()
        .map(|(k, d)| RollupRow {
            grain: k.grain.to_string(),
            span: k.span,
            month: k.month,
            day: k.day,
            user_id: k.user_id.clone(),
            model_id: k.model_id,
            key_id: k.key_id.clone(),
            task: k.task.clone(),
            kind: k.kind.clone(),
            requests: d.requests,
            failed: d.failed,
            quantity: DbDecimal(d.quantity),
            amount: DbDecimal(d.amount),
        })
        .collect();
    // SQLite's multi-row upsert: one statement per chunk, binds in order (diesel's DSL has
    // no batch upsert for SQLite). The statement text repeats, so SQLite parses it quickly.
    use diesel::sql_types::{BigInt, Text};
    for chunk in rows.chunks(ROLLUP_ROWS) {
        let mut sql = String::from(
            "INSERT INTO usage_rollups (grain, span, month, day, user_id, model_id, key_id, task, kind, requests, failed, quantity, amount) VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(?,?,?,?,?,?,?,?,?,?,?,?,?)" } else { ",(?,?,?,?,?,?,?,?,?,?,?,?,?)" });
        }
        sql.push_str(
            " ON CONFLICT (grain, span, month, user_id, model_id, key_id, task, kind, day) DO UPDATE SET \
             requests = usage_rollups.requests + excluded.requests, \
             failed = usage_rollups.failed + excluded.failed, \
             quantity = tally_dec_add(usage_rollups.quantity, excluded.quantity), \
             amount = tally_dec_add(usage_rollups.amount, excluded.amount)",
        );
        let mut q = diesel::sql_query(sql).into_boxed::<diesel::sqlite::Sqlite>();
        for row in chunk {
            q = q
                .bind::<Text, _>(row.grain.clone())
                .bind::<Text, _>(row.span)
                .bind::<crate::sql_types::UtcInstant, _>(row.month)
                .bind::<crate::sql_types::UtcInstant, _>(row.day)
                .bind::<Text, _>(row.user_id.clone())
                .bind::<BigInt, _>(row.model_id)
                .bind::<Text, _>(row.key_id.clone())
                .bind::<Text, _>(row.task.clone())
                .bind::<Text, _>(row.kind.clone())
                .bind::<BigInt, _>(row.requests)
                .bind::<BigInt, _>(row.failed)
                .bind::<crate::sql_types::ExactDecimal, _>(row.quantity)
                .bind::<crate::sql_types::ExactDecimal, _>(row.amount);
        }
        q.execute(conn)?;
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

/// Provider import queries (connections, runs, buckets, costs, revisions) for this backend.
pub(crate) mod providers {
    include!("providers_queries.rs");
}

/// Admin-token queries for this backend.
pub(crate) mod admin {
    include!("admin_queries.rs");
}

/// Created by the first archive: an event whose id was archived is a duplicate. RAISE(IGNORE)
/// drops just this row, and RETURNING does not report it, so the batch counts it a duplicate.
const SKIP_ARCHIVED_TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS api_events_skip_archived BEFORE INSERT ON api_events \
     WHEN EXISTS (SELECT 1 FROM archived_events WHERE event_id = NEW.event_id) \
     BEGIN SELECT RAISE(IGNORE); END";

/// Archive queries (month rows, archive state, moving rows out and back) for this backend.
pub(crate) mod archive {
    include!("archive_queries.rs");
}
