//! Test harness: a fresh SQLite file or PostgreSQL database, a seeded fixture spanning three
//! months, and a snapshot of every total that must not change when rows are archived.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::prelude::*;
use rust_decimal::Decimal;
use tally_domain::{price_usage, Catalog, Invoice, Usage, UsageKind};
use tally_store::analytics::{AnalyticsFilter, Dim, Group};
use tally_store::{
    LineFilter, MessageRecord, MessageStatus, Role, Store, ThreadRecord, UsageRecord, UserRecord, WriteOp,
};
use uuid::Uuid;

/// Env var with the PostgreSQL admin URL.
pub const PG_URL_VAR: &str = "TALLY_TEST_POSTGRES_URL";
/// The default model of the shipped catalogue.
pub const HAIKU: &str = "claude-3-5-haiku-20241022";

/// A throwaway database (and archive directory).
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("tally.db").display());
        TestDb { url, dir, pg: None }
    }

    pub fn postgres() -> TestDb {
        let admin = std::env::var(PG_URL_VAR)
            .unwrap_or_else(|_| panic!("{PG_URL_VAR} is not set: run scripts/services.sh start and eval its env"));
        let name = format!("tally_archive_test_{}", Uuid::now_v7().simple());
        let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| panic!("connect {admin}: {e}"));
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).unwrap();
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin.as_str(), String::new()),
        };
        let (server, _) = base.rsplit_once('/').unwrap();
        let url = format!("{server}/{name}{query}");
        TestDb { url, dir: tempfile::tempdir().unwrap(), pg: Some((admin.clone(), name)) }
    }

    pub fn open(&self) -> Store {
        Store::open(&self.url).unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    pub fn archive_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("archive")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn);
            }
        }
    }
}

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// "Today" of the tests: December 2026 (so January-November are closed).
pub fn today() -> NaiveDate {
    day("2026-12-04")
}

/// What the fixture wrote.
pub struct Fixture {
    pub threads: Vec<ThreadRecord>,
    pub invoice: Invoice,
    /// One January event, to re-send after January is archived.
    pub january_event: UsageRecord,
}

fn thread_of(user: &str, created: DateTime<Utc>) -> ThreadRecord {
    ThreadRecord {
        thread_id: Uuid::now_v7(),
        user_id: user.into(),
        title: format!("{user}'s thread"),
        model: HAIKU.into(),
        created_at: created,
        updated_at: created,
        is_active: true,
    }
}

