//! Records of the gateway: virtual keys, budgets (per key or user and period) and the calls made.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A virtual key. The secret itself is never stored, only `secret_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Key id (UUIDv7).
    pub key_id: Uuid,
    /// The public part of the key string (`tk-<public_id>-<secret>`), unique.
    pub public_id: String,
    /// Hex SHA-256 of the whole key string.
    pub secret_hash: String,
    /// Owner: usage through the key is billed to this user.
    pub user_id: String,
    /// Label.
    pub name: String,
    /// Models the key may call; `None` means every catalogue model.
    pub allowed_models: Option<Vec<String>>,
    /// After this instant the key is refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// Requests per minute, when limited.
    pub rpm_limit: Option<i64>,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Set once the key is revoked (it is then refused forever).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// New label.
    pub name: Option<String>,
    /// New allowed models (`Some(None)`: every model).
    pub allowed_models: Option<Option<Vec<String>>>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New rate limit (`Some(None)`: unlimited).
    pub rpm_limit: Option<Option<i64>>,
}

/// What a budget limits: one key, or all of a user's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "scope_id", rename_all = "snake_case")]
pub enum BudgetScope {
    /// One virtual key.
    Key(Uuid),
    /// Every key of one user.
    User(String),
}

impl BudgetScope {
    /// Stable storage name of the scope kind.
    pub fn kind(&self) -> &'static str {
        match self {
            BudgetScope::Key(_) => "key",
            BudgetScope::User(_) => "user",
        }
    }

    /// The scope's id as stored (`scope_id`).
    pub fn id(&self) -> String {
        match self {
            BudgetScope::Key(k) => k.to_string(),
            BudgetScope::User(u) => u.clone(),
        }
    }

    /// Parse the stored pair.
    pub fn parse(kind: &str, id: &str) -> Option<Self> {
        match kind {
            "key" => Uuid::parse_str(id).ok().map(BudgetScope::Key),
            "user" => Some(BudgetScope::User(id.to_string())),
            _ => None,
        }
    }
}

/// A spend limit over a calendar period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// Budget id (UUIDv7); kept when the budget is updated.
    pub budget_id: Uuid,
    /// What it limits.
    pub scope: BudgetScope,
    /// `daily`, `weekly` or `monthly` (one budget per scope and period).
    pub period: String,
    /// Most that may be spent in one period, USD.
    pub max_budget: Decimal,
    /// Fraction of `max_budget` (0..=1) at which an alert is sent once per period.
    pub alert_threshold: Option<Decimal>,
    /// IANA time zone the period's calendar boundaries are in.
    pub timezone: String,
    /// Disabled budgets are kept but not enforced.
    pub enabled: bool,
    /// Creation instant.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One call through the gateway (written with its usage event, same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCallRecord {
    /// The usage event's id (the call's cost is that event's).
    pub event_id: Uuid,
    /// Key used.
    pub key_id: Uuid,
    /// Key owner.
    pub user_id: String,
    /// `anthropic`, `openai` or `simulator`.
    pub provider: String,
    /// Model asked for.
    pub model: String,
    /// `chat_completions` or `messages`.
    pub route: String,
    /// `ok`, `upstream_error`, `interrupted` or `client_closed`.
    pub status: String,
    /// HTTP status answered to the client.
    pub http_status: i32,
    /// Wall time of the upstream call, milliseconds.
    pub latency_ms: i64,
    /// The provider's request id.
    pub upstream_request_id: Option<String>,
    /// Whether the simulator answered.
    pub simulated: bool,
    /// All tokens of the call (every kind).
    pub total_tokens: i64,
    /// When the call was made.
    pub occurred_at: DateTime<Utc>,
}

/// A gateway call with its cost, as read for spend reports and budget baselines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCallCost {
    /// Key used.
    pub key_id: Uuid,
    /// Model.
    pub model: String,
    /// Provider.
    pub provider: String,
    /// Tokens of every kind.
    pub total_tokens: i64,
    /// Exact cost (zero when the call produced no usage).
    pub cost: Decimal,
    /// When the call was made.
    pub occurred_at: DateTime<Utc>,
}
