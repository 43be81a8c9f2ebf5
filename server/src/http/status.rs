//! Unauthenticated status endpoints: `/api/cert` (the certificate hash browsers pin),
//! `/healthz` (whether the store answers) and `/readyz` (whether this node takes connections,
//! for a load balancer).

use std::sync::atomic::Ordering;

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

/// `GET /readyz`: 200 `ready` once the store is open and every listener accepts; 503
/// `starting` before, and 503 `draining` from the start of shutdown (so a load balancer stops
/// sending new clients while the open connections are told to go).
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let status = if *state.shutdown.borrow() {
        "draining"
    } else if state.listening.load(Ordering::Acquire) {
        "ready"
    } else {
        "starting"
    };
    let code = match status {
        "ready" => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(json!({ "status": status })))
}
