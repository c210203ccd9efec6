//! The diesel table definitions, shared by both backends (see `migrations/` for the DDL).

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcInstant;

    /// People (or external accounts) that use models.
    dim_users (user_id) {
        user_id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        created_at -> UtcInstant,
    }
}

diesel::table! {
    /// Models that can be priced and chatted with.
    dim_models (model_id) {
        model_id -> BigInt,
        model_name -> Text,
        provider -> Text,
        description -> Text,
        is_active -> Bool,
    }
}

diesel::table! {
    /// Kinds of usage events: `token_usage` and one per resource.
    dim_event_types (event_type_id) {
        event_type_id -> BigInt,
        event_name -> Text,
        description -> Text,
        unit_of_measure -> Text,
        is_active -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// SCD2 token prices: one row per (model, token kind) version.
    dim_token_pricing (pricing_id) {
        pricing_id -> UuidKey,
        model_id -> BigInt,
        token_type -> Text,
        price_per_million -> ExactDecimal,
        effective_from -> UtcInstant,
        effective_to -> Nullable<UtcInstant>,
        is_current -> Bool,
        verified_at -> Nullable<UtcInstant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// SCD2 resource prices: one row per (model, event type) version.
    dim_resource_pricing (resource_pricing_id) {
        resource_pricing_id -> UuidKey,
        model_id -> BigInt,
        event_type_id -> BigInt,
        unit_price -> ExactDecimal,
        effective_from -> UtcInstant,
        effective_to -> Nullable<UtcInstant>,
        is_current -> Bool,
        verified_at -> Nullable<UtcInstant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Chat threads.
    user_threads (thread_id) {
        thread_id -> UuidKey,
        user_id -> Text,
        title -> Text,
        model_id -> BigInt,
        created_at -> UtcInstant,
        updated_at -> UtcInstant,
        is_active -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Chat messages.
    user_thread_messages (message_id) {
        message_id -> UuidKey,
        thread_id -> UuidKey,
        user_id -> Text,
        content -> Text,
        role -> Text,
        model_id -> BigInt,
        created_at -> UtcInstant,
        simulated -> Bool,
        status -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Usage events (one per priced usage). `event_seq` is the key lines point at
    /// (SQLite: the rowid; PostgreSQL: an identity column, UNIQUE beside the
    /// `event_id` primary key); it only grows, so lines are appended in order.
    api_events (event_seq) {
        event_seq -> BigInt,
        event_id -> UuidKey,
        user_id -> Text,
        thread_id -> Nullable<UuidKey>,
        message_id -> Nullable<UuidKey>,
        model_id -> BigInt,
        event_type_id -> BigInt,
        quantity -> ExactDecimal,
        cost_total -> ExactDecimal,
        source -> Text,
        idempotency_key -> Nullable<Text>,
        occurred_at -> UtcInstant,
        created_at -> UtcInstant,
        key_id -> Nullable<UuidKey>,
        task -> Nullable<Text>,
        successful -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Token counts per usage event and token kind: a view over the token lines
    /// (read only; the persister writes the counts on the lines).
    message_tokens (token_id) {
        token_id -> UuidKey,
        event_id -> UuidKey,
        message_id -> Nullable<UuidKey>,
        token_type -> Text,
        token_count -> BigInt,
        created_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Token invoice lines: one per usage event and token kind.
    user_invoice_line_item (line_item_id) {
        line_item_id -> UuidKey,
        event_seq -> BigInt,
        token_type -> Text,
        token_count -> BigInt,
        pricing_id -> UuidKey,
        quantity -> ExactDecimal,
        unit_price -> ExactDecimal,
        amount -> ExactDecimal,
        created_at -> UtcInstant,
        invoice_id -> Nullable<UuidKey>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Resource invoice lines: one per usage event and resource kind.
    resource_invoice_line_item (resource_line_item_id) {
        resource_line_item_id -> UuidKey,
        event_seq -> BigInt,
        resource_pricing_id -> UuidKey,
        event_type_id -> BigInt,
        quantity -> ExactDecimal,
        unit_price -> ExactDecimal,
        amount -> ExactDecimal,
        created_at -> UtcInstant,
        invoice_id -> Nullable<UuidKey>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Invoices.
    user_invoices (invoice_id) {
        invoice_id -> UuidKey,
        user_id -> Text,
        thread_id -> Nullable<UuidKey>,
        period_start -> Nullable<UtcInstant>,
        period_end -> Nullable<UtcInstant>,
        subtotal -> ExactDecimal,
        total_amount -> ExactDecimal,
        invoice_date -> UtcInstant,
        status -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Gateway virtual keys: only a hash of the secret is stored.
    virtual_keys (key_id) {
        key_id -> UuidKey,
        public_id -> Text,
        secret_hash -> Text,
        user_id -> Text,
        name -> Text,
        allowed_models -> Nullable<Text>,
        expires_at -> Nullable<UtcInstant>,
        rpm_limit -> Nullable<BigInt>,
        created_at -> UtcInstant,
        revoked_at -> Nullable<UtcInstant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Spend limits: one per scope (a key or a user) and period.
    budgets (budget_id) {
        budget_id -> UuidKey,
        scope -> Text,
        scope_id -> Text,
        period -> Text,
        max_budget -> ExactDecimal,
        alert_threshold -> Nullable<ExactDecimal>,
        timezone -> Text,
        enabled -> Bool,
        created_at -> UtcInstant,
        updated_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// One row per gateway call, keyed by its usage event id (cost is read from `api_events`).
    gateway_requests (event_id) {
        event_id -> UuidKey,
        key_id -> UuidKey,
        user_id -> Text,
        provider -> Text,
        model -> Text,
        route -> Text,
        status -> Text,
        http_status -> Integer,
        latency_ms -> BigInt,
        upstream_request_id -> Nullable<Text>,
        simulated -> Bool,
        total_tokens -> BigInt,
        occurred_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Durable "alert sent" marks: one per budget window.
    budget_alerts (budget_id, window_start) {
        budget_id -> UuidKey,
        window_start -> UtcInstant,
        spent -> ExactDecimal,
        sent_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant};

    /// Daily rollups per UTC day x user x model x key x task x kind, written with the events
    /// (kind `""` holds requests, failed requests and the events' cost total).
    usage_rollups (grain, span, month, user_id, model_id, key_id, task, kind, day) {
        grain -> Text,
        span -> Text,
        month -> UtcInstant,
        day -> UtcInstant,
        user_id -> Text,
        model_id -> BigInt,
        key_id -> Text,
        task -> Text,
        kind -> Text,
        requests -> BigInt,
        failed -> BigInt,
        quantity -> ExactDecimal,
        amount -> ExactDecimal,
    }
}

diesel::table! {
    /// Facts about the store itself (e.g. that rollups were backfilled).
    store_meta (meta_key) {
        meta_key -> Text,
        meta_value -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Prompts and responses of events, kept only when the setting is on.
    event_payloads (event_id) {
        event_id -> UuidKey,
        request -> Nullable<Text>,
        response -> Nullable<Text>,
        created_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Budget alerts: a spend limit over a scope, with thresholds and channels.
    alert_budgets (budget_id) {
        budget_id -> UuidKey,
        name -> Text,
        amount -> ExactDecimal,
        period -> Text,
        scope_kind -> Text,
        scope_value -> Nullable<Text>,
        thresholds -> Text,
        emails -> Text,
        webhook_url -> Nullable<Text>,
        enabled -> Bool,
        created_at -> UtcInstant,
        updated_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Durable "fired" marks: one per budget, window and threshold.
    alert_marks (budget_id, window_start, threshold) {
        budget_id -> UuidKey,
        window_start -> UtcInstant,
        threshold -> Text,
        spent -> ExactDecimal,
        fired_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// The alert delivery log: one row per alert and channel target.
    alert_deliveries (delivery_id) {
        delivery_id -> UuidKey,
        source -> Text,
        subject_id -> Nullable<Text>,
        alert_kind -> Text,
        channel -> Text,
        target -> Text,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        payload -> Text,
        created_at -> UtcInstant,
        updated_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Fitted forecasts (points as JSON).
    forecasts (forecast_id) {
        forecast_id -> UuidKey,
        scope -> Text,
        trained_at -> UtcInstant,
        data_from -> UtcInstant,
        data_to -> UtcInstant,
        history_days -> Integer,
        horizon -> Integer,
        method -> Text,
        points -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcInstant;

    /// Scheduler leases: the node that may run a job until `lease_until`.
    scheduler_leases (job_id) {
        job_id -> Text,
        holder -> Text,
        lease_until -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Scheduler run history.
    scheduler_runs (run_id) {
        run_id -> UuidKey,
        job_id -> Text,
        node -> Text,
        trigger -> Text,
        started_at -> UtcInstant,
        finished_at -> Nullable<UtcInstant>,
        status -> Text,
        message -> Nullable<Text>,
    }
}

diesel::joinable!(dim_token_pricing -> dim_models (model_id));
diesel::joinable!(dim_resource_pricing -> dim_models (model_id));
diesel::joinable!(dim_resource_pricing -> dim_event_types (event_type_id));
diesel::joinable!(user_threads -> dim_models (model_id));
diesel::joinable!(user_thread_messages -> dim_models (model_id));
diesel::joinable!(api_events -> dim_models (model_id));
diesel::joinable!(api_events -> dim_event_types (event_type_id));
diesel::joinable!(user_invoice_line_item -> api_events (event_seq));
diesel::joinable!(resource_invoice_line_item -> api_events (event_seq));
diesel::joinable!(resource_invoice_line_item -> dim_event_types (event_type_id));

diesel::allow_tables_to_appear_in_same_query!(
    dim_users,
    dim_models,
    dim_event_types,
    dim_token_pricing,
    dim_resource_pricing,
    user_threads,
    user_thread_messages,
    api_events,
    message_tokens,
    user_invoice_line_item,
    resource_invoice_line_item,
    user_invoices,
    virtual_keys,
    budgets,
    gateway_requests,
    budget_alerts,
    usage_rollups,
    store_meta,
    event_payloads,
    alert_budgets,
    alert_marks,
    alert_deliveries,
    forecasts,
    scheduler_leases,
    scheduler_runs,
    provider_connections,
    import_runs,
    provider_costs,
    imported_buckets,
    import_revisions,
);

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Provider connections (issue 14): admin keys encrypted at rest.
    provider_connections (connection_id) {
        connection_id -> UuidKey,
        provider -> Text,
        name -> Text,
        base_url -> Text,
        key_ciphertext -> Binary,
        key_nonce -> Binary,
        key_hint -> Text,
        created_at -> UtcInstant,
        last_run_at -> Nullable<UtcInstant>,
        last_status -> Nullable<Text>,
        last_error -> Nullable<Text>,
        enabled -> Bool,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Provider import runs.
    import_runs (run_id) {
        run_id -> UuidKey,
        connection_id -> UuidKey,
        run_trigger -> Text,
        range_from -> UtcInstant,
        range_to -> UtcInstant,
        started_at -> UtcInstant,
        finished_at -> Nullable<UtcInstant>,
        status -> Text,
        pages -> BigInt,
        buckets -> BigInt,
        events_new -> BigInt,
        events_revised -> BigInt,
        events_unchanged -> BigInt,
        skipped -> BigInt,
        costs -> BigInt,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// Provider-reported costs per day and natural key ('' for none).
    provider_costs (connection_id, starting_at, model, description, workspace_id) {
        connection_id -> UuidKey,
        starting_at -> UtcInstant,
        ending_at -> UtcInstant,
        model -> Text,
        description -> Text,
        workspace_id -> Text,
        amount -> ExactDecimal,
        currency -> Text,
        imported_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// What each imported provider bucket became (its current event and content hash).
    imported_buckets (event_id) {
        event_id -> UuidKey,
        connection_id -> UuidKey,
        starting_at -> UtcInstant,
        group_key -> Text,
        content_hash -> Text,
        revision -> BigInt,
        current_event_id -> UuidKey,
        imported_at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{UtcInstant, UuidKey};

    /// Audit trail of revised imported buckets.
    import_revisions (revision_id) {
        revision_id -> UuidKey,
        run_id -> Nullable<UuidKey>,
        bucket_event_id -> UuidKey,
        old_event_id -> UuidKey,
        new_event_id -> UuidKey,
        revision -> BigInt,
        starting_at -> UtcInstant,
        group_key -> Text,
        old_hash -> Text,
        new_hash -> Text,
        old_quantities -> Text,
        new_quantities -> Text,
        status -> Text,
        reason -> Nullable<Text>,
        at -> UtcInstant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::UtcInstant;

    /// Archived months (issue 16): the resumable archive state machine and its manifest.
    archive_months (month) {
        month -> Text,
        status -> Text,
        location -> Text,
        manifest -> Nullable<Text>,
        updated_at -> UtcInstant,
        archived_at -> Nullable<UtcInstant>,
        verified_at -> Nullable<UtcInstant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::sql_types::{ExactDecimal, UtcInstant, UuidKey};

    /// The hot index of archived events: duplicates stay duplicates, totals stay answerable.
    archived_events (event_id) {
        event_id -> UuidKey,
        month -> Text,
        user_id -> Text,
        thread_id -> Nullable<UuidKey>,
        message_id -> Nullable<UuidKey>,
        cost_total -> ExactDecimal,
        occurred_at -> UtcInstant,
        model -> Text,
        lines -> Text,
        invoice_id -> Nullable<UuidKey>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(archived_events, api_events);