/// Seed users alice and bob, a thread each, and usage in January, February and December 2026
/// (tokens and web searches, one payload), then invoice alice's January, and then everything
/// before March.
pub fn fixture(store: &Store) -> Fixture {
    let catalog = Catalog::parse(include_str!("../../../catalog/prices.json")).unwrap();
    store.seed(&catalog).unwrap();
    let created = at("2025-12-01T00:00:00Z");
    for user in ["alice", "bob"] {
        store
            .create_user(&UserRecord { user_id: user.into(), username: user.into(), email: None, created_at: created })
            .unwrap();
    }
    let threads = vec![thread_of("alice", created), thread_of("bob", created)];
    for t in &threads {
        store.create_thread(t).unwrap();
    }
    let book = store.load_price_book().unwrap();
    let mut ops = Vec::new();
    let mut january_event = None;
    let times = [
        "2026-01-03T10:00:00.123456Z",
        "2026-01-15T23:59:59.999999Z",
        "2026-01-31T23:59:59.999999Z",
        "2026-02-01T00:00:00Z",
        "2026-02-14T12:30:00Z",
        "2026-12-01T08:00:00Z",
    ];
    for (i, when) in times.iter().enumerate() {
        for (j, thread) in threads.iter().enumerate() {
            let when = at(when);
            let message = MessageRecord {
                message_id: Uuid::now_v7(),
                thread_id: thread.thread_id,
                user_id: thread.user_id.clone(),
                role: Role::Assistant,
                content: format!("reply {i}"),
                model: HAIKU.into(),
                created_at: when,
                simulated: true,
                status: MessageStatus::Complete,
            };
            let mut usage = Usage::new();
            usage.add_tokens(UsageKind::InputTokens, 1234 + 17 * i as u64 + j as u64);
            usage.add_tokens(UsageKind::OutputTokens, 567 + 3 * i as u64);
            if i % 2 == 0 {
                usage.add(UsageKind::Resource("web_search_requests".into()), Decimal::from(1 + j as i64)).unwrap();
            }
            let record = UsageRecord {
                event_id: Uuid::now_v7(),
                user_id: thread.user_id.clone(),
                thread_id: Some(thread.thread_id),
                message_id: Some(message.message_id),
                model: HAIKU.into(),
                event_type: String::new(),
                source: "chat".into(),
                idempotency_key: Some(format!("k-{i}-{j}")),
                occurred_at: when,
                cost: price_usage(&book, HAIKU, when, &usage).unwrap(),
                key_id: None,
                task: Some(if j == 0 { "chat".into() } else { "search".into() }),
                successful: i != 4,
            };
            if i == 0 && j == 0 {
                january_event = Some(record.clone());
            }
            ops.push(WriteOp::Message(message));
            ops.push(WriteOp::Usage(record));
        }
    }
    let outcome = store.write_batch(&ops).unwrap();
    assert_eq!(outcome.inserted_events.len(), times.len() * 2, "fixture: every event is new");
    let january_event = january_event.unwrap();
    store
        .store_payload(&tally_store::analytics::EventPayload {
            event_id: january_event.event_id,
            request: Some("what is 2+2?".into()),
            response: Some("4".into()),
        })
        .unwrap();
    let january = LineFilter {
        user_id: Some("alice".into()),
        from: Some(at("2026-01-01T00:00:00Z")),
        to: Some(at("2026-02-01T00:00:00Z")),
        ..LineFilter::default()
    };
    let lines = store.usage_lines(&january).unwrap();
    assert!(!lines.is_empty(), "fixture: alice has January lines");
    let invoice = Invoice::new(
        "alice".into(),
        None,
        Some((at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z"))),
        lines,
        at("2026-02-01T00:00:01Z"),
    );
    store.create_invoice(&invoice).unwrap();
    // Months are archived only once invoiced: close January and February for both users.
    for user in ["alice", "bob"] {
        invoice_before(store, user, at("2026-03-01T00:00:00Z"));
    }
    Fixture { threads, invoice, january_event }
}

/// Invoice what `user` has not been invoiced for before `to` (nothing to invoice: no invoice).
pub fn invoice_before(store: &Store, user: &str, to: DateTime<Utc>) {
    let filter = LineFilter { user_id: Some(user.into()), to: Some(to), uninvoiced_only: true, ..LineFilter::default() };
    let lines = store.usage_lines(&filter).unwrap();
    if lines.is_empty() {
        return;
    }
    let invoice = Invoice::new(user.into(), None, Some((at("2026-01-01T00:00:00Z"), to)), lines, to);
    store.create_invoice(&invoice).unwrap();
}

/// Every total that must read the same whether or not months are archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub by_user: Vec<Group>,
    pub by_day_model: Vec<Group>,
    pub by_task: Vec<Group>,
    pub summary: Vec<Group>,
    pub invoices: BTreeMap<String, Vec<(Uuid, Decimal, Decimal, String)>>,
    pub invoice_rows: i64,
}

/// What every analytics and invoice answer says (none of them read raw events).
pub fn totals(store: &Store) -> Totals {
    let filter = AnalyticsFilter {
        from_day: day("2026-01-01"),
        to_day: day("2026-12-31"),
        user_id: None,
        provider: None,
        model: None,
        key_id: None,
        task: None,
    };
    let invoices = ["alice", "bob"]
        .iter()
        .map(|u| {
            let list = store
                .list_invoices(u)
                .unwrap()
                .into_iter()
                .map(|i| (i.id, i.subtotal, i.total, format!("{:?}", i.status)))
                .collect();
            (u.to_string(), list)
        })
        .collect();
    Totals {
        by_user: store.analytics(&filter, &[Dim::User]).unwrap(),
        by_day_model: store.analytics(&filter, &[Dim::Day, Dim::Model]).unwrap(),
        by_task: store.analytics(&filter, &[Dim::Task]).unwrap(),
        summary: store.analytics(&filter, &[]).unwrap(),
        invoices,
        invoice_rows: count(store, "user_invoices"),
    }
}

/// Every raw row the hot tables answer: events with lines, messages with costs, invoices with lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    pub events: Vec<UsageRecord>,
    pub lines: Vec<tally_domain::InvoiceLine>,
    pub messages: Vec<tally_store::StoredMessage>,
    pub invoice: Option<Invoice>,
    pub archive_rows: tally_store::archive::MonthRows,
}

pub fn raw(store: &Store, fx: &Fixture) -> Raw {
    let all = LineFilter::default();
    let mut events = store.usage_events(&all, 10_000).unwrap();
    events.sort_by_key(|e| e.event_id);
    let mut lines = store.usage_lines(&all).unwrap();
    lines.sort_by_key(|l| l.id);
    let messages = fx.threads.iter().flat_map(|t| store.thread_messages(t.thread_id).unwrap()).collect();
    let archive_rows =
        store.archive_month_rows(at("2000-01-01T00:00:00Z"), at("2100-01-01T00:00:00Z")).unwrap().canonical();
    Raw { events, lines, messages, invoice: store.get_invoice(fx.invoice.id).unwrap(), archive_rows }
}

pub fn count(store: &Store, table: &str) -> i64 {
    store.row_counts().unwrap().into_iter().find(|(t, _)| *t == table).map(|(_, n)| n).unwrap_or(-1)
}
