//! Provider import storage on both backends: connections, runs, costs, revisions, reconciliation.

use chrono::{Duration, NaiveDate};
use tally_domain::{Invoice, UsageKind};
use tally_store::analytics::{AnalyticsFilter, Dim};
use tally_store::providers::{
    BucketRevision, ConnectionRecord, ImportRunRecord, ImportedBucket, ProviderCostRecord, RevisionOutcome,
    PROVIDER_IMPORT_SOURCE,
};
use tally_store::{LineFilter, Store, StoreError, UsageRecord, WriteOp};
use uuid::Uuid;

use crate::common::{at, count, dec, on_both_backends, price, seeded, tokens, TestDb, HAIKU};

on_both_backends!(
    connections_runs_and_costs_round_trip,
    revised_bucket_replaces_its_event_exactly,
    revision_of_an_invoiced_event_is_refused_and_recorded,
    reconciliation_splits_reported_and_metered,
);

const SONNET: &str = "claude-sonnet-4-20250514";

fn connection(name: &str) -> ConnectionRecord {
    ConnectionRecord {
        connection_id: Uuid::now_v7(),
        provider: "anthropic".into(),
        name: name.into(),
        base_url: "http://127.0.0.1:9".into(),
        key_ciphertext: vec![1, 2, 3, 4, 5],
        key_nonce: vec![9; 12],
        key_hint: "abcd".into(),
        created_at: at("2026-12-01T00:00:00.1234567Z"),
        last_run_at: None,
        last_status: None,
        last_error: None,
        enabled: true,
    }
}

fn run_record(connection_id: Uuid) -> ImportRunRecord {
    ImportRunRecord {
        run_id: Uuid::now_v7(),
        connection_id,
        trigger: "manual".into(),
        range_from: at("2026-12-01T00:00:00Z"),
        range_to: at("2026-12-02T00:00:00Z"),
        started_at: at("2026-12-02T00:05:00Z"),
        finished_at: None,
        status: "running".into(),
        pages: 0,
        buckets: 0,
        events_new: 0,
        events_revised: 0,
        events_unchanged: 0,
        skipped: 0,
        costs: 0,
        error: None,
    }
}

fn cost(connection_id: Uuid, model: Option<&str>, amount: &str) -> ProviderCostRecord {
    ProviderCostRecord {
        connection_id,
        starting_at: at("2026-12-01T00:00:00Z"),
        ending_at: at("2026-12-02T00:00:00Z"),
        model: model.map(Into::into),
        description: model.map(|_| "Claude Sonnet 4 Usage - Input Tokens".to_string()),
        workspace_id: None,
        amount: dec(amount),
        currency: "USD".into(),
        imported_at: at("2026-12-02T00:05:00Z"),
    }
}

