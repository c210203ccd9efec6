//! tally-web: the actix-web HTTP API (REST, SSE chat), with JSON errors carrying stable codes.

pub mod auth;
pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod import_cli;
pub mod metrics;
pub mod openapi;
pub mod price_sync_cli;
pub mod providers;
pub mod routes;
pub mod server;
pub mod state;
pub mod text;
pub mod views;

pub use error::ApiError;
pub use server::{configure, json_config, HttpConfig, MAX_BODY_BYTES};
pub use state::AppState;
