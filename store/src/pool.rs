//! Opening a database: URL parsing, connection pools, per-connection pragmas, migrations.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::StoreError;
use crate::records::{BatchOutcome, WriteOp};

/// SQLite migrations, compiled in.
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// PostgreSQL migrations, compiled in.
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Connections to one SQLite file: readers run in parallel under WAL; writers
/// are serialized by the store's writer lock, not by SQLite's busy handler.
const SQLITE_POOL_SIZE: u32 = 4;

/// How long SQLite waits on a lock held by another process before failing.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Page cache per SQLite connection, in KiB (allocated as used).
const SQLITE_CACHE_KIB: u32 = 32 * 1024;

/// WAL pages after which a committing connection checkpoints itself: a backstop that bounds
/// the WAL (64 MiB with 8 KiB pages) when the background checkpointer cannot catch up with
/// a steady stream of commits; what it already copied is not copied again.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 8192;

/// Size the WAL file is cut back to after a checkpoint rewound it.
const SQLITE_WAL_KEEP_BYTES: u64 = 64 * 1024 * 1024;

/// How often the WAL is checkpointed (see `start_checkpointer`).
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Page size of a new SQLite database file.
const SQLITE_PAGE_SIZE: u32 = 8192;

/// Connections to PostgreSQL per store.
const POSTGRES_POOL_SIZE: u32 = 8;

/// Connections kept open while idle.
const MIN_IDLE_CONNECTIONS: u32 = 1;

/// How long a call waits for a free connection before failing with a retryable error.
const POOL_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Key of the PostgreSQL advisory lock that serializes migrations across nodes.
const MIGRATION_LOCK_KEY: i64 = 0x7461_6c6c_795f_6d69; // "tally_mi"

/// The SQLite "file name" of a private in-memory database.
const SQLITE_MEMORY: &str = ":memory:";

/// Pool of SQLite connections.
pub(crate) type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

/// Pool of PostgreSQL connections.
pub(crate) type PgPool = Pool<ConnectionManager<PgConnection>>;

/// An open database.
#[derive(Clone)]
pub(crate) enum Db {
    /// SQLite with its writer lock (which holds the persister's batch connection).
    Sqlite { pool: SqlitePool, writer: Arc<Mutex<SqliteWriter>> },
    /// PostgreSQL.
    Postgres { pool: PgPool },
}

/// What a database URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    SqliteMemory,
    SqliteFile(PathBuf),
    Postgres(String),
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(StoreError::Invalid("database URL is empty".into()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_string()));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    if path == SQLITE_MEMORY {
        return Ok(Target::SqliteMemory);
    }
    if path.is_empty() {
        return Err(StoreError::Invalid(format!("database URL {url:?} has no path")));
    }
    Ok(Target::SqliteFile(PathBuf::from(path)))
}

/// Pragmas every SQLite connection gets when it opens; `foreign_keys` is ON for all but
/// the persister's batch connection ([`SqliteWriter`]).
fn sqlite_pragmas(foreign_keys: bool) -> String {
    // synchronous=FULL: a committed batch survives power loss, and with WAL it is
    // one fsync per transaction, which batching makes cheap. A large page cache
    // keeps a big batch from spilling to the WAL before it commits; statement
    // journals (multi-row inserts with ON CONFLICT) stay in memory.
    let foreign_keys = if foreign_keys { "ON" } else { "OFF" };
    format!(
        "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA foreign_keys = {foreign_keys}; PRAGMA synchronous = FULL; \
         PRAGMA cache_size = -{SQLITE_CACHE_KIB}; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}; PRAGMA journal_size_limit = {SQLITE_WAL_KEEP_BYTES};"
    )
}

