//! The store's error type: every way a storage call can fail, each with a stable `code()`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tally_domain::DomainError;

/// Prefix of [`StoreError::Database`] messages for failures that go away on retry
/// (SQLite busy/locked, PostgreSQL serialization failure or deadlock, lost connection).
pub const TRANSIENT_PREFIX: &str = "transient: ";

/// Messages SQLite uses for lock contention (SQLITE_BUSY / SQLITE_LOCKED).
const SQLITE_BUSY_MESSAGES: [&str; 2] = ["database is locked", "database table is locked"];

/// A storage call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for (a user, model, thread, invoice, line...) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The write collides with existing data (duplicate id, line already invoiced, concurrent change).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The input cannot be stored (unknown model in a batch, bad quantity, broken reference).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A billing rule refused the change (e.g. a price version that rewrites history).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database failed; retryable when the message starts with [`TRANSIENT_PREFIX`].
    #[error("database error: {0}")]
    Database(String),
    /// No connection could be had (pool timeout, server unreachable). Retryable.
    #[error("connection pool error: {0}")]
    Pool(String),
    /// Migrations could not be applied.
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    /// Stable machine-readable code for API error bodies; domain errors keep their own code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::Conflict(_) => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::Domain(e) => e.code(),
            StoreError::Database(_) => "database",
            StoreError::Pool(_) => "database_unavailable",
            StoreError::Migration(_) => "migration",
        }
    }

    /// Whether the same call may succeed if tried again (busy, locked, pool timeout, lost connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Database(message) => message.starts_with(TRANSIENT_PREFIX),
            StoreError::NotFound(_)
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            | StoreError::Domain(_)
            | StoreError::Migration(_) => false,
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound("row".into()),
            DieselError::DatabaseError(kind, info) => {
                let message = info.message().to_string();
                match kind {
                    DatabaseErrorKind::UniqueViolation => StoreError::Conflict(message),
                    DatabaseErrorKind::ForeignKeyViolation => {
                        StoreError::Invalid(format!("reference to a missing row: {message}"))
                    }
                    DatabaseErrorKind::CheckViolation | DatabaseErrorKind::NotNullViolation => {
                        StoreError::Invalid(message)
                    }
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection => {
                        StoreError::Database(format!("{TRANSIENT_PREFIX}{message}"))
                    }
                    _ if SQLITE_BUSY_MESSAGES.iter().any(|m| message.contains(m))
                        || message.contains("deadlock detected") =>
                    {
                        StoreError::Database(format!("{TRANSIENT_PREFIX}{message}"))
                    }
                    _ => StoreError::Database(message),
                }
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

impl From<diesel::ConnectionError> for StoreError {
    fn from(e: diesel::ConnectionError) -> Self {
        StoreError::Pool(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_pool_errors_are_retryable() {
        assert!(StoreError::Pool("timed out".into()).is_retryable(), "pool timeout is retryable");
        assert!(
            StoreError::Database(format!("{TRANSIENT_PREFIX}database is locked")).is_retryable(),
            "transient database errors are retryable"
        );
        assert!(!StoreError::Database("syntax error".into()).is_retryable(), "other database errors are not");
        assert!(!StoreError::Conflict("dup".into()).is_retryable(), "conflicts are not retryable");
    }

    #[test]
    fn codes_are_stable() {
        assert_eq!(StoreError::NotFound("x".into()).code(), "not_found", "not found code");
        assert_eq!(StoreError::Conflict("x".into()).code(), "conflict", "conflict code");
        assert_eq!(
            StoreError::Domain(DomainError::InvalidModel("x".into())).code(),
            "invalid_model",
            "domain errors keep their code"
        );
    }
}
