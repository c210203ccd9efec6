//! The browser UI: built assets embedded in the binary, served at `/` with SPA fallback.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

/// The Vite build output of `web/ui` (built by `web/build.rs`).
#[derive(RustEmbed)]
#[folder = "ui/dist/"]
struct Assets;

fn asset(path: &str) -> Option<HttpResponse> {
    let file = Assets::get(path)?;
    let mime = file.metadata.mimetype().to_string();
    // Hashed asset names never change content; index.html must always be revalidated.
    let cache = if path.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, mime))
            .insert_header((header::CACHE_CONTROL, cache))
            .body(file.data.into_owned()),
    )
}

/// Serve a UI asset, or `index.html` for any other non-API GET (client-side routes).
pub async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path().trim_start_matches('/');
    if path.starts_with("api/") {
        return actix_web::ResponseError::error_response(&crate::error::ApiError::not_found(
            "route_not_found",
            format!("no route for {} {}", req.method(), req.path()),
        ));
    }
    if let Some(resp) = asset(path) {
        return resp;
    }
    asset("index.html").unwrap_or_else(|| HttpResponse::NotFound().body("UI not built"))
}

