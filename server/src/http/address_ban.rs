//! The HTTP side of IP bans: a middleware, outermost on the public port's router, that answers a
//! request from a banned address (the client address, [`ClientIp`]) with 403 `address_banned`
//! before anything else — before its body is read, before any handler or upgrade. It guards the
//! API (`/api/…`), the WebSocket upgrade (`/ws`) and `/metrics`; `/healthz` and the page's
//! static files stay open, so a health check needs no exemption and a banned browser still gets
//! the page, which shows the ban from the API's answer.

use axum::body::HttpBody;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client_addr::ClientIp;
use crate::http::error::ApiError;
use crate::state::AppState;

/// Whether requests to `path` are refused to banned addresses.
fn guarded(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/ws" || path == "/metrics"
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn refuse_banned(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    request: Request,
    next: Next,
) -> Response {
    if !guarded(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(message) = state.address_ban(ip) else {
        return next.run(request).await;
    };
    if request.uri().path() == "/ws" {
        crate::handshake::failed(
            crate::handshake::HandshakeTransport::WebSocket,
            crate::handshake::Outcome::Banned,
            &ip,
            &message,
        );
    } else {
        tracing::debug!(%ip, path = request.uri().path(), "refused a banned address");
    }
    let mut response =
        ApiError::new(StatusCode::FORBIDDEN, "address_banned", message).into_response();
    if !request.body().is_end_stream() {
        // The body is never read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_the_upgrade_and_metrics_are_guarded_the_page_and_health_are_not() {
        for path in ["/api", "/api/login", "/api/rooms/1/join", "/ws", "/metrics"] {
            assert!(guarded(path), "{path}");
        }
        for path in [
            "/",
            "/index.html",
            "/pkg/app.wasm",
            "/healthz",
            "/apix",
            "/wsx",
        ] {
            assert!(!guarded(path), "{path}");
        }
    }
}
