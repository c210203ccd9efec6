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

/// Exact sum of a NUMERIC column.
const SUM_DECIMAL: &str = "SUM";

/// The `n`th bind placeholder of a raw query (1-based).
fn placeholder(n: usize) -> String {
    format!("${n}")
}

/// Rollup rows per upsert statement (13 binds each, well under PostgreSQL's 65,535).
const ROLLUP_ROWS: usize = 1_000;

/// Add `deltas` to the rollup rows, inside the caller's transaction: one upsert that adds
/// in SQL (NUMERIC, exact), atomic per row against other nodes' writers. Rows go in key
/// order, so two writers never wait on each other's rows in opposite orders.
pub(crate) fn add_rollup_deltas(conn: &mut Conn, deltas: &super::RollupDeltas) -> Result<(), StoreError> {
    use crate::rows::RollupRow;
    use crate::schema::usage_rollups::dsl as r;
    use diesel::upsert::excluded;
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
    for chunk in rows.chunks(ROLLUP_ROWS) {
        diesel::insert_into(r::usage_rollups)
            .values(chunk)
            .on_conflict((r::grain, r::span, r::month, r::user_id, r::model_id, r::key_id, r::task, r::kind, r::day))
            .do_update()
            .set((
                r::requests.eq(r::requests + excluded(r::requests)),
                r::failed.eq(r::failed + excluded(r::failed)),
                // NUMERIC + NUMERIC: exact (diesel has no `+` for the custom decimal type).
                r::quantity.eq(diesel::dsl::sql::<crate::sql_types::ExactDecimal>(
                    "usage_rollups.quantity + excluded.quantity",
                )),
                r::amount
                    .eq(diesel::dsl::sql::<crate::sql_types::ExactDecimal>("usage_rollups.amount + excluded.amount")),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Hold off other nodes' rollup writes while the rollups are rebuilt: an event committed
/// before the lock is read by the rebuild, one committed after adds its own rows on top.
pub(crate) fn lock_rollups(conn: &mut Conn) -> Result<(), StoreError> {
    diesel::sql_query("LOCK TABLE usage_rollups IN EXCLUSIVE MODE").execute(conn)?;
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

/// Created by the first archive (the function is the migration's): an event whose id was
/// archived is a duplicate. Creating it locks `api_events` against inserts until the first
/// archive's transaction commits; later archives find it and take no lock.
const SKIP_ARCHIVED_TRIGGER: &str = "DO $$ BEGIN \
     IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'api_events_skip_archived') THEN \
     CREATE TRIGGER api_events_skip_archived BEFORE INSERT ON api_events \
     FOR EACH ROW EXECUTE FUNCTION api_events_skip_archived(); \
     END IF; END $$";

/// Archive queries (month rows, archive state, moving rows out and back) for this backend.
pub(crate) mod archive {
    include!("archive_queries.rs");
}
