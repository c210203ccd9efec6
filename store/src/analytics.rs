//! Analytics records: rollup figures grouped by dimensions, usage-log pages and their filters.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::gateway::GatewayCallRecord;
use crate::records::UsageRecord;
use crate::store::{run, Store};

/// Which rollups an analytics query reads: a range of UTC days and optional filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsFilter {
    /// First day (inclusive, UTC).
    pub from_day: NaiveDate,
    /// Last day (inclusive, UTC).
    pub to_day: NaiveDate,
    /// Only this user's usage.
    pub user_id: Option<String>,
    /// Only models of this provider.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only usage made with this gateway key.
    pub key_id: Option<Uuid>,
    /// Only usage with this task label.
    pub task: Option<String>,
}

/// A dimension to group rollups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// UTC day, `YYYY-MM-DD`.
    Day,
    /// User id.
    User,
    /// Model name.
    Model,
    /// Provider of the model.
    Provider,
    /// Gateway key id (`""`: not through the gateway).
    Key,
    /// Task label (`""`: none).
    Task,
}

/// What one kind of usage adds up to in a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindFigures {
    /// Events with this kind.
    pub requests: i64,
    /// Quantity (tokens, images, ...).
    pub quantity: Decimal,
    /// Exact cost of this kind.
    pub amount: Decimal,
}

/// What a group of usage adds up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    /// Usage events.
    pub requests: i64,
    /// Of which failed (`was_successful = false`).
    pub failed: i64,
    /// Exact cost (sum of the events' totals).
    pub cost: Decimal,
    /// By kind (`input_tokens`, `output_tokens`, ..., resource names).
    pub kinds: BTreeMap<String, KindFigures>,
}

impl Figures {
    /// Add another group's figures.
    pub fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.failed += other.failed;
        self.cost += other.cost;
        for (kind, k) in &other.kinds {
            let mine = self.kinds.entry(kind.clone()).or_default();
            mine.requests += k.requests;
            mine.quantity += k.quantity;
            mine.amount += k.amount;
        }
    }
}

/// One group: its key (one value per requested dimension, in order) and figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Values of the dimensions, in the order asked.
    pub key: Vec<String>,
    /// What the group adds up to.
    pub figures: Figures,
}

/// Where a usage-log page continues: after this event (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    /// The last event's time.
    pub occurred_at: DateTime<Utc>,
    /// The last event's sequence number.
    pub event_seq: i64,
}

/// A usage-log query: filters, page size and where to continue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this user's events.
    pub user_id: Option<String>,
    /// Only this thread's events.
    pub thread_id: Option<Uuid>,
    /// Only models of this provider.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only events made with this gateway key.
    pub key_id: Option<Uuid>,
    /// Only events with this task label.
    pub task: Option<String>,
    /// Only successful (true) or failed (false) events.
    pub successful: Option<bool>,
    /// Occurred at or after.
    pub from: Option<DateTime<Utc>>,
    /// Occurred before.
    pub to: Option<DateTime<Utc>>,
    /// Continue after this event.
    pub after: Option<EventCursor>,
    /// Page size.
    pub limit: i64,
}

/// A usage event as listed: the record plus where it sits and its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedEvent {
    /// Sequence number (the cursor's tie-breaker).
    pub event_seq: i64,
    /// Provider of the event's model.
    pub provider: String,
    /// The event with its lines.
    pub usage: UsageRecord,
}

/// One page of the usage log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPage {
    /// Events, newest first.
    pub events: Vec<ListedEvent>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<EventCursor>,
}

/// A prompt and response kept with an event (only when payload storage is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPayload {
    /// The event.
    pub event_id: Uuid,
    /// Request body or prompt.
    pub request: Option<String>,
    /// Response body or text.
    pub response: Option<String>,
}

/// One event in full: the record, its gateway call and payload when there are any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDetail {
    /// The event as listed.
    pub event: ListedEvent,
    /// The gateway call it was made by, if any.
    pub gateway: Option<GatewayCallRecord>,
    /// Stored prompt and response, if any.
    pub payload: Option<EventPayload>,
}

impl Store {
    /// Rollup figures over `filter`, grouped by `dims` (no dims: one group with the totals,
    /// absent when nothing matched). Exact: sums of the events' stored decimals.
    pub fn analytics(&self, filter: &AnalyticsFilter, dims: &[Dim]) -> Result<Vec<Group>, StoreError> {
        run!(self, read, analytics::grouped(filter, dims))
    }

    /// A page of usage events, newest first (keyset pagination: stable under inserts).
    pub fn event_page(&self, query: &EventQuery) -> Result<EventPage, StoreError> {
        run!(self, read, analytics::event_page(query))
    }

    /// One usage event in full.
    pub fn event_detail(&self, event_id: Uuid) -> Result<Option<EventDetail>, StoreError> {
        run!(self, read, analytics::event_detail(event_id))
    }

    /// Keep a prompt and response with an event (payload storage on); a second write is ignored.
    pub fn store_payload(&self, payload: &EventPayload) -> Result<(), StoreError> {
        run!(self, write, analytics::store_payload(payload))
    }

    /// Recompute every rollup row from the stored events (backfill and check). Returns the
    /// number of events counted.
    pub fn rebuild_rollups(&self) -> Result<u64, StoreError> {
        run!(self, write, analytics::rebuild_rollups())
    }

    /// Build rollups once for a database whose events predate them (marked in `store_meta`).
    pub(crate) fn ensure_rollups(&self) -> Result<(), StoreError> {
        if run!(self, read, analytics::meta(ROLLUPS_BUILT))?.is_some() {
            return Ok(());
        }
        let events = self.rebuild_rollups()?;
        run!(self, write, analytics::set_meta(ROLLUPS_BUILT, &events.to_string()))?;
        if events > 0 {
            tracing::info!(events, "Daily rollups built from the stored events.");
        }
        Ok(())
    }
}

/// `store_meta` key saying the rollups were built from the events stored before them.
const ROLLUPS_BUILT: &str = "rollups_v1";