/// Pragmas every pooled SQLite connection gets when the pool opens it.
#[derive(Debug, Clone, Copy)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(&sqlite_pragmas(true)).map_err(diesel::r2d2::Error::QueryError)?;
        crate::repo::sqlite::register_functions(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The SQLite writer lock, and the connection the persister's batches are written on.
///
/// The batch checks every reference itself (see `repo::sqlite::write_batch_unenforced`), so
/// its connection runs without foreign-key enforcement, for good: turning the pragma off and
/// on around each batch expired every prepared statement of the connection twice per batch
/// (SQLite re-prepares after any flag pragma), and re-preparing the 256-row inserts cost ~4%
/// of the writer's instructions. No other write runs on it; pooled connections enforce.
pub(crate) struct SqliteWriter {
    /// The database file; `None` for `:memory:`, whose one database is the pool's one connection.
    path: Option<String>,
    /// Opened by the first batch; dropped after a failed batch or a writer's panic, and
    /// opened afresh by the next batch.
    batch_conn: Option<SqliteConnection>,
}

impl SqliteWriter {
    /// Write the persister's batch: on the batch connection, or for `:memory:` on the pool's
    /// connection with enforcement turned off for the batch's transaction only.
    pub(crate) fn write_batch(&mut self, pool: &SqlitePool, ops: &[WriteOp]) -> Result<BatchOutcome, StoreError> {
        let Some(path) = &self.path else {
            let mut conn = pool.get()?;
            return crate::repo::sqlite::write_batch(&mut conn, ops);
        };
        let conn = match &mut self.batch_conn {
            Some(conn) => conn,
            None => {
                let mut conn = SqliteConnection::establish(path)?;
                conn.batch_execute(&sqlite_pragmas(false))?;
                crate::repo::sqlite::register_functions(&mut conn)?;
                self.batch_conn.insert(conn)
            }
        };
        let result = crate::repo::sqlite::write_batch_unenforced(conn, ops);
        if let Err(StoreError::Database(_) | StoreError::Pool(_)) = &result {
            // Whatever state a failed statement left the connection in, the next batch starts clean.
            self.batch_conn = None;
        }
        result
    }

    /// Forget the batch connection (after a writer panicked, maybe inside its transaction).
    pub(crate) fn reset(&mut self) {
        self.batch_conn = None;
    }
}

/// Open (creating if needed) and migrate the database at `url`.
pub(crate) fn open(url: &str) -> Result<Db, StoreError> {
    match parse_url(url)? {
        Target::SqliteMemory => open_sqlite(SQLITE_MEMORY, true),
        Target::SqliteFile(path) => {
            create_parent_dir(&path)?;
            let path = path.to_str().ok_or_else(|| StoreError::Invalid(format!("path {path:?} is not UTF-8")))?;
            open_sqlite(path, false)
        }
        Target::Postgres(url) => open_postgres(&url),
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))),
        _ => Ok(()),
    }
}

/// Process-wide SQLite settings, applied once before the first connection opens (SQLite only
/// takes them before it initializes; later calls return `SQLITE_MISUSE` and change nothing):
///
/// - multi-thread mode: no mutex around each call on a connection or statement. Safe here:
///   the pool hands a connection to one thread at a time, and statements belong to their
///   connection. The bundled build's default (serialized) locked a mutex for every bind.
/// - no memory statistics: with them SQLite takes a global mutex on every allocation.
///
/// Together ~5% of the persister's write time (perf, bench/ingest.sh). If something opened a
/// SQLite connection first, SQLite keeps its defaults: correct, only slower (logged).
fn configure_sqlite() {
    static CONFIGURE: std::sync::Once = std::sync::Once::new();
    CONFIGURE.call_once(|| {
        // SAFETY: `sqlite3_config` is variadic; each option takes the arguments SQLite documents
        // for it (none for MULTITHREAD, one int for MEMSTATUS). Called at most once, before this
        // process opens a connection through the store.
        let multithread = unsafe { libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD) };
        let memstatus = unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int)
        };
        if multithread != libsqlite3_sys::SQLITE_OK || memstatus != libsqlite3_sys::SQLITE_OK {
            tracing::warn!(multithread, memstatus, "SQLite was initialized before the store: default threading kept.");
        }
    });
}

