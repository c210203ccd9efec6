//! tally-store: the diesel schema and repositories, one API over SQLite and PostgreSQL.
//!
//! Open with [`Store::open`]; everything is synchronous (run it off the async event
//! loop). Money is `rust_decimal::Decimal` end to end (TEXT on SQLite, NUMERIC on
//! PostgreSQL), instants are `DateTime<Utc>` stored to the microsecond, ids are UUIDv7.
//! See `store/SCHEMA.md` for the schema and how it departs from the requirements.

pub mod admin;
pub mod alerts;
pub mod analytics;
pub mod archive;
pub mod cache;
pub mod error;
pub mod forecasts;
pub mod gateway;
pub mod ops;
mod pool;
pub mod providers;
pub mod records;
mod repo;
mod rows;
mod schema;
mod sql_types;
mod store;

pub use error::StoreError;
pub use gateway::{BudgetRecord, BudgetScope, GatewayCallCost, GatewayCallRecord, KeyPatch, KeyRecord};
pub use records::{
    Backend, BatchOutcome, LineFilter, MessageRecord, MessageStatus, ModelRecord, Role, SeedReport, StoredMessage,
    ThreadRecord, UsageRecord, UserRecord, WriteOp,
};
pub use repo::TOKEN_USAGE_EVENT;
pub use sql_types::truncate_to_micros;
pub use store::Store;
