//! The actor crate's error type.

use tally_domain::DomainError;
use tally_store::StoreError;

/// Why an actor could not do what was asked. Each variant has a stable `code()`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    /// A thread, user or record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thread is already producing a reply.
    #[error("a reply is already being generated in this thread")]
    TurnInProgress,
    /// The request was malformed.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Human explanation.
        message: String,
    },
    /// A billing rule refused the input.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Storage failed.
    #[error("storage: {message}")]
    Storage {
        /// What went wrong.
        message: String,
        /// The storage error's stable code.
        code: &'static str,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// The model provider failed.
    #[error("provider {code}: {message}")]
    Provider {
        /// The provider error's stable code.
        code: &'static str,
        /// What went wrong.
        message: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
    /// An actor is not running (mailbox closed or restarting).
    #[error("actor unavailable: {0}")]
    Unavailable(String),
}

impl ActorError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ActorError::NotFound(_) => "not_found",
            ActorError::TurnInProgress => "turn_in_progress",
            ActorError::Invalid { code, .. } => code,
            ActorError::Domain(e) => e.code(),
            ActorError::Storage { code, .. } => code,
            ActorError::Provider { code, .. } => code,
            ActorError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ActorError::NotFound(_) | ActorError::Invalid { .. } | ActorError::Domain(_) => false,
            ActorError::TurnInProgress | ActorError::Unavailable(_) => true,
            ActorError::Storage { retryable, .. } => *retryable,
            ActorError::Provider { retryable, .. } => *retryable,
        }
    }
}

impl From<StoreError> for ActorError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ActorError::NotFound(what),
            StoreError::Domain(d) => ActorError::Domain(d),
            other => {
                let retryable = other.is_retryable();
                ActorError::Storage { message: other.to_string(), code: other.code(), retryable }
            }
        }
    }
}

impl From<tally_llm::LlmError> for ActorError {
    fn from(e: tally_llm::LlmError) -> Self {
        ActorError::Provider { code: e.code(), message: e.to_string(), retryable: e.is_retryable() }
    }
}

impl From<actix::MailboxError> for ActorError {
    fn from(e: actix::MailboxError) -> Self {
        ActorError::Unavailable(e.to_string())
    }
}
