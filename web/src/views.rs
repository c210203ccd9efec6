//! JSON views returned by the API (money as decimal strings).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tally_domain::{Cost, Money, Usage};
use tally_store::{MessageRecord, MessageStatus, Role, StoredMessage};
use uuid::Uuid;

/// A message with its usage and cost (assistant messages) and the thread total after it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Message id.
    pub message_id: Uuid,
    /// Thread.
    pub thread_id: Uuid,
    /// Author's user id (the thread owner).
    pub user_id: String,
    /// `user` or `assistant`.
    pub role: Role,
    /// Text.
    pub content: String,
    /// Model of the thread.
    pub model: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// True when the reply came from the built-in simulator, not a real model.
    pub simulated: bool,
    /// `complete`, `interrupted` (stream broke; usage so far billed) or `failed`.
    pub status: MessageStatus,
    /// Tokens/resources by kind (assistant messages).
    pub usage: Option<Usage>,
    /// Cost lines by kind with the price version used, and their total.
    pub cost: Option<Cost>,
    /// Cost by kind, for display.
    pub cost_by_kind: BTreeMap<String, Money>,
    /// The message's total cost (zero for user messages).
    pub cost_total: Money,
    /// The thread's running total after this message.
    pub thread_total_after: Money,
}

impl MessageView {
    /// A view of a message with an optional cost.
    pub fn new(message: MessageRecord, cost: Option<Cost>, thread_total_after: Money) -> Self {
        let usage = cost.as_ref().map(|c| {
            // Lines carry validated quantities, so rebuilding cannot fail; fall back to empty.
            Usage::try_from_pairs(c.lines.iter().map(|l| (l.kind.clone(), l.quantity))).unwrap_or_default()
        });
        let cost_by_kind = cost
            .as_ref()
            .map(|c| c.lines.iter().map(|l| (l.kind.to_string(), l.amount)).collect())
            .unwrap_or_default();
        let cost_total = cost.as_ref().map(|c| c.total).unwrap_or(Money::ZERO);
        MessageView {
            message_id: message.message_id,
            thread_id: message.thread_id,
            user_id: message.user_id,
            role: message.role,
            content: message.content,
            model: message.model,
            created_at: message.created_at,
            simulated: message.simulated,
            status: message.status,
            usage,
            cost,
            cost_by_kind,
            cost_total,
            thread_total_after,
        }
    }
}

/// Views of a thread's stored messages with running totals; returns them and the final total.
pub fn history_views(stored: Vec<StoredMessage>) -> (Vec<MessageView>, Money) {
    let mut total = Money::ZERO;
    let views = stored
        .into_iter()
        .map(|m| {
            if let Some(c) = &m.cost {
                total += c.total;
            }
            MessageView::new(m.message, m.cost, total)
        })
        .collect();
    (views, total)
}
