//! The HTTP side (axum): the JSON API under `/api`, the WebSocket fallback at `/ws`,
//! `/healthz`, and the browser client at `/`. Handlers are small; shared state is [`AppState`].

pub mod accounts;
pub mod error;
pub mod extract;
pub mod key_budget;
pub mod login_limit;
pub mod room_limit;
pub mod rooms;
pub mod signup_limit;
pub mod status;
pub mod tls_listener;
pub mod web;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::http::error::ApiError;
use crate::state::AppState;
use crate::transport::ws;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

pub fn router(state: AppState, web_dir: Option<&std::path::Path>) -> Router {
    let api = Router::new()
        .route("/signup", post(accounts::signup))
        .route("/login", post(accounts::login))
        .route("/logout", post(accounts::logout))
        .route("/account", get(accounts::account))
        .route("/rooms", get(rooms::list).post(rooms::create))
        .route("/cert", get(status::cert))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            )
        });
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(status::health))
        .route("/metrics", get(crate::metrics::render))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .merge(web::routes(web_dir))
}
