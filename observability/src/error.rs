//! The crate's one error type: failures to set up, flush or shut down telemetry.

/// Failure to install, flush or shut down telemetry.
#[derive(Debug, thiserror::Error)]
pub enum ObservabilityError {
    /// The RUST_LOG filter does not parse.
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(String),
    /// A global subscriber was already installed.
    #[error("tracing already initialised: {0}")]
    AlreadySet(String),
    /// The OTLP exporter could not be built (bad `OTEL_EXPORTER_OTLP_ENDPOINT`, no HTTP client).
    #[error("OTLP exporter (OTEL_EXPORTER_OTLP_ENDPOINT): {0}")]
    Exporter(String),
    /// Pending spans could not be delivered to the collector (unreachable, timed out, refused).
    #[error("flushing traces: {0}")]
    Flush(String),
}

impl ObservabilityError {
    /// Set-up errors are configuration errors and never retryable; a failed flush may
    /// succeed later (the collector was briefly unreachable).
    pub fn is_retryable(&self) -> bool {
        match self {
            ObservabilityError::Filter(_) | ObservabilityError::AlreadySet(_) | ObservabilityError::Exporter(_) => {
                false
            }
            ObservabilityError::Flush(_) => true,
        }
    }
}
