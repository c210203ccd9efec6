//! Row structs: how records map onto table rows (shared by both backends).

use diesel::prelude::*;

use crate::schema::*;
use crate::sql_types::{DbDecimal, DbTime, DbUuid};

/// A `dim_users` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = dim_users, treat_none_as_default_value = false)]
pub struct UserRow {
    pub user_id: String,
    pub username: String,
    pub email: Option<String>,
    pub created_at: DbTime,
}

/// A `dim_models` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = dim_models)]
pub struct ModelRow {
    pub model_id: i64,
    pub model_name: String,
    pub provider: String,
    pub description: String,
    pub is_active: bool,
}

/// A new `dim_models` row (the key is assigned by the database).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dim_models, treat_none_as_default_value = false)]
pub struct NewModel<'a> {
    pub model_name: &'a str,
    pub provider: &'a str,
    pub description: &'a str,
    pub is_active: bool,
}

/// A new `dim_event_types` row (the key is assigned by the database).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dim_event_types, treat_none_as_default_value = false)]
pub struct NewEventType<'a> {
    pub event_name: &'a str,
    pub description: &'a str,
    pub unit_of_measure: &'a str,
    pub is_active: bool,
}

/// A `dim_token_pricing` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dim_token_pricing, treat_none_as_default_value = false)]
pub struct TokenPriceRow<'a> {
    pub pricing_id: DbUuid,
    pub model_id: i64,
    pub token_type: &'a str,
    pub price_per_million: DbDecimal,
    pub effective_from: DbTime,
    pub effective_to: Option<DbTime>,
    pub is_current: bool,
}

/// A `dim_resource_pricing` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = dim_resource_pricing, treat_none_as_default_value = false)]
pub struct ResourcePriceRow {
    pub resource_pricing_id: DbUuid,
    pub model_id: i64,
    pub event_type_id: i64,
    pub unit_price: DbDecimal,
    pub effective_from: DbTime,
    pub effective_to: Option<DbTime>,
    pub is_current: bool,
}

/// A `user_threads` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = user_threads, treat_none_as_default_value = false)]
pub struct NewThread<'a> {
    pub thread_id: DbUuid,
    pub user_id: &'a str,
    pub title: &'a str,
    pub model_id: i64,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    pub is_active: bool,
}

// The persister's rows own their strings: diesel caches a multi-row INSERT only
// for a fixed-size array of rows, and that needs `'static` row types.

/// A `user_thread_messages` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = user_thread_messages, treat_none_as_default_value = false)]
pub struct NewMessage {
    pub message_id: DbUuid,
    pub thread_id: DbUuid,
    pub user_id: String,
    pub content: String,
    pub role: String,
    pub model_id: i64,
    pub created_at: DbTime,
    pub simulated: bool,
    pub status: String,
}

/// An `api_events` row (without its `event_seq`, which the database assigns).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_events, treat_none_as_default_value = false)]
pub struct NewEvent {
    pub event_id: DbUuid,
    pub user_id: String,
    pub thread_id: Option<DbUuid>,
    pub message_id: Option<DbUuid>,
    pub model_id: i64,
    pub event_type_id: i64,
    pub quantity: DbDecimal,
    pub cost_total: DbDecimal,
    pub source: String,
    pub idempotency_key: Option<String>,
    pub occurred_at: DbTime,
    pub created_at: DbTime,
    pub key_id: Option<DbUuid>,
    pub task: Option<String>,
    pub successful: bool,
}

/// A `user_invoice_line_item` row (not yet invoiced).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_invoice_line_item, treat_none_as_default_value = false)]
pub struct NewTokenLine {
    pub line_item_id: DbUuid,
    pub event_seq: i64,
    pub token_type: String,
    pub token_count: i64,
    pub pricing_id: DbUuid,
    pub quantity: DbDecimal,
    pub unit_price: DbDecimal,
    pub amount: DbDecimal,
    pub created_at: DbTime,
}

/// A `resource_invoice_line_item` row (not yet invoiced).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = resource_invoice_line_item, treat_none_as_default_value = false)]
pub struct NewResourceLine {
    pub resource_line_item_id: DbUuid,
    pub event_seq: i64,
    pub resource_pricing_id: DbUuid,
    pub event_type_id: i64,
    pub quantity: DbDecimal,
    pub unit_price: DbDecimal,
    pub amount: DbDecimal,
    pub created_at: DbTime,
}

