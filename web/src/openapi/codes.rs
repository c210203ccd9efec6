//! Every stable error code an HTTP client can see, by status: listed in the spec (`x-error-codes` and the error responses' descriptions); `web/tests/openapi.rs` checks the sources raise no code missing here.

/// 400: invalid input.
pub const BAD_REQUEST: &[&str] = &[
    // Request framing (extractors, validation of text).
    "invalid_json", "invalid_body", "invalid_query", "invalid_path", "unsupported_content_type", "invalid_text",
    "unknown_field", "missing_field",
    // Handlers.
    "invalid_alert_threshold", "invalid_amount", "invalid_budget_id", "invalid_budgets", "invalid_cursor",
    "invalid_date", "invalid_days", "invalid_email", "invalid_emails", "invalid_enabled", "invalid_event_id",
    "invalid_expires_at", "invalid_granularity", "invalid_key_id", "invalid_key_name", "invalid_limit", "invalid_name",
    "invalid_page", "invalid_period", "invalid_price", "invalid_price_list", "invalid_pricing_id", "invalid_provider",
    "invalid_range", "invalid_rpm_limit", "invalid_scope", "invalid_status", "invalid_thresholds", "invalid_timezone",
    "invalid_title", "invalid_tolerance", "invalid_trigger", "invalid_user_id", "invalid_username",
    "invalid_webhook_url", "missing_period", "missing_user_id", "negative_price", "unknown_model", "user_id_mismatch",
    "invalid_base_url", "encryption_key_missing", "invalid_admin_key", "invalid_allowed_models", "invalid_filter",
    "invalid_max_budget", "invalid_split", "invalid_task", "price_in_past", "invalid_scope_value", "invalid_horizon", "invalid_csv",
    // Domain and actors.
    "negative_quantity", "fractional_tokens", "invalid_usage_kind", "invalid_model", "invalid_budget_period",
    "invalid_time_zone", "empty_message", "message_too_long", "invalid",
];
/// 402: a budget cannot hold the call (gateway).
pub const PAYMENT_REQUIRED: &[&str] = &["budget_exceeded"];
/// 401: no credential, or a wrong one (token mode).
pub const UNAUTHORIZED: &[&str] = &["unauthenticated", "invalid_credentials"];
/// 403: the credential may not do this (token mode).
pub const FORBIDDEN: &[&str] = &["forbidden"];
/// 404: no such resource.
pub const NOT_FOUND: &[&str] = &[
    "route_not_found", "not_found", "budget_not_found", "connection_not_found", "event_not_found", "invoice_not_found",
    "key_not_found", "thread_not_found", "user_not_found",
];
/// 409: conflicts with the current state.
pub const CONFLICT: &[&str] = &[
    "conflict", "connection_exists", "key_revoked", "nothing_to_invoice", "user_exists", "turn_in_progress",
    "price_rewrites_history", "price_not_contiguous",
];
/// 422: well-formed but not billable as given.
pub const UNPROCESSABLE: &[&str] = &["no_price", "insufficient_history", "model_failed"];
/// 429: too many requests.
pub const RATE_LIMITED: &[&str] = &["rate_limited", "too_many_failed_auth"];
/// 503: a dependency is down; retry.
pub const UNAVAILABLE: &[&str] = &[
    "unavailable", "database_unavailable", "billing_unavailable", "budget_unavailable", "encryption_key",
    "key_store_unavailable", "provider_unavailable",
];
/// Codes of the gateway (`/v1/*`), in OpenAI's `error.code` or Anthropic's `error.type`.
pub const GATEWAY: &[&str] = &[
    "invalid_body", "invalid_json", "invalid_max_tokens", "invalid_parameter", "missing_max_tokens", "missing_model",
    "max_tokens_required", "max_tokens_too_large", "model_not_supported_on_route", "unbounded_input",
    "invalid_messages", "invalid_tool_arguments", "unsupported_parameter", "unsupported_content", "invalid_text",
    "missing_api_key", "invalid_api_key", "revoked_api_key", "expired_api_key", "budget_exceeded", "model_not_allowed",
    "model_not_found", "payload_too_large", "rate_limited", "upstream_unavailable", "budget_unavailable",
    "key_store_unavailable", "usage_not_recorded", "internal",
];

/// Every code of the node's own (non-gateway) error body, any status.
pub fn all() -> impl Iterator<Item = &'static str> {
    [BAD_REQUEST, PAYMENT_REQUIRED, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, UNPROCESSABLE, RATE_LIMITED, UNAVAILABLE]
        .into_iter()
        .flatten()
        .copied()
        .chain(["payload_too_large", "internal"])
}