fn connections_runs_and_costs_round_trip(db: &TestDb) {
    let (store, _) = seeded(db);
    let c = connection("anthropic-prod");
    let stored = store.create_connection(&c).expect("create connection");
    assert_eq!(stored.created_at, at("2026-12-01T00:00:00.123456Z"), "instants kept to the microsecond");
    assert_eq!(stored.key_ciphertext, c.key_ciphertext, "ciphertext kept byte for byte");
    let mut twin = connection("anthropic-prod");
    twin.connection_id = Uuid::now_v7();
    assert!(matches!(store.create_connection(&twin), Err(StoreError::Conflict(_))), "a taken name is a conflict");
    assert_eq!(store.list_connections().expect("list").len(), 1, "one connection listed");

    let mut run = run_record(c.connection_id);
    store.insert_import_run(&run).expect("start run");
    run.status = "success".into();
    run.finished_at = Some(at("2026-12-02T00:05:03Z"));
    run.events_new = 7;
    run.costs = 2;
    store.finish_import_run(&run).expect("finish run");
    assert_eq!(store.list_import_runs(c.connection_id, 10).expect("runs"), vec![run.clone()], "run read back");
    let after = store.get_connection(c.connection_id).expect("get").expect("exists");
    assert_eq!(after.last_status.as_deref(), Some("success"), "last status follows the run");
    assert_eq!(after.last_run_at, run.finished_at, "last run time follows the run");

    let costs = vec![cost(c.connection_id, Some(SONNET), "1.23456789"), cost(c.connection_id, None, "0.1")];
    store.upsert_provider_costs(&costs).expect("costs");
    let replaced = vec![cost(c.connection_id, Some(SONNET), "2.000000001")];
    store.upsert_provider_costs(&replaced).expect("re-import");
    let back = store.provider_costs(c.connection_id, at("2026-12-01T00:00:00Z"), at("2026-12-03T00:00:00Z")).expect("read");
    assert_eq!(back.len(), 2, "a re-import replaces by natural key, never adds rows");
    let sonnet = back.iter().find(|r| r.model.as_deref() == Some(SONNET)).expect("sonnet row");
    assert_eq!(sonnet.amount, dec("2.000000001"), "the re-imported amount replaced the first, exactly");
    let none = back.iter().find(|r| r.model.is_none()).expect("row without model");
    assert_eq!((none.amount, none.description.as_deref()), (dec("0.1"), None), "empty keys read back as None");

    store.replace_connection_keys(&[(c.connection_id, vec![7; 20], vec![8; 12])]).expect("rotate");
    let rotated = store.get_connection(c.connection_id).expect("get").expect("exists");
    assert_eq!((rotated.key_ciphertext, rotated.key_nonce), (vec![7; 20], vec![8; 12]), "keys replaced");
    assert!(
        matches!(store.replace_connection_keys(&[(Uuid::now_v7(), vec![], vec![])]), Err(StoreError::NotFound(_))),
        "rotating an unknown connection is NotFound"
    );

    store.delete_connection(c.connection_id).expect("delete");
    assert!(store.get_connection(c.connection_id).expect("get").is_none(), "deleted");
    assert!(store.list_import_runs(c.connection_id, 10).expect("runs").is_empty(), "runs deleted with it");
    assert!(
        store.provider_costs(c.connection_id, at("2026-12-01T00:00:00Z"), at("2026-12-03T00:00:00Z")).expect("costs").is_empty(),
        "costs deleted with it"
    );
    assert!(matches!(store.delete_connection(c.connection_id), Err(StoreError::NotFound(_))), "second delete: NotFound");
}

/// An imported event for `bucket_id` (revision `rev`) with `input`/`output` tokens.
fn imported(store: &Store, event_id: Uuid, model: &str, input: u64, output: u64, when: &str) -> UsageRecord {
    let when = at(when);
    UsageRecord {
        event_id,
        user_id: "provider_import:anthropic-prod".into(),
        thread_id: None,
        message_id: None,
        model: model.into(),
        event_type: String::new(),
        source: PROVIDER_IMPORT_SOURCE.into(),
        idempotency_key: Some(format!("anthropic|{when}|{model}")),
        occurred_at: when,
        cost: price(store, model, when, &tokens(input, output)),
        key_id: None,
        task: None,
        successful: true,
    }
}

fn bucket(connection_id: Uuid, event_id: Uuid, hash: &str, revision: i64, current: Uuid) -> ImportedBucket {
    ImportedBucket {
        event_id,
        connection_id,
        starting_at: at("2026-12-01T10:00:00Z"),
        group_key: "anthropic|claude-sonnet-4|key|ws|standard".into(),
        content_hash: hash.into(),
        revision,
        current_event_id: current,
        imported_at: at("2026-12-01T11:05:00Z"),
    }
}

fn day_by_model(store: &Store) -> Vec<tally_store::analytics::Group> {
    let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("day");
    let filter = AnalyticsFilter {
        from_day: day - Duration::days(40),
        to_day: day,
        user_id: None,
        provider: None,
        model: None,
        key_id: None,
        task: None,
    };
    let mut groups = store.analytics(&filter, &[Dim::Day, Dim::Model, Dim::User]).expect("analytics");
    groups.extend(store.analytics(&filter, &[]).expect("totals"));
    groups
}

