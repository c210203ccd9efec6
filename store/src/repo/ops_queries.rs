// ops queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `ops` submodule, so every query is written once and type-checked
// against both backends.
