//! The archive's error type: every way archiving, restoring or verifying can fail, each with a stable `code()`.

use tally_store::StoreError;

/// An archive step failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Bad input (a month or date that does not parse, a month that is not closed yet).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The month is not in the archive.
    #[error("not found: {0}")]
    NotFound(String),
    /// The month is in a state that does not allow the step (e.g. restoring a month still hot).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A file is missing, unreadable, or does not match its manifest (checksum, rows, totals).
    #[error("archive file corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The Parquet or Arrow library failed.
    #[error("parquet: {0}")]
    Parquet(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ArchiveError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ArchiveError::Invalid(_) => "archive_invalid",
            ArchiveError::NotFound(_) => "archive_not_found",
            ArchiveError::Conflict(_) => "archive_conflict",
            ArchiveError::Corrupt(_) => "archive_corrupt",
            ArchiveError::Io { .. } => "archive_io",
            ArchiveError::Parquet(_) => "archive_parquet",
            ArchiveError::Store(e) => e.code(),
        }
    }

    /// Whether the same step may succeed if tried again (a busy database); every step is resumable.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArchiveError::Store(e) => e.is_retryable(),
            ArchiveError::Io { .. } => true,
            ArchiveError::Invalid(_)
            | ArchiveError::NotFound(_)
            | ArchiveError::Conflict(_)
            | ArchiveError::Corrupt(_)
            | ArchiveError::Parquet(_) => false,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        ArchiveError::Io { path: path.display().to_string(), source }
    }
}

impl From<parquet::errors::ParquetError> for ArchiveError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        ArchiveError::Parquet(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for ArchiveError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ArchiveError::Parquet(e.to_string())
    }
}