fn revised_bucket_replaces_its_event_exactly(db: &TestDb) {
    let (store, _) = seeded(db);
    let c = store.create_connection(&connection("anthropic-prod")).expect("connection");
    let bucket_id = Uuid::now_v7();
    let first = imported(&store, bucket_id, SONNET, 1_000, 100, "2026-12-01T10:00:00Z");
    // A neighbour of the same day and model, which must be left as it was.
    let other = imported(&store, Uuid::now_v7(), SONNET, 77, 7, "2026-12-01T09:00:00Z");
    store.write_batch(&[WriteOp::Usage(first.clone()), WriteOp::Usage(other.clone())]).expect("write");
    store.record_imported_buckets(&[bucket(c.connection_id, bucket_id, "h0", 0, bucket_id)]).expect("record");

    let new_id = Uuid::now_v7();
    let second = imported(&store, new_id, SONNET, 1_500, 90, "2026-12-01T10:00:00Z");
    let revision = BucketRevision {
        run_id: None,
        bucket: bucket(c.connection_id, bucket_id, "h1", 1, new_id),
        usage: second.clone(),
        old_quantities: r#"{"input_tokens":"1000","output_tokens":"100"}"#.into(),
        new_quantities: r#"{"input_tokens":"1500","output_tokens":"90"}"#.into(),
    };
    assert_eq!(store.revise_imported_bucket(&revision).expect("revise"), RevisionOutcome::Applied, "applied");

    let all = LineFilter::default();
    let events = store.usage_events(&all, 10).expect("events");
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    assert!(!ids.contains(&bucket_id), "the earlier event is gone");
    assert!(ids.contains(&new_id) && ids.contains(&other.event_id), "the revision and the neighbour stand");
    let new = events.iter().find(|e| e.event_id == new_id).expect("new event");
    assert_eq!(new.cost, second.cost, "the revision is stored with its exact cost");
    assert_eq!(count(&store, "user_invoice_line_item"), 4, "the earlier event's lines are gone");

    let rolled = day_by_model(&store);
    let total = rolled.last().expect("totals").figures.clone();
    assert_eq!(total.requests, 2, "two events counted after the revision");
    assert_eq!(total.cost, second.cost.total + other.cost.total, "the rollups hold exactly the standing events");
    assert_eq!(
        total.kinds.get("input_tokens").map(|k| k.quantity),
        Some(dec("1577")),
        "input tokens: the revision's plus the neighbour's"
    );
    store.rebuild_rollups().expect("rebuild");
    assert_eq!(day_by_model(&store), rolled, "subtracting the old event equals rebuilding the rollups");

    let b = store.imported_buckets(&[bucket_id]).expect("bucket");
    assert_eq!((b[0].revision, b[0].current_event_id, b[0].content_hash.as_str()), (1, new_id, "h1"), "bucket moved");
    let audit = store.import_revisions(Some(bucket_id)).expect("audit");
    assert_eq!(audit.len(), 1, "one audit row");
    assert_eq!(
        (audit[0].status.as_str(), audit[0].old_event_id, audit[0].new_event_id, audit[0].old_hash.as_str()),
        ("applied", bucket_id, new_id, "h0"),
        "the audit row names both events and hashes"
    );
    assert_eq!(store.revise_imported_bucket(&revision).expect("again"), RevisionOutcome::Unchanged, "idempotent");
    assert_eq!(store.import_revisions(None).expect("audit").len(), 1, "no second audit row");
}

