//! Seeding and SCD2 price versions.

use chrono::Duration;
use tally_domain::UsageKind;
use tally_store::StoreError;

use crate::common::{at, catalog, dec, on_both_backends, TestDb, HAIKU};

on_both_backends!(
    migrate_and_seed_twice_is_idempotent,
    new_price_version_closes_current_and_lookup_picks_by_time,
    rewriting_price_history_is_refused_and_changes_nothing,
);

fn migrate_and_seed_twice_is_idempotent(db: &TestDb) {
    let catalog = catalog();
    let store = db.open();
    let first = store.seed(&catalog).expect("first seed");
    assert_eq!(first.models, catalog.models.len(), "every catalogue model inserted");
    assert_eq!(
        first.event_types,
        catalog.resources.len(),
        "every resource event type inserted (token_usage comes with the schema)"
    );
    assert_eq!(first.price_versions, catalog.prices().len(), "every catalogue price inserted");
    let counts = store.row_counts().expect("counts");
    drop(store);

    let store = db.open();
    let second = store.seed(&catalog).expect("second seed");
    assert_eq!((second.models, second.event_types, second.price_versions), (0, 0, 0), "second seed inserts nothing");
    assert_eq!(store.row_counts().expect("counts"), counts, "row counts unchanged by migrate + seed again");

    let history = store.price_history(HAIKU, &UsageKind::InputTokens).expect("history");
    assert_eq!(history.len(), 1, "one Haiku input version");
    assert!(history[0].is_current, "it is current");
    assert_eq!(history[0].price, dec("0.80"), "Haiku input is $0.80/MTok");
    let book = store.load_price_book().expect("book");
    let now = book.lookup(HAIKU, &UsageKind::InputTokens, chrono::Utc::now()).expect("current price");
    assert_eq!(now.price, dec("0.80"), "price book agrees: Haiku input 0.80 now");
    let search = book.lookup(HAIKU, &UsageKind::Resource("web_search_requests".into()), chrono::Utc::now());
    assert_eq!(search.map(|v| v.price).ok(), Some(dec("0.01")), "resource prices are in the book too");
    let models = store.list_models().expect("models");
    assert_eq!(models.len(), catalog.models.len(), "all models listed");
    assert_eq!(store.get_model(HAIKU).expect("get").map(|m| m.provider), Some("anthropic".into()), "model by name");
}

fn new_price_version_closes_current_and_lookup_picks_by_time(db: &TestDb) {
    let store = db.open();
    store.seed(&catalog()).expect("seed");
    let change = at("2026-01-01T00:00:00.123456Z");
    let (closed, new) =
        store.add_price_version(HAIKU, &UsageKind::InputTokens, dec("1.00"), change).expect("add version");
    let closed = closed.expect("the seeded version is closed");
    assert_eq!(closed.effective_to, Some(change), "old version closed at the new instant");
    assert!(!closed.is_current, "old version no longer current");
    assert_eq!(closed.price, dec("0.80"), "old version keeps its price");
    assert!(new.is_current && new.effective_to.is_none(), "new version is current and open");

    let history = store.price_history(HAIKU, &UsageKind::InputTokens).expect("history");
    assert_eq!(history, vec![closed.clone(), new.clone()], "stored history is exactly closed + new");
    let book = store.load_price_book().expect("book");
    let before = book.lookup(HAIKU, &UsageKind::InputTokens, change - Duration::microseconds(1)).expect("before");
    let from = book.lookup(HAIKU, &UsageKind::InputTokens, change).expect("at change");
    assert_eq!(before.price, dec("0.80"), "one microsecond before the change: old price");
    assert_eq!(before.id, closed.id, "old version id");
    assert_eq!(from.price, dec("1.00"), "from the change instant: new price");
    assert_eq!(from.id, new.id, "new version id");
    let output = book.lookup(HAIKU, &UsageKind::OutputTokens, change).expect("output");
    assert_eq!(output.price, dec("4"), "other kinds are untouched");

    let search = UsageKind::Resource("web_search_requests".into());
    let (closed, _) = store.add_price_version(HAIKU, &search, dec("0.02"), change).expect("resource version");
    assert_eq!(closed.map(|c| c.price), Some(dec("0.01")), "resource prices use the same SCD2 close-and-insert");

    let missing = store.add_price_version("no-such-model", &UsageKind::InputTokens, dec("1"), change);
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "unknown model is NotFound: {missing:?}");
    let missing = store.add_price_version(HAIKU, &UsageKind::Resource("teleports".into()), dec("1"), change);
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "unknown resource event type is NotFound: {missing:?}");
}

fn rewriting_price_history_is_refused_and_changes_nothing(db: &TestDb) {
    let store = db.open();
    store.seed(&catalog()).expect("seed");
    let change = at("2026-01-01T00:00:00Z");
    store.add_price_version(HAIKU, &UsageKind::InputTokens, dec("1.00"), change).expect("add version");
    let before = store.row_counts().expect("counts");
    let history = store.price_history(HAIKU, &UsageKind::InputTokens).expect("history");

    for (when, what) in [(change, "same start"), (at("2025-06-01T00:00:00Z"), "earlier start")] {
        let err = store.add_price_version(HAIKU, &UsageKind::InputTokens, dec("2"), when).expect_err(what);
        assert_eq!(err.code(), "price_rewrites_history", "{what} is refused as rewriting history");
        assert!(matches!(err, StoreError::Domain(_)), "{what} is a domain refusal");
    }
    let negative = store.add_price_version(HAIKU, &UsageKind::InputTokens, dec("-1"), at("2027-01-01T00:00:00Z"));
    assert_eq!(negative.map(|_| ()).map_err(|e| e.code()), Err("negative_price"), "negative price refused");

    assert_eq!(store.price_history(HAIKU, &UsageKind::InputTokens).expect("history"), history, "history unchanged");
    assert_eq!(store.row_counts().expect("counts"), before, "no row changed");
}
