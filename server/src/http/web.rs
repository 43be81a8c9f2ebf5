//! The browser client's files (`client-wasm/web`, with the built `pkg/`), served at `/`.
//! Every response says `Cache-Control: no-cache`, so browsers revalidate (ETag /
//! Last-Modified) and never run a stale wasm after an upgrade.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the page lives in a source checkout.
const CHECKOUT_WEB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../client-wasm/web");

/// The web directory to serve: the configured one, else the checkout's.
pub fn default_dir() -> Option<PathBuf> {
    let dir = Path::new(CHECKOUT_WEB_DIR);
    dir.is_dir().then(|| dir.to_path_buf())
}

/// Routes serving `dir` (or a page explaining how to build it).
pub fn routes(dir: Option<&Path>) -> Router {
    let no_cache = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    match dir {
        Some(dir) if dir.join("pkg").is_dir() => Router::new()
            .fallback_service(ServeDir::new(dir).append_index_html_on_directories(true))
            .layer(no_cache),
        _ => Router::new().fallback(not_built).layer(no_cache),
    }
}

async fn not_built() -> impl IntoResponse {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Html(
            "<!doctype html><title>Quibble</title><p>The browser client is not built. \
             Run <code>scripts/run</code> (or <code>scripts/build-web</code>) and reload.</p>",
        ),
    )
}