/// A `user_invoices` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = user_invoices, treat_none_as_default_value = false)]
pub struct InvoiceRow {
    pub invoice_id: DbUuid,
    pub user_id: String,
    pub thread_id: Option<DbUuid>,
    pub period_start: Option<DbTime>,
    pub period_end: Option<DbTime>,
    pub subtotal: DbDecimal,
    pub total_amount: DbDecimal,
    pub invoice_date: DbTime,
    pub status: String,
}

/// A usage line as read back from either line table (kind already resolved to its name).
#[derive(Debug, Clone, Queryable)]
pub struct LineRow {
    pub id: DbUuid,
    pub event_id: DbUuid,
    pub message_id: Option<DbUuid>,
    pub thread_id: Option<DbUuid>,
    pub kind: String,
    pub quantity: DbDecimal,
    pub unit_price: DbDecimal,
    pub price_version_id: DbUuid,
    pub amount: DbDecimal,
    pub occurred_at: DbTime,
}

/// A price version as read back (kind already resolved to its name).
#[derive(Debug, Clone, Queryable)]
pub struct PriceRow {
    pub id: DbUuid,
    pub model: String,
    pub kind: String,
    pub price: DbDecimal,
    pub effective_from: DbTime,
    pub effective_to: Option<DbTime>,
    pub is_current: bool,
}

/// A usage event as read back (model and event type resolved to names).
#[derive(Debug, Clone, Queryable)]
pub struct EventRow {
    pub event_id: DbUuid,
    pub user_id: String,
    pub thread_id: Option<DbUuid>,
    pub message_id: Option<DbUuid>,
    pub model: String,
    pub event_type: String,
    pub cost_total: DbDecimal,
    pub source: String,
    pub idempotency_key: Option<String>,
    pub occurred_at: DbTime,
    pub key_id: Option<DbUuid>,
    pub task: Option<String>,
    pub successful: bool,
}

/// A thread as read back (model resolved to its name).
#[derive(Debug, Clone, Queryable)]
pub struct ThreadRow {
    pub thread_id: DbUuid,
    pub user_id: String,
    pub title: String,
    pub model: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
    pub is_active: bool,
}

/// A message as read back (model resolved to its name).
#[derive(Debug, Clone, Queryable)]
pub struct MessageRow {
    pub message_id: DbUuid,
    pub thread_id: DbUuid,
    pub user_id: String,
    pub role: String,
    pub content: String,
    pub model: String,
    pub created_at: DbTime,
    pub simulated: bool,
    pub status: String,
}

/// A `virtual_keys` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = virtual_keys, treat_none_as_default_value = false)]
pub struct KeyRow {
    pub key_id: DbUuid,
    pub public_id: String,
    pub secret_hash: String,
    pub user_id: String,
    pub name: String,
    pub allowed_models: Option<String>,
    pub expires_at: Option<DbTime>,
    pub rpm_limit: Option<i64>,
    pub created_at: DbTime,
    pub revoked_at: Option<DbTime>,
}

/// A `budgets` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = budgets, treat_none_as_default_value = false)]
pub struct BudgetRow {
    pub budget_id: DbUuid,
    pub scope: String,
    pub scope_id: String,
    pub period: String,
    pub max_budget: DbDecimal,
    pub alert_threshold: Option<DbDecimal>,
    pub timezone: String,
    pub enabled: bool,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

/// A `gateway_requests` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = gateway_requests, treat_none_as_default_value = false)]
pub struct GatewayRequestRow {
    pub event_id: DbUuid,
    pub key_id: DbUuid,
    pub user_id: String,
    pub provider: String,
    pub model: String,
    pub route: String,
    pub status: String,
    pub http_status: i32,
    pub latency_ms: i64,
    pub upstream_request_id: Option<String>,
    pub simulated: bool,
    pub total_tokens: i64,
    pub occurred_at: DbTime,
}

/// A `budget_alerts` row.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = budget_alerts)]
pub struct BudgetAlertRow {
    pub budget_id: DbUuid,
    pub window_start: DbTime,
    pub spent: DbDecimal,
    pub sent_at: DbTime,
}

/// A `usage_rollups` row.
#[derive(Debug, Clone, Insertable, Queryable)]
#[diesel(table_name = usage_rollups)]
pub struct RollupRow {
    pub grain: String,
    pub span: &'static str,
    pub month: DbTime,
    pub day: DbTime,
    pub user_id: String,
    pub model_id: i64,
    pub key_id: String,
    pub task: String,
    pub kind: String,
    pub requests: i64,
    pub failed: i64,
    pub quantity: DbDecimal,
    pub amount: DbDecimal,
}