fn revision_of_an_invoiced_event_is_refused_and_recorded(db: &TestDb) {
    let (store, _) = seeded(db);
    let c = store.create_connection(&connection("anthropic-prod")).expect("connection");
    let bucket_id = Uuid::now_v7();
    let first = imported(&store, bucket_id, HAIKU, 1_000, 100, "2026-12-01T10:00:00Z");
    store.write_batch(&[WriteOp::Usage(first.clone())]).expect("write");
    store.record_imported_buckets(&[bucket(c.connection_id, bucket_id, "h0", 0, bucket_id)]).expect("record");
    let lines = store.usage_lines(&LineFilter::default()).expect("lines");
    let invoice = Invoice::new(first.user_id.clone(), None, None, lines, at("2026-12-02T00:00:00Z"));
    store.create_invoice(&invoice).expect("invoice");

    let new_id = Uuid::now_v7();
    let revision = BucketRevision {
        run_id: None,
        bucket: bucket(c.connection_id, bucket_id, "h1", 1, new_id),
        usage: imported(&store, new_id, HAIKU, 2_000, 100, "2026-12-01T10:00:00Z"),
        old_quantities: "{}".into(),
        new_quantities: "{}".into(),
    };
    for _ in 0..2 {
        let outcome = store.revise_imported_bucket(&revision).expect("revise");
        assert!(
            matches!(&outcome, RevisionOutcome::Refused(why) if why.contains("invoiced")),
            "an invoiced event is not rewritten: {outcome:?}"
        );
    }
    let events = store.usage_events(&LineFilter::default(), 10).expect("events");
    assert_eq!(events.len(), 1, "only the invoiced event stands");
    assert_eq!(events[0].event_id, bucket_id, "the invoiced event was kept");
    assert_eq!(store.get_invoice(invoice.id).expect("get").expect("invoice"), invoice, "the invoice is untouched");
    let audit = store.import_revisions(Some(bucket_id)).expect("audit");
    assert_eq!(audit.len(), 1, "the refusal is recorded once per revised content");
    assert_eq!(audit[0].status, "refused", "recorded as refused");
    assert_eq!(store.imported_buckets(&[bucket_id]).expect("bucket")[0].revision, 0, "the bucket did not move");
}

fn reconciliation_splits_reported_and_metered(db: &TestDb) {
    let (store, thread) = seeded(db);
    let c = store.create_connection(&connection("anthropic-prod")).expect("connection");
    let reported = imported(&store, Uuid::now_v7(), HAIKU, 1_000, 100, "2026-12-01T10:00:00Z");
    let mut metered = imported(&store, Uuid::now_v7(), HAIKU, 900, 100, "2026-12-01T12:00:00Z");
    metered.source = "chat".into();
    metered.user_id = thread.user_id.clone();
    let mut openai = imported(&store, Uuid::now_v7(), "gpt-4o", 5, 5, "2026-12-01T12:00:00Z");
    openai.source = "ingest".into();
    let late = imported(&store, Uuid::now_v7(), HAIKU, 1, 1, "2026-12-02T00:00:00Z");
    store
        .write_batch(&[
            WriteOp::Usage(reported.clone()),
            WriteOp::Usage(metered.clone()),
            WriteOp::Usage(openai),
            WriteOp::Usage(late),
        ])
        .expect("write");
    store
        .upsert_provider_costs(&[cost(c.connection_id, Some(HAIKU), "0.0015"), cost(c.connection_id, None, "0.25")])
        .expect("costs");

    let rows = store.reconciliation("anthropic", at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z")).expect("rows");
    assert_eq!(rows.len(), 2, "one row for Haiku, one for costs without a model; other providers and days excluded");
    let haiku = &rows[0];
    assert_eq!(haiku.model.as_deref(), Some(HAIKU), "models first, the unattributed row last");
    assert_eq!(haiku.reported.get(UsageKind::InputTokens.as_str()), Some(&dec("1000")), "reported input");
    assert_eq!(haiku.metered.get(UsageKind::InputTokens.as_str()), Some(&dec("900")), "metered input");
    assert_eq!(haiku.tally_priced_cost, reported.cost.total, "Tally's price for the reported usage");
    assert_eq!(haiku.metered_cost, metered.cost.total, "metered cost");
    assert_eq!(haiku.reported_cost, Some(dec("0.0015")), "provider-reported cost");
    assert_eq!((haiku.reported_events, haiku.metered_events), (1, 1), "event counts");
    assert_eq!(rows[1].model, None, "unattributed provider cost");
    assert_eq!(rows[1].reported_cost, Some(dec("0.25")), "its amount");
}
