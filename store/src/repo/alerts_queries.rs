// alerts queries. Like `queries.rs`, not a module of its own: `sqlite.rs` and `postgres.rs`
// each include it in a `alerts` submodule, so every query is written once and type-checked
// against both backends.
