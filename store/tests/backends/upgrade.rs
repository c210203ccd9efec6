//! A database written by the first schema keeps its usage, lines and invoices through
//! the later migrations (lines keyed by `event_seq`, `message_tokens` as a view).

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use tally_domain::{InvoiceStatus, UsageKind};
use tally_store::LineFilter;
use uuid::Uuid;

use crate::common::{at, count, dec, on_both_backends, TestDb};

const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

const EVENT: &str = "01900000-0000-7000-8000-000000000001";
const OTHER_EVENT: &str = "01900000-0000-7000-8000-000000000002";
const THREAD: &str = "01900000-0000-7000-8000-0000000000a1";
const MESSAGE: &str = "01900000-0000-7000-8000-0000000000b1";
const INVOICE: &str = "01900000-0000-7000-8000-0000000000c1";
const INPUT_LINE: &str = "01900000-0000-7000-8000-0000000000d1";
const OUTPUT_LINE: &str = "01900000-0000-7000-8000-0000000000d2";
const IMAGE_LINE: &str = "01900000-0000-7000-8000-0000000000d3";
const OTHER_LINE: &str = "01900000-0000-7000-8000-0000000000d4";

/// Rows as the first schema stored them: an event with two token lines (and their
/// message_tokens) and an image line, the input line invoiced; a second event of bob's.
fn old_rows() -> String {
    format!(
        "INSERT INTO dim_users VALUES ('alice', 'Alice', NULL, '2025-01-01T00:00:00.000000Z');
         INSERT INTO dim_users VALUES ('bob', 'Bob', NULL, '2025-01-01T00:00:00.000000Z');
         INSERT INTO dim_models (model_id, model_name, provider, description, is_active) VALUES (7, 'm', 'p', 'd', TRUE);
         INSERT INTO dim_event_types (event_type_id, event_name, description, unit_of_measure, is_active)
             VALUES (9, 'images', 'Images', 'images', TRUE);
         INSERT INTO dim_token_pricing VALUES ('01900000-0000-7000-8000-0000000000e1', 7, 'input_tokens', '0.8',
             '2025-01-01T00:00:00.000000Z', NULL, TRUE);
         INSERT INTO dim_token_pricing VALUES ('01900000-0000-7000-8000-0000000000e2', 7, 'output_tokens', '4',
             '2025-01-01T00:00:00.000000Z', NULL, TRUE);
         INSERT INTO dim_resource_pricing VALUES ('01900000-0000-7000-8000-0000000000e3', 7, 9, '0.04',
             '2025-01-01T00:00:00.000000Z', NULL, TRUE);
         INSERT INTO api_events VALUES ('{EVENT}', 'alice', '{THREAD}', '{MESSAGE}', 7, 1, '1500', '0.0968', 'chat', NULL,
             '2025-03-01T10:00:00.000000Z', '2025-03-01T10:00:01.000000Z');
         INSERT INTO api_events VALUES ('{OTHER_EVENT}', 'bob', NULL, NULL, 7, 1, '100', '0.00008', 'http', 'k1',
             '2025-03-02T10:00:00.000000Z', '2025-03-02T10:00:01.000000Z');
         INSERT INTO message_tokens VALUES ('01900000-0000-7000-8000-0000000000f1', '{EVENT}', '{MESSAGE}', 'input_tokens',
             1000, '2025-03-01T10:00:01.000000Z');
         INSERT INTO message_tokens VALUES ('01900000-0000-7000-8000-0000000000f2', '{EVENT}', '{MESSAGE}', 'output_tokens',
             500, '2025-03-01T10:00:01.000000Z');
         INSERT INTO message_tokens VALUES ('01900000-0000-7000-8000-0000000000f3', '{OTHER_EVENT}', NULL, 'input_tokens',
             100, '2025-03-02T10:00:01.000000Z');
         INSERT INTO user_invoices VALUES ('{INVOICE}', 'alice', NULL, NULL, NULL, '0.0008', '0.0008',
             '2025-04-01T00:00:00.000000Z', 'pending');
         INSERT INTO user_invoice_line_item VALUES ('{INPUT_LINE}', '{EVENT}', '{MESSAGE}', '{THREAD}', 'alice',
             '01900000-0000-7000-8000-0000000000f1', '01900000-0000-7000-8000-0000000000e1', '1000', '0.8', '0.0008',
             '2025-03-01T10:00:00.000000Z', '2025-03-01T10:00:01.000000Z', '{INVOICE}');
         INSERT INTO user_invoice_line_item VALUES ('{OUTPUT_LINE}', '{EVENT}', '{MESSAGE}', '{THREAD}', 'alice',
             '01900000-0000-7000-8000-0000000000f2', '01900000-0000-7000-8000-0000000000e2', '500', '4', '0.002',
             '2025-03-01T10:00:00.000000Z', '2025-03-01T10:00:01.000000Z', NULL);
         INSERT INTO user_invoice_line_item VALUES ('{OTHER_LINE}', '{OTHER_EVENT}', NULL, NULL, 'bob',
             '01900000-0000-7000-8000-0000000000f3', '01900000-0000-7000-8000-0000000000e1', '100', '0.8', '0.00008',
             '2025-03-02T10:00:00.000000Z', '2025-03-02T10:00:01.000000Z', NULL);
         INSERT INTO resource_invoice_line_item VALUES ('{IMAGE_LINE}', '{EVENT}', 'alice', '{THREAD}', '{MESSAGE}',
             '01900000-0000-7000-8000-0000000000e3', 9, '2', '0.04', '0.08', '2025-03-01T10:00:00.000000Z',
             '2025-03-01T10:00:01.000000Z', NULL);"
    )
}

