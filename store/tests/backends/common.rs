//! Test harness: a fresh SQLite file or PostgreSQL database per test, plus fixtures.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use tally_domain::{price_usage, Catalog, Cost, Usage, UsageKind};
use tally_store::{
    LineFilter, MessageRecord, MessageStatus, Role, Store, ThreadRecord, UsageRecord, UserRecord, WriteOp,
};
use uuid::Uuid;

/// Env var with the PostgreSQL admin URL (a database we may CREATE DATABASE from).
pub const PG_URL_VAR: &str = "TALLY_TEST_POSTGRES_URL";

/// The default model of the shipped catalogue.
pub const HAIKU: &str = "claude-3-5-haiku-20241022";

/// Run each named test body (a `fn(&TestDb)`) once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let db = $crate::common::TestDb::sqlite();
                    super::$name(&db);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let db = $crate::common::TestDb::postgres();
                    super::$name(&db);
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;

/// A throwaway database: a temp SQLite file, or a PostgreSQL database dropped on drop.
pub struct TestDb {
    /// URL to open the store with.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A fresh SQLite file in a temp dir (in a subdirectory that does not exist yet).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested").join("tally.db");
        TestDb { url: format!("sqlite://{}", path.display()), _dir: Some(dir), pg: None }
    }

    /// A fresh PostgreSQL database created through the admin URL in `TALLY_TEST_POSTGRES_URL`.
    pub fn postgres() -> TestDb {
        let admin = std::env::var(PG_URL_VAR).unwrap_or_else(|_| {
            panic!(
                "{PG_URL_VAR} is not set: PostgreSQL tests need a server. Run `scripts/services.sh start` \
                 and `export {PG_URL_VAR}=postgres://tally@127.0.0.1:55432/postgres` (see `scripts/services.sh env`)"
            )
        });
        let name = format!("tally_test_{}", Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| {
            panic!("cannot connect to {PG_URL_VAR}={admin}: {e}; is `scripts/services.sh start` running?")
        });
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).expect("create test database");
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin.as_str(), String::new()),
        };
        let (server, _) = base.rsplit_once('/').expect("admin URL has a database path");
        TestDb { url: format!("{server}/{name}{query}"), _dir: None, pg: Some((admin.clone(), name)) }
    }

    /// Open (and migrate) a store on this database.
    pub fn open(&self) -> Store {
        Store::open(&self.url).unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ =
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn);
            }
        }
    }
}

/// The shipped price catalogue.
pub fn catalog() -> Catalog {
    Catalog::parse(include_str!("../../../catalog/prices.json")).expect("catalogue parses")
}

/// An instant from RFC 3339.
pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid RFC 3339").with_timezone(&Utc)
}

/// A decimal from text.
pub fn dec(s: &str) -> Decimal {
    s.parse().expect("valid decimal")
}

/// Open, seed, and create user `alice` with one Haiku thread.
pub fn seeded(db: &TestDb) -> (Store, ThreadRecord) {
    let store = db.open();
    store.seed(&catalog()).expect("seed");
    let user = UserRecord {
        user_id: "alice".into(),
        username: "Alice".into(),
        email: Some("alice@example.com".into()),
        created_at: at("2025-01-01T00:00:00Z"),
    };
    store.create_user(&user).expect("create user");
    let thread = ThreadRecord {
        thread_id: Uuid::now_v7(),
        user_id: "alice".into(),
        title: "Hello".into(),
        model: HAIKU.into(),
        created_at: at("2025-01-01T00:00:00Z"),
        updated_at: at("2025-01-01T00:00:00Z"),
        is_active: true,
    };
    store.create_thread(&thread).expect("create thread");
    (store, thread)
}

/// A message in `thread`.
pub fn message(thread: &ThreadRecord, role: Role, content: &str, created_at: DateTime<Utc>) -> MessageRecord {
    MessageRecord {
        message_id: Uuid::now_v7(),
        thread_id: thread.thread_id,
        user_id: thread.user_id.clone(),
        role,
        content: content.into(),
        model: thread.model.clone(),
        created_at,
        simulated: true,
        status: MessageStatus::Complete,
    }
}

/// Price `usage` of `model` at `when` with the store's price book.
pub fn price(store: &Store, model: &str, when: DateTime<Utc>, usage: &Usage) -> Cost {
    let book = store.load_price_book().expect("price book");
    price_usage(&book, model, when, usage).expect("priced")
}

/// Token usage with the given input and output tokens.
pub fn tokens(input: u64, output: u64) -> Usage {
    let mut u = Usage::new();
    u.add_tokens(UsageKind::InputTokens, input);
    u.add_tokens(UsageKind::OutputTokens, output);
    u
}

/// A priced usage event for `message` in `thread`.
pub fn usage_for(
    store: &Store,
    thread: &ThreadRecord,
    message: Option<&MessageRecord>,
    usage: &Usage,
    when: DateTime<Utc>,
) -> UsageRecord {
    UsageRecord {
        event_id: Uuid::now_v7(),
        user_id: thread.user_id.clone(),
        thread_id: Some(thread.thread_id),
        message_id: message.map(|m| m.message_id),
        model: thread.model.clone(),
        event_type: String::new(),
        source: "chat".into(),
        idempotency_key: None,
        occurred_at: when,
        cost: price(store, &thread.model, when, usage),
        key_id: None,
        task: Some("chat".into()),
        successful: true,
    }
}

/// Row count of one table.
pub fn count(store: &Store, table: &str) -> i64 {
    store
        .row_counts()
        .expect("row counts")
        .into_iter()
        .find(|(t, _)| *t == table)
        .map(|(_, n)| n)
        .unwrap_or_else(|| panic!("no table {table}"))
}

/// A filter for one user's uninvoiced lines.
pub fn uninvoiced(user: &str) -> LineFilter {
    LineFilter { user_id: Some(user.into()), uninvoiced_only: true, ..LineFilter::default() }
}

/// Messages then usages as write ops.
pub fn ops(messages: &[&MessageRecord], usages: &[&UsageRecord]) -> Vec<WriteOp> {
    messages
        .iter()
        .map(|m| WriteOp::Message((*m).clone()))
        .chain(usages.iter().map(|u| WriteOp::Usage((*u).clone())))
        .collect()
}
