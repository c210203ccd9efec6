//! The domain's error type: every way a billing rule can refuse its input.

use chrono::{DateTime, Utc};

/// A billing rule was violated. Each variant has a stable `code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A quantity was negative.
    #[error("quantity for {kind} is negative: {quantity}")]
    NegativeQuantity { kind: String, quantity: String },
    /// A token quantity had a fractional part.
    #[error("token quantity for {kind} must be a whole number: {quantity}")]
    FractionalTokens { kind: String, quantity: String },
    /// A price was negative.
    #[error("price must not be negative: {0}")]
    NegativePrice(String),
    /// A usage kind name is not well formed.
    #[error("invalid usage kind {0:?}: use lowercase letters, digits and '_' (1-64 chars)")]
    InvalidKind(String),
    /// No price version is in force for this model and kind at that instant.
    #[error("no price for model {model} kind {kind} at {at}")]
    NoPrice { model: String, kind: String, at: DateTime<Utc> },
    /// A new price version would rewrite history (it starts at or before the current one).
    #[error("new price for {model}/{kind} starts at {new_from}, not after the current version's start {current_from}")]
    RewritesHistory { model: String, kind: String, new_from: DateTime<Utc>, current_from: DateTime<Utc> },
    /// Price versions of one model and kind leave a gap or overlap.
    #[error("price versions for {model}/{kind} are not contiguous: {detail}")]
    NotContiguous { model: String, kind: String, detail: String },
    /// The price catalogue data file is malformed.
    #[error("price catalogue is invalid: {0}")]
    InvalidCatalog(String),
    /// A model name is empty or too long.
    #[error("invalid model name {0:?}")]
    InvalidModel(String),
    /// A budget period that is not `daily`, `weekly` or `monthly`.
    #[error("invalid budget period {0:?}: use daily, weekly or monthly")]
    InvalidBudgetPeriod(String),
    /// A time zone that is not an IANA name known to the embedded tz database.
    #[error("unknown time zone {0:?}: use an IANA name such as UTC or Europe/Berlin")]
    InvalidTimeZone(String),
    /// A published price list (LiteLLM's JSON) is malformed.
    #[error("price list is invalid: {0}")]
    InvalidPriceList(String),
    /// Text from outside holds a character no backend may store alike (NUL).
    #[error("{field} must not contain NUL (U+0000)")]
    InvalidText { field: String },
}

impl DomainError {
    /// Stable machine-readable code for API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NegativeQuantity { .. } => "negative_quantity",
            DomainError::FractionalTokens { .. } => "fractional_tokens",
            DomainError::NegativePrice(_) => "negative_price",
            DomainError::InvalidKind(_) => "invalid_usage_kind",
            DomainError::NoPrice { .. } => "no_price",
            DomainError::RewritesHistory { .. } => "price_rewrites_history",
            DomainError::NotContiguous { .. } => "price_not_contiguous",
            DomainError::InvalidCatalog(_) => "invalid_catalog",
            DomainError::InvalidModel(_) => "invalid_model",
            DomainError::InvalidBudgetPeriod(_) => "invalid_budget_period",
            DomainError::InvalidTimeZone(_) => "invalid_time_zone",
            DomainError::InvalidPriceList(_) => "invalid_price_list",
            DomainError::InvalidText { .. } => "invalid_text",
        }
    }
}
