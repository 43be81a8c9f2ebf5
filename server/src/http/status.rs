//! Unauthenticated status endpoints: `/api/cert` (the certificate hash browsers pin) and
//! `/healthz`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use crate::state::AppState;

#[derive(Serialize)]
pub struct CertView {
    pub sha256_hex: String,
    pub not_after_ms: Option<u64>,
    pub webtransport_port: u16,
}

/// `GET /api/cert`
pub async fn cert(State(state): State<AppState>) -> Json<CertView> {
    let info = state.certs.info();
    Json(CertView {
        sha256_hex: info.sha256_hex,
        not_after_ms: info.not_after_ms,
        webtransport_port: state.webtransport_port,
    })
}

/// `GET /healthz`: 200 while the store answers, 503 (with the store's error) while it does
/// not; the body names the store's engine either way. A fleet node adds `fanout`: whether its
/// Redis subscriptions are up. Without them it still serves its own clients (and back-fills
/// when Redis returns), so it stays 200, with status `degraded`.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let engine = state.store.engine();
    let fanout = state.fleet.as_ref().map(|fleet| fleet.is_subscribed());
    let (code, status, store) = match state.store.check().await {
        Ok(()) => (
            StatusCode::OK,
            if fanout == Some(false) {
                "degraded"
            } else {
                "ok"
            },
            json!({ "engine": engine, "ok": true }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            json!({ "engine": engine, "ok": false, "error": e.to_string() }),
        ),
    };
    let mut body = json!({ "status": status, "store": store });
    if let Some(ok) = fanout {
        body["fanout"] = json!({ "engine": "redis", "ok": ok });
    }
    (code, Json(body))
}
