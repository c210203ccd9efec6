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

fn explain(db: &TestDb) -> Found {
    // Creates and migrates the database; kept open so that closing it (which checkpoints and
    // removes the WAL) cannot race the connections below.
    let _store = db.open();
    let thread_query = "SELECT event_seq FROM api_events WHERE thread_id = {thread} AND occurred_at >= {t} ORDER BY occurred_at";
    let message_query =
        "SELECT event_seq FROM api_events WHERE message_id IN ({message}, {thread})";
    let fill = |query: &str, id: &dyn Fn(&str) -> String, t: &str| {
        query
            .replace("{thread}", &id(THREAD))
            .replace("{message}", &id(MESSAGE))
            .replace("{t}", t)
    };
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        let mut conn = SqliteConnection::establish(path).expect("sqlite");
        conn.batch_execute("PRAGMA busy_timeout = 5000").expect("busy timeout");
        let definitions = INDEXES
            .iter()
            .map(|name| {
                let rows: Vec<Line> = diesel::sql_query(format!(
                    "SELECT sql AS line FROM sqlite_master WHERE name = '{name}'"
                ))
                .load(&mut conn)
                .expect("index definition");
                rows.into_iter().map(|r| r.line).collect::<String>()
            })
            .collect();
        let blob = |id: &str| format!("x'{}'", id.replace('-', ""));
        let mut explain = |query: String| {
            let rows: Vec<SqlitePlan> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {query}"))
                .load(&mut conn)
                .expect("plan");
            rows.into_iter()
                .map(|r| r.detail)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let by_thread = explain(fill(thread_query, &blob, "0"));
        let by_message = explain(fill(message_query, &blob, "0"));
        Found {
            definitions,
            by_thread,
            by_message,
        }
    } else {
        let mut conn = PgConnection::establish(&db.url).expect("postgres");
        let definitions = INDEXES
            .iter()
            .map(|name| {
                let rows: Vec<Line> = diesel::sql_query(format!(
                    "SELECT indexdef AS line FROM pg_indexes WHERE indexname = '{name}'"
                ))
                .load(&mut conn)
                .expect("index definition");
                rows.into_iter().map(|r| r.line).collect::<String>()
            })
            .collect();
        // An empty table is cheapest to scan; forbid that so the plan shows which index can serve.
        conn.batch_execute("SET enable_seqscan = off").expect("set");
        let text = |id: &str| format!("'{id}'");
        let mut explain = |query: String| {
            let rows: Vec<PgPlan> = diesel::sql_query(format!("EXPLAIN {query}"))
                .load(&mut conn)
                .expect("plan");
            rows.into_iter()
                .map(|r| r.plan)
                .collect::<Vec<_>>()
                .join("\n")
        };
        let by_thread = explain(fill(thread_query, &text, "'2025-01-01T00:00:00Z'"));
        let by_message = explain(fill(message_query, &text, ""));
        Found {
            definitions,
            by_thread,
            by_message,
        }
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
