//! Routing and request limits: wires every handler and the JSON/path/query error handlers.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::routes::{analytics, archives, billing, dashboard, health, messages, metrics, prices, threads, ui, users};
use crate::state::AppState;

/// Largest accepted JSON body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest JSON body.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { max_body_bytes: MAX_BODY_BYTES }
    }
}

/// JSON extractor settings: size limit and JSON error bodies with stable codes.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| ApiError::from(err).into())
}

/// Register state, extractor configs and every route.
pub fn configure(state: AppState, http: HttpConfig) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(state))
            .app_data(json_config(http.max_body_bytes))
            .app_data(web::PayloadConfig::new(http.max_body_bytes))
            .app_data(web::PathConfig::default().error_handler(|err, _req| {
                ApiError::bad_request("invalid_path", format!("invalid path parameter: {err}")).into()
            }))
            .app_data(web::QueryConfig::default().error_handler(|err, _req| {
                ApiError::bad_request("invalid_query", format!("invalid query string: {err}")).into()
            }))
            .service(health::healthz)
            .service(health::readyz)
            .service(crate::auth::whoami)
            .service(metrics::metrics)
            .service(users::create_user)
            .service(users::list_users)
            .service(users::get_user)
            .service(threads::create_thread)
            .service(threads::list_threads)
            .service(threads::get_thread)
            .service(messages::send_message)
            .service(messages::stream_message)
            .service(messages::history)
            .service(billing::user_metrics)
            .service(billing::thread_metrics)
            .service(billing::invoice_thread)
            .service(billing::invoice_user)
            .service(billing::user_invoices)
            .service(billing::get_invoice)
            .service(billing::set_invoice_status)
            .service(analytics::usage_events)
            .service(analytics::usage_event)
            .service(analytics::summary)
            .service(analytics::by_user)
            .service(analytics::by_model)
            .service(analytics::by_provider)
            .service(analytics::by_key)
            .service(analytics::top_tasks)
            .service(analytics::trends)
            .service(prices::list_models)
            .service(prices::list_prices)
            .service(prices::add_price)
            .service(prices::verify_price)
            .service(prices::sync_resource())
            .service(dashboard::snapshot)
            .service(dashboard::stream)
            // The contract and its docs page: before the catch-all, which would take `/docs`.
            .configure(crate::openapi::docs::configure)
            .service(archives::list_archives)
            .service(web::resource("/{tail:.*}").route(web::get().to(ui::serve)).default_service(web::to(not_found)))
            .default_service(web::to(not_found));
    }
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found(
        "route_not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