fn open_sqlite(path: &str, memory: bool) -> Result<Db, StoreError> {
    configure_sqlite();
    if !memory {
        // WAL is a property of the file: set it once, before the pool opens readers. So is the
        // page size, and only a new (empty) file takes it: 8 KiB pages write ~15% more usage
        // events per second than the 4 KiB default (bench/ingest.sh); an existing file keeps its own.
        let mut conn = SqliteConnection::establish(path)?;
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA page_size = {SQLITE_PAGE_SIZE}; PRAGMA journal_mode = WAL;"
        ))?;
    }
    let builder = Pool::builder()
        .connection_customizer(Box::new(SqlitePragmas))
        .connection_timeout(POOL_CONNECTION_TIMEOUT)
        .test_on_check_out(false);
    let builder = if memory {
        // Every connection to ":memory:" is its own database: keep exactly one, forever.
        builder.max_size(1).min_idle(Some(1)).idle_timeout(None).max_lifetime(None)
    } else {
        builder.max_size(SQLITE_POOL_SIZE).min_idle(Some(MIN_IDLE_CONNECTIONS))
    };
    let pool = builder.build(ConnectionManager::<SqliteConnection>::new(path))?;
    let writer = Arc::new(Mutex::new(SqliteWriter { path: (!memory).then(|| path.to_string()), batch_conn: None }));
    {
        let _writer = crate::store::lock_writer(&writer);
        let mut conn = pool.get()?;
        conn.immediate_transaction(|conn| {
            let known = diesel::sql_query(
                "SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = '__diesel_schema_migrations'",
            )
            .load::<One>(conn)?;
            if !known.is_empty() {
                rename_first_migration(conn)?;
            }
            run_migrations(conn, SQLITE_MIGRATIONS)
        })?;
    }
    if !memory {
        start_checkpointer(pool.clone(), Arc::downgrade(&writer));
    }
    tracing::info!(db.backend = "sqlite", db.path = path, "Database opened.");
    Ok(Db::Sqlite { pool, writer })
}

