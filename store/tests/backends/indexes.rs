//! The thread and message indexes of `api_events` are partial (events without a thread or
//! message take no entry), and lookups by thread or message still use them.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel::{PgConnection, SqliteConnection};

use crate::common::{on_both_backends, TestDb};

const THREAD: &str = "01900000-0000-7000-8000-0000000000a1";
const MESSAGE: &str = "01900000-0000-7000-8000-0000000000b1";

/// A row of text read back by name.
#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

/// A row of SQLite's `EXPLAIN QUERY PLAN`.
#[derive(QueryableByName)]
struct SqlitePlan {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// A row of PostgreSQL's `EXPLAIN`.
#[derive(QueryableByName)]
struct PgPlan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// The definitions of the two indexes, and the plans of a lookup by thread (with a time
/// window, as the thread views ask) and of a lookup by messages (as the message views ask).
struct Found {
    definitions: Vec<String>,
    by_thread: String,
    by_message: String,
}

const INDEXES: [&str; 2] = ["api_events_by_thread", "api_events_by_message"];

/// How one backend is asked: the query giving an index's definition (`{name}`), the prefix
/// that explains a query, an id as a literal, and an instant as a literal.
struct Dialect<P> {
    definition: &'static str,
    explain: &'static str,
    plan_text: fn(P) -> String,
    id: fn(&str) -> String,
    instant: &'static str,
}

/// The text of every row `sql` returns, one line each.
fn text_of<C, R>(conn: &mut C, sql: &str, text: fn(R) -> String) -> String
where
    C: Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, R>,
{
    let rows: Vec<R> = diesel::sql_query(sql).load(conn).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(text).collect::<Vec<_>>().join("\n")
}

fn found<C, P>(conn: &mut C, dialect: Dialect<P>) -> Found
where
    C: Connection,
    diesel::query_builder::SqlQuery:
        diesel::query_dsl::LoadQuery<'static, C, Line> + diesel::query_dsl::LoadQuery<'static, C, P>,
{
    let definitions =
        INDEXES.iter().map(|name| text_of(conn, &dialect.definition.replace("{name}", name), |l: Line| l.line)).collect();
    let (thread, message) = ((dialect.id)(THREAD), (dialect.id)(MESSAGE));
    let by_thread = format!(
        "{} SELECT event_seq FROM api_events WHERE thread_id = {thread} AND occurred_at >= {} ORDER BY occurred_at",
        dialect.explain, dialect.instant
    );
    let by_message = format!("{} SELECT event_seq FROM api_events WHERE message_id IN ({message}, {thread})", dialect.explain);
    Found {
        definitions,
        by_thread: text_of(conn, &by_thread, dialect.plan_text),
        by_message: text_of(conn, &by_message, dialect.plan_text),
    }
}

fn explain(db: &TestDb) -> Found {
    // Creates and migrates the database; kept open so that closing it (which checkpoints and
    // removes the WAL) cannot race the connections below.
    let _store = db.open();
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("sqlite");
        conn.batch_execute("PRAGMA busy_timeout = 5000").expect("busy timeout");
        let dialect = Dialect {
            definition: "SELECT sql AS line FROM sqlite_master WHERE name = '{name}'",
            explain: "EXPLAIN QUERY PLAN",
            plan_text: |p: SqlitePlan| p.detail,
            id: |id| format!("x'{}'", id.replace('-', "")),
            instant: "0",
        };
        found(&mut conn, dialect)
    } else {
        let mut conn = PgConnection::establish(&db.url).expect("postgres");
        // An empty table is cheapest to scan; forbid that so the plan shows which index can serve.
        conn.batch_execute("SET enable_seqscan = off").expect("set");
        let dialect = Dialect {
            definition: "SELECT indexdef AS line FROM pg_indexes WHERE indexname = '{name}'",
            explain: "EXPLAIN",
            plan_text: |p: PgPlan| p.plan,
            id: |id| format!("'{id}'"),
            instant: "'2025-01-01T00:00:00Z'",
        };
        found(&mut conn, dialect)
    }
}

on_both_backends!(thread_and_message_lookups_use_the_partial_indexes);

fn thread_and_message_lookups_use_the_partial_indexes(db: &TestDb) {
    let found = explain(db);
    assert!(
        found.definitions[0].contains("WHERE")
            && found.definitions[0].contains("thread_id IS NOT NULL"),
        "events without a thread take no entry in the thread index: {}",
        found.definitions[0]
    );
    assert!(
        found.definitions[1].contains("WHERE")
            && found.definitions[1].contains("message_id IS NOT NULL"),
        "events without a message take no entry in the message index: {}",
        found.definitions[1]
    );
    assert!(
        found.by_thread.contains("api_events_by_thread"),
        "a thread's events are found by index: {}",
        found.by_thread
    );
    assert!(
        found.by_message.contains("api_events_by_message"),
        "messages' events are found by index: {}",
        found.by_message
    );
}