/// Create the first schema only and fill it with [`old_rows`].
fn write_first_schema(db: &TestDb) {
    let rows = old_rows();
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        std::fs::create_dir_all(std::path::Path::new(path).parent().expect("parent")).expect("dir");
        let mut conn = SqliteConnection::establish(path).expect("sqlite");
        conn.run_next_migration(SQLITE).expect("first migration");
        conn.batch_execute(&rows).expect("old rows");
    } else {
        let mut conn = PgConnection::establish(&db.url).expect("postgres");
        conn.run_next_migration(POSTGRES).expect("first migration");
        conn.batch_execute(&rows).expect("old rows");
    }
}

fn uuid(s: &str) -> Uuid {
    s.parse().expect("uuid")
}

on_both_backends!(an_old_database_keeps_its_usage_lines_and_invoices, a_database_migrated_under_the_old_first_name_opens);

fn an_old_database_keeps_its_usage_lines_and_invoices(db: &TestDb) {
    write_first_schema(db);
    let store = db.open();

    let alice = LineFilter { user_id: Some("alice".into()), ..LineFilter::default() };
    let events = store.usage_events(&alice, 10).expect("events");
    assert_eq!(events.len(), 1, "alice's one event");
    let event = &events[0];
    assert_eq!(event.event_id, uuid(EVENT));
    assert_eq!(event.message_id, Some(uuid(MESSAGE)));
    assert_eq!(event.thread_id, Some(uuid(THREAD)));
    assert_eq!(event.cost.total, dec("0.0968"));
    let kinds: Vec<(UsageKind, String, String)> = event
        .cost
        .lines
        .iter()
        .map(|l| (l.kind.clone(), l.quantity.to_string(), l.amount.to_string()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (UsageKind::InputTokens, "1000".into(), "0.0008".into()),
            (UsageKind::OutputTokens, "500".into(), "0.002".into()),
            (UsageKind::Resource("images".into()), "2".into(), "0.08".into()),
        ],
        "every line kept its kind, quantity and amount"
    );

    let invoice = store.get_invoice(uuid(INVOICE)).expect("get").expect("invoice kept");
    assert_eq!(invoice.status, InvoiceStatus::Pending);
    let invoiced: Vec<Uuid> = invoice.lines.iter().map(|l| l.id).collect();
    assert_eq!(invoiced, vec![uuid(INPUT_LINE)], "the invoice kept exactly its line");
    assert_eq!(invoice.lines[0].event_id, uuid(EVENT), "the line still names its event");
    assert_eq!(invoice.lines[0].occurred_at, at("2025-03-01T10:00:00Z"), "and its event's time");

    let open = LineFilter { uninvoiced_only: true, ..alice.clone() };
    let mut open_ids: Vec<Uuid> = store.usage_lines(&open).expect("lines").iter().map(|l| l.id).collect();
    open_ids.sort();
    assert_eq!(open_ids, vec![uuid(OUTPUT_LINE), uuid(IMAGE_LINE)], "alice's uninvoiced lines");
    let bob = LineFilter { user_id: Some("bob".into()), ..LineFilter::default() };
    let bobs: Vec<Uuid> = store.usage_lines(&bob).expect("lines").iter().map(|l| l.id).collect();
    assert_eq!(bobs, vec![uuid(OTHER_LINE)], "bob's line stays bob's");

    assert_eq!(count(&store, "api_events"), 2);
    assert_eq!(count(&store, "message_tokens"), 3, "the message_tokens view has one count per token line");
    assert_eq!(count(&store, "user_invoice_line_item"), 3);
    assert_eq!(count(&store, "resource_invoice_line_item"), 1);
}