/// Checkpoint the WAL from a thread of its own, so the writer's commits seldom pay for copying
/// pages into the database file (~15-20% more ingest, bench/ingest.sh). PASSIVE never blocks the
/// writer; the WAL is rewound by the first commit after a checkpoint that caught up, or by the
/// writer's own checkpoint at [`SQLITE_WAL_AUTOCHECKPOINT_PAGES`].
/// Stops when the database is closed (the last `Db` holding `writer` is gone).
fn start_checkpointer(pool: SqlitePool, writer: std::sync::Weak<Mutex<SqliteWriter>>) {
    let spawned = std::thread::Builder::new().name("tally-sqlite-checkpoint".into()).spawn(move || {
        while writer.upgrade().is_some() {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            match pool.get() {
                Ok(mut conn) => {
                    if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                        tracing::warn!(error = %e, "WAL checkpoint failed.");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "No connection for the WAL checkpoint."),
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot start the WAL checkpointer.");
    }
}

fn open_postgres(url: &str) -> Result<Db, StoreError> {
    let pool = Pool::builder()
        .max_size(POSTGRES_POOL_SIZE)
        .min_idle(Some(MIN_IDLE_CONNECTIONS))
        .connection_timeout(POOL_CONNECTION_TIMEOUT)
        .build(ConnectionManager::<PgConnection>::new(url))?;
    let mut conn = pool.get()?;
    conn.transaction(|conn| {
        // Nodes starting together migrate one at a time; the lock ends with the transaction.
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(conn)?;
        let known = diesel::sql_query("SELECT 1 AS one WHERE to_regclass('__diesel_schema_migrations') IS NOT NULL")
            .load::<One>(conn)?;
        if !known.is_empty() {
            rename_first_migration(conn)?;
        }
        run_migrations(conn, POSTGRES_MIGRATIONS)
    })?;
    tracing::info!(db.backend = "postgres", "Database opened.");
    Ok(Db::Postgres { pool })
}

/// The first migration was once dated a year early (`2025-11-24-000000_create_schema`); it is
/// now `2026-11-23-000000_create_schema` (the day before the rest: `2026-11-24-000000` is taken).
/// A database migrated under the old name records the old version: rename it, so the schema is
/// not created twice. Runs in the migration transaction.
const OLD_FIRST_MIGRATION: &str = "20251124000000";
const FIRST_MIGRATION: &str = "20261123000000";

/// A row of a query that only tests existence.
#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)] // read by diesel only
    one: i32,
}

fn rename_first_migration<C: Connection>(conn: &mut C) -> Result<(), diesel::result::Error> {
    // Both values are constants of this file, not input.
    conn.batch_execute(&format!(
        "UPDATE __diesel_schema_migrations SET version = '{FIRST_MIGRATION}' WHERE version = '{OLD_FIRST_MIGRATION}'"
    ))
}

fn run_migrations<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<(), StoreError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    let applied = conn.run_pending_migrations(migrations).map_err(|e| StoreError::Migration(e.to_string()))?;
    for version in applied {
        tracing::info!(migration = %version, "Migration applied.");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(parse_url("sqlite::memory:").ok(), Some(Target::SqliteMemory), "sqlite::memory: is in memory");
        assert_eq!(
            parse_url("sqlite://data/tally.db").ok(),
            Some(Target::SqliteFile("data/tally.db".into())),
            "sqlite:// takes a relative path"
        );
        assert_eq!(
            parse_url("sqlite:///tmp/t.db").ok(),
            Some(Target::SqliteFile("/tmp/t.db".into())),
            "sqlite:/// takes an absolute path"
        );
        assert_eq!(parse_url("tally.db").ok(), Some(Target::SqliteFile("tally.db".into())), "bare path is SQLite");
        assert_eq!(
            parse_url("postgres://u@h/db").ok(),
            Some(Target::Postgres("postgres://u@h/db".into())),
            "postgres URL is PostgreSQL"
        );
        assert!(parse_url("").is_err(), "empty URL is refused");
    }

    #[derive(QueryableByName)]
    struct PageSize {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        page_size: i64,
    }

    fn page_size(path: &Path) -> i64 {
        let Ok(Db::Sqlite { pool, .. }) = open_sqlite(&path.display().to_string(), false) else { panic!("opens") };
        let mut conn = pool.get().expect("a connection");
        let rows: Vec<PageSize> = diesel::sql_query("PRAGMA page_size").load(&mut conn).expect("pragma");
        rows[0].page_size
    }

    #[test]
    fn the_wal_is_checkpointed_in_the_background() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ckpt.db");
        // Keep `_writer`: the checkpointer runs while the database is open.
        let Ok(Db::Sqlite { pool, writer: _writer }) = open_sqlite(&path.display().to_string(), false) else { panic!("opens") };
        let mut conn = pool.get().expect("a connection");
        let before = std::fs::metadata(&path).expect("db file").len();
        conn.batch_execute(
            "CREATE TABLE t (x BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
             INSERT INTO t SELECT randomblob(4000) FROM n;",
        )
        .expect("writes ~2 MB");
        drop(conn);
        // Far below the writer's own checkpoint threshold: only the background one moves pages.
        let deadline = std::time::Instant::now() + CHECKPOINT_INTERVAL * 25;
        let mut after = before;
        while after < before + 1_000_000 && std::time::Instant::now() < deadline {
            std::thread::sleep(CHECKPOINT_INTERVAL);
            after = std::fs::metadata(&path).expect("db file").len();
        }
        assert!(after >= before + 1_000_000, "the database file took the WAL's pages: {before} -> {after} bytes");
    }

    #[test]
    fn a_new_sqlite_file_gets_the_larger_page_size_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let new = dir.path().join("new.db");
        assert_eq!(page_size(&new), i64::from(SQLITE_PAGE_SIZE), "new file");
        let old = dir.path().join("old.db");
        let mut conn = SqliteConnection::establish(&old.display().to_string()).expect("opens");
        conn.batch_execute("PRAGMA page_size = 4096; CREATE TABLE t (a INTEGER);").expect("creates");
        drop(conn);
        assert_eq!(page_size(&old), 4096, "an existing file keeps its page size");
        assert_eq!(page_size(&new), i64::from(SQLITE_PAGE_SIZE), "reopening changes nothing");
    }
}
