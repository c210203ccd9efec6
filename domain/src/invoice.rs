//! Invoices: line items per message and kind, an exact subtotal and a rounded total.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cost::CostLine;
use crate::money::{round_invoice_total, Money};
use crate::usage::{Unit, UsageKind};

/// Payment status of an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Issued, not yet paid.
    Pending,
    /// Paid.
    Paid,
}

impl InvoiceStatus {
    /// Stable storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Pending => "pending",
            InvoiceStatus::Paid => "paid",
        }
    }

    /// Parse the storage name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(InvoiceStatus::Pending),
            "paid" => Some(InvoiceStatus::Paid),
            _ => None,
        }
    }
}

/// One invoice line: one kind of usage of one message (or usage event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// Line id.
    pub id: Uuid,
    /// The billed message (None for usage that came without one).
    pub message_id: Option<Uuid>,
    /// The usage event the line comes from.
    pub event_id: Uuid,
    /// Thread of the message, when there is one.
    pub thread_id: Option<Uuid>,
    /// What was consumed.
    pub kind: UsageKind,
    /// Unit of `quantity`.
    pub unit: Unit,
    /// How much.
    pub quantity: Decimal,
    /// Price used (per million tokens / per unit).
    pub unit_price: Money,
    /// Price version used.
    pub price_version_id: Uuid,
    /// Exact amount.
    pub amount: Money,
    /// When the usage happened.
    pub occurred_at: DateTime<Utc>,
}

impl InvoiceLine {
    /// An invoice line from a cost line of a usage event.
    pub fn from_cost_line(
        line: &CostLine,
        event_id: Uuid,
        message_id: Option<Uuid>,
        thread_id: Option<Uuid>,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        InvoiceLine {
            id: crate::ids::new_id(),
            message_id,
            event_id,
            thread_id,
            kind: line.kind.clone(),
            unit: line.unit,
            quantity: line.quantity,
            unit_price: line.unit_price,
            price_version_id: line.price_version_id,
            amount: line.amount,
            occurred_at,
        }
    }
}

/// An invoice for a user, over one thread or a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// Invoice id.
    pub id: Uuid,
    /// Billed user.
    pub user_id: String,
    /// The thread invoiced, for thread invoices.
    pub thread_id: Option<Uuid>,
    /// Start of the invoiced period (inclusive), for period invoices.
    pub period_start: Option<DateTime<Utc>>,
    /// End of the invoiced period (exclusive), for period invoices.
    pub period_end: Option<DateTime<Utc>>,
    /// Line items.
    pub lines: Vec<InvoiceLine>,
    /// Exact sum of the lines.
    pub subtotal: Money,
    /// `subtotal` rounded half-even to 6 decimal places: the amount due.
    pub total: Money,
    /// Payment status.
    pub status: InvoiceStatus,
    /// When the invoice was generated.
    pub created_at: DateTime<Utc>,
}

impl Invoice {
    /// Build a pending invoice from its lines; subtotal and total follow from them.
    pub fn new(
        user_id: String,
        thread_id: Option<Uuid>,
        period: Option<(DateTime<Utc>, DateTime<Utc>)>,
        lines: Vec<InvoiceLine>,
        created_at: DateTime<Utc>,
    ) -> Self {
        let subtotal: Money = lines.iter().map(|l| l.amount).sum();
        Invoice {
            id: crate::ids::new_id(),
            user_id,
            thread_id,
            period_start: period.map(|p| p.0),
            period_end: period.map(|p| p.1),
            lines,
            subtotal,
            total: round_invoice_total(subtotal),
            status: InvoiceStatus::Pending,
            created_at,
        }
    }
}
