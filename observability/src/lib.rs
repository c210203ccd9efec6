//! tally-observability: process-wide tracing set-up (structured logs, human or JSON).
//!
//! OTLP export to Jaeger and Prometheus metrics are added by the observability
//! issue; until then every role logs structured events to stderr.

use tracing_subscriber::{fmt, EnvFilter};

/// Default filter when `RUST_LOG` is unset.
pub const DEFAULT_LOG_FILTER: &str = "info,actix_server=warn";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Failure to install the subscriber.
#[derive(Debug, thiserror::Error)]
pub enum ObservabilityError {
    /// The RUST_LOG filter does not parse.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("tracing already initialised: {0}")]
    AlreadySet(String),
}

impl ObservabilityError {
    /// Never retryable: set-up errors are configuration errors.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Install the global tracing subscriber for a role (`tally-web`, `tally-collector`, ...).
pub fn init(service: &str, format: LogFormat) -> Result<(), ObservabilityError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(f) => EnvFilter::try_new(f).map_err(|e| ObservabilityError::Filter(e.to_string()))?,
        Err(_) => EnvFilter::new(DEFAULT_LOG_FILTER),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| ObservabilityError::AlreadySet(e.to_string()))?;
    tracing::info!(service, "Logging initialised.");
    Ok(())
}
