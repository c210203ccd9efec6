//! The process-wide SQLite settings the store applies before its first connection
//! (multi-thread mode, no memory statistics) take effect. Its own test binary: no other
//! SQLite connection may open in this process before the store's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tally_domain::Catalog;
use tally_store::Store;

#[test]
fn the_store_turns_sqlite_memory_statistics_off_before_its_first_connection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("t.db").display())).expect("open");
    store.seed(&Catalog::parse(include_str!("../../catalog/prices.json")).expect("catalogue")).expect("seed");
    assert!(!store.list_models().expect("models").is_empty(), "the store works");
    // SAFETY: a plain read of SQLite's global counter; no arguments.
    let used = unsafe { libsqlite3_sys::sqlite3_memory_used() };
    assert_eq!(used, 0, "with memory statistics on SQLite would count the bytes it holds ({used})");
}