/// The first layout's rows as text (token ids left out: they become line ids on the way up).
fn first_layout_dump(conn: &mut SqliteConnection) -> Vec<Option<String>> {
    use diesel::sql_types::{Nullable, Text};
    use diesel::RunQueryDsl;
    [
        "SELECT group_concat(user_id || ' ' || created_at, ';') FROM (SELECT * FROM dim_users ORDER BY user_id)",
        "SELECT group_concat(pricing_id || ' ' || effective_from || ' ' || coalesce(effective_to, '-'), ';')
             FROM (SELECT * FROM dim_token_pricing ORDER BY pricing_id)",
        "SELECT group_concat(event_id || ' ' || user_id || ' ' || coalesce(thread_id, '-') || ' ' || coalesce(message_id, '-')
             || ' ' || quantity || ' ' || cost_total || ' ' || occurred_at || ' ' || created_at, ';')
             FROM (SELECT * FROM api_events ORDER BY event_id)",
        "SELECT group_concat(event_id || ' ' || coalesce(message_id, '-') || ' ' || token_type || ' ' || token_count, ';')
             FROM (SELECT * FROM message_tokens ORDER BY event_id, token_type)",
        "SELECT group_concat(line_item_id || ' ' || event_id || ' ' || user_id || ' ' || coalesce(thread_id, '-') || ' '
             || pricing_id || ' ' || amount || ' ' || occurred_at || ' ' || coalesce(invoice_id, '-'), ';')
             FROM (SELECT * FROM user_invoice_line_item ORDER BY line_item_id)",
        "SELECT group_concat(resource_line_item_id || ' ' || event_id || ' ' || user_id || ' ' || amount || ' '
             || occurred_at || ' ' || created_at, ';') FROM (SELECT * FROM resource_invoice_line_item)",
        "SELECT group_concat(invoice_id || ' ' || user_id || ' ' || invoice_date || ' ' || status, ';') FROM user_invoices",
    ]
    .iter()
    .map(|q| diesel::select(diesel::dsl::sql::<Nullable<Text>>(&format!("({q})"))).get_result(conn).expect(q))
    .collect()
}

#[test]
fn sqlite_down_migrations_give_back_the_first_layout() {
    let db = TestDb::sqlite();
    write_first_schema(&db);
    let path = db.url.strip_prefix("sqlite://").expect("sqlite url");
    let mut conn = SqliteConnection::establish(path).expect("sqlite");
    let before = first_layout_dump(&mut conn);
    assert!(before.iter().all(Option::is_some), "every table has rows: {before:?}");
    conn.run_pending_migrations(SQLITE).expect("up");
    while conn.applied_migrations().expect("applied").len() > 1 {
        conn.revert_last_migration(SQLITE).expect("down");
    }
    assert_eq!(first_layout_dump(&mut conn), before, "the same rows, as text, after going up and down");
}


/// The first migration was renamed from `2025-11-24-000000_create_schema` (a year off) to
/// `2026-11-23-000000_create_schema`. A database that recorded the old version must open
/// without creating its schema again, and record the new version.
fn a_database_migrated_under_the_old_first_name_opens(db: &TestDb) {
    write_first_schema(db);
    let rename = "UPDATE __diesel_schema_migrations SET version = '20251124000000' WHERE version = '20261123000000'";
    let versions = "SELECT version FROM __diesel_schema_migrations ORDER BY version";
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let read = |db: &TestDb| -> Vec<String> {
        use diesel::RunQueryDsl;
        let rows: Vec<Version> = if let Some(path) = db.url.strip_prefix("sqlite://") {
            diesel::sql_query(versions).load(&mut SqliteConnection::establish(path).expect("sqlite")).expect("versions")
        } else {
            diesel::sql_query(versions).load(&mut PgConnection::establish(&db.url).expect("pg")).expect("versions")
        };
        rows.into_iter().map(|r| r.version).collect()
    };
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        SqliteConnection::establish(path).expect("sqlite").batch_execute(rename).expect("old name");
    } else {
        PgConnection::establish(&db.url).expect("pg").batch_execute(rename).expect("old name");
    }
    assert_eq!(read(db), vec!["20251124000000".to_string()], "the database records the old first version");
    let store = db.open();
    assert_eq!(count(&store, "api_events"), 2, "the old rows are all there");
    drop(store);
    let after = read(db);
    assert_eq!(after.first().map(String::as_str), Some("20261123000000"), "the first version is renamed: {after:?}");
    assert!(!after.iter().any(|v| v == "20251124000000"), "the old version is gone: {after:?}");
    assert!(after.len() > 1, "the later migrations ran: {after:?}");
}
