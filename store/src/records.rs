//! The records the store reads and writes: users, models, threads, messages, usage, batches.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Which database a [`Store`](crate::Store) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite file or in-memory database (bundled SQLite).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl Backend {
    /// Stable name for logs and health output.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// What [`Store::seed`](crate::Store::seed) inserted (zero everywhere on a second run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    /// Models inserted.
    pub models: usize,
    /// Event types inserted.
    pub event_types: usize,
    /// Price versions inserted.
    pub price_versions: usize,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Chosen by the user (validated by the API layer, not here).
    pub user_id: String,
    /// Display name.
    pub username: String,
    /// Contact address, when known.
    pub email: Option<String>,
    /// When the user was created (stored to the microsecond).
    pub created_at: DateTime<Utc>,
}

/// A model from the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Surrogate key (`dim_models.model_id`).
    pub model_id: i64,
    /// API model id, e.g. `claude-3-5-haiku-20241022`.
    pub name: String,
    /// `anthropic` or `openai`.
    pub provider: String,
    /// What it is.
    pub description: String,
    /// Whether it may be used for new threads.
    pub is_active: bool,
}

/// A chat thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRecord {
    /// Thread id (UUIDv7).
    pub thread_id: Uuid,
    /// Owner.
    pub user_id: String,
    /// Title shown in lists.
    pub title: String,
    /// Model name.
    pub model: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last activity; [`Store::write_batch`](crate::Store::write_batch) moves it forward.
    pub updated_at: DateTime<Utc>,
    /// False once archived.
    pub is_active: bool,
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// Stable storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// Parse the storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Fully written.
    Complete,
    /// Stopped early (client went away, cancelled); the content is partial.
    Interrupted,
    /// The provider failed.
    Failed,
}

impl MessageStatus {
    /// Stable storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Complete => "complete",
            MessageStatus::Interrupted => "interrupted",
            MessageStatus::Failed => "failed",
        }
    }

    /// Parse the storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "complete" => Some(MessageStatus::Complete),
            "interrupted" => Some(MessageStatus::Interrupted),
            "failed" => Some(MessageStatus::Failed),
            _ => None,
        }
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Message id (UUIDv7); writing it twice is a no-op.
    pub message_id: Uuid,
    /// Its thread (must exist).
    pub thread_id: Uuid,
    /// Author (the thread's user for both roles).
    pub user_id: String,
    /// Who wrote it.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Model name (must exist).
    pub model: String,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// True when produced by the built-in simulator.
    pub simulated: bool,
    /// How it ended.
    pub status: MessageStatus,
}

/// A priced usage event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Event id (UUIDv7); writing it twice is a no-op.
    pub event_id: Uuid,
    /// Billed user (created on the fly when missing).
    pub user_id: String,
    /// Thread, when the usage came from a chat.
    pub thread_id: Option<Uuid>,
    /// Message the usage belongs to.
    pub message_id: Option<Uuid>,
    /// Model name (must exist).
    pub model: String,
    /// `token_usage` when any line is a token kind, else the first resource kind's name.
    /// Ignored on write (derived from the lines), filled on read.
    pub event_type: String,
    /// Where it came from (`chat`, `ingest`, `import:anthropic`...).
    pub source: String,
    /// Caller's idempotency key, kept for audit.
    pub idempotency_key: Option<String>,
    /// When the usage happened (prices are those in force then).
    pub occurred_at: DateTime<Utc>,
    /// The priced lines and their exact total.
    pub cost: tally_domain::Cost,
    /// The gateway's virtual key the usage was made with, if any.
    #[serde(default)]
    pub key_id: Option<Uuid>,
    /// Task label for analytics (`chat` for chat turns; from the ingest body or the
    /// gateway's `x-tally-task` header), if any.
    #[serde(default)]
    pub task: Option<String>,
    /// Whether the call succeeded (seed 003's `was_successful`).
    #[serde(default = "succeeded")]
    pub successful: bool,
}

/// Usage is successful unless said otherwise.
fn succeeded() -> bool {
    true
}

/// One write of a persister batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "record", rename_all = "snake_case")]
pub enum WriteOp {
    /// Store a chat message.
    Message(MessageRecord),
    /// Store a priced usage event with its lines.
    Usage(UsageRecord),
    /// Store a gateway call (keyed by its usage event's id; a repeat is skipped).
    Gateway(crate::gateway::GatewayCallRecord),
}

/// What [`Store::write_batch`](crate::Store::write_batch) did, ids in input order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    /// Messages newly stored.
    pub inserted_messages: Vec<Uuid>,
    /// Usage events newly stored.
    pub inserted_events: Vec<Uuid>,
    /// Messages already stored (or repeated in the batch): skipped.
    pub duplicate_messages: Vec<Uuid>,
    /// Usage events already stored (or repeated in the batch): skipped.
    pub duplicate_events: Vec<Uuid>,
}

/// A message with the cost of the usage linked to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The message.
    pub message: MessageRecord,
    /// Lines of all usage events with this message id (events oldest first, lines in
    /// kind order within an event) and the sum of their totals; `None` without usage.
    pub cost: Option<tally_domain::Cost>,
    /// Those usage events, oldest first.
    pub usage_event_ids: Vec<Uuid>,
}

/// Which usage lines or events to read. Every set field must match.
#[derive(Debug, Default, Clone)]
pub struct LineFilter {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this thread's.
    pub thread_id: Option<Uuid>,
    /// Only lines not on an invoice yet (for events: with at least one such line).
    pub uninvoiced_only: bool,
    /// Occurred at or after (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Occurred before (exclusive).
    pub to: Option<DateTime<Utc>>,
}
