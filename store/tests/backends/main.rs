//! Integration tests of tally-store: every test body runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod alerts;
mod analytics;
mod batch;
mod concurrency;
mod forecasts;
mod gateway;
mod indexes;
mod invoices;
mod ops;
mod prices;
mod providers;
mod restart;
mod upgrade;
