//! Unauthenticated status endpoints: `/api/cert` (the certificate hash browsers pin) and
//! `/healthz`.

use axum::Json;
use axum::extract::State;
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

/// `GET /healthz`
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
