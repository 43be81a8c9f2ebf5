//! The HTTP side (axum): the JSON API under `/api`, the WebSocket fallback at `/ws`,
//! `/healthz`, `/metrics` (unless it has a listener of its own), and the browser client at `/`.
//! Handlers are small; shared state is [`AppState`]. Every request body is read whole, within
//! its size limit and deadline, before a handler runs (`request_body`); before that, a request
//! from a banned address is refused (`address_ban`).

pub mod accounts;
pub mod address_ban;
pub mod admin;
pub mod blocks;
pub mod conversations;
pub mod error;
pub mod extract;
pub mod friends;
pub mod http3;
pub mod https;
pub mod key_budget;
pub mod listener;
pub mod login_limit;
pub mod messages;
pub mod request_body;
pub mod retention;
pub mod rooms;
pub mod signup_limit;
pub mod status;
pub mod user_limit;
pub mod web;
pub mod write_deadline;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};

use crate::http::error::ApiError;
use crate::http::request_body::BodyRules;
use crate::state::AppState;
use crate::transport::ws;

/// Largest request body the API reads.
const MAX_BODY: usize = 64 * 1024;

/// The public port's routes. With `metrics_public` false, `/metrics` answers 404 here (it is
/// served on its own listener, [`metrics_router`]).
pub fn router(state: AppState, web_dir: Option<&std::path::Path>, metrics_public: bool) -> Router {
    let body_rules = BodyRules {
        max_bytes: MAX_BODY,
        deadline: state.limits.http_body_timeout,
    };
    let api = Router::new()
        .route("/signup", post(accounts::signup))
        .route("/login", post(accounts::login))
        .route("/logout", post(accounts::logout))
        .route("/account", get(accounts::account))
        .route("/rooms", get(rooms::list).post(rooms::create))
        .route("/rooms/{id}/join", post(rooms::join))
        .route("/rooms/{id}/leave", post(rooms::leave))
        .route(
            "/rooms/{id}/retention",
            get(retention::get).put(retention::put),
        )
        .route("/conversations", get(conversations::list))
        .route("/conversations/{id}/receipts", get(conversations::receipts))
        .route("/friends", get(friends::list))
        .route("/users/add", post(friends::add))
        .route("/users/remove", post(friends::remove))
        .route("/users/dm", post(friends::dm))
        .route("/cert", get(status::cert))
        .route(
            "/conversations/{id}/messages/{seq}",
            delete(messages::delete),
        )
        .route("/users/block", post(blocks::block))
        .route("/users/unblock", post(blocks::unblock))
        .route("/blocks", get(blocks::list))
        // Moderation and account safety (roles, bans, IP bans, audit log, password).
        .route("/admin/promote", post(admin::promote))
        .route("/admin/demote", post(admin::demote))
        .route("/users/ban", post(admin::ban))
        .route("/users/unban", post(admin::unban))
        .route("/admin/bans", get(admin::bans))
        .route(
            "/admin/ip-bans",
            get(admin::ip_bans).post(admin::add_ip_ban),
        )
        .route("/admin/ip-bans/remove", post(admin::remove_ip_ban))
        .route("/admin/audit", get(admin::audit))
        .route("/account/password", post(accounts::change_password))
        .fallback(not_found);
    let metrics = if metrics_public {
        get(crate::metrics::render)
    } else {
        get(not_found)
    };
    let bans = state.clone();
    Router::new()
        .nest("/api", api)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(status::health))
        .route("/readyz", get(status::ready))
        .route("/metrics", metrics)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .merge(web::routes(web_dir))
        .layer(axum::middleware::from_fn_with_state(
            body_rules,
            request_body::read_whole,
        ))
        // Outermost: a banned address is refused before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            bans,
            address_ban::refuse_banned,
        ))
}

/// The metrics listener's routes: `/metrics` and nothing else.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(crate::metrics::render))
        .fallback(not_found)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}
