//! Prometheus metrics: the names the server records, the process-wide recorder, and the
//! `/metrics` text endpoint.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use quibble_protocol::ErrorCode;

/// Realtime connections accepted, by transport.
pub const CONNECTIONS: &str = "quibble_connections_total";
/// Realtime connections open now, by transport.
pub const CONNECTIONS_OPEN: &str = "quibble_connections_open";
/// Connections refused, by transport (`http`, `http3`, `websocket`, `webtransport`, `metrics`) and
/// reason (`server_full`, `address_full`, `unauthenticated_full`,
/// `unauthenticated_address_full`, `out_of_files`).
pub const CONNECTIONS_REFUSED: &str = "quibble_connections_refused_total";
/// HTTP/3 connections that completed their handshake.
pub const HTTP3_CONNECTIONS: &str = "quibble_http3_connections_total";
/// HTTP/3 requests whose head was read (each went to the router).
pub const HTTP3_REQUESTS: &str = "quibble_http3_requests_total";
/// Connections closed with an error, by code (`bad_frame`, `frame_too_large`, …).
pub const CONNECTION_ERRORS: &str = "quibble_connection_errors_total";
/// Conversation streams closed with an error, by code.
pub const STREAM_ERRORS: &str = "quibble_stream_errors_total";
/// Conversation streams cut for lagging behind the live feed.
pub const STREAMS_LAGGED: &str = "quibble_streams_lagged_total";
/// Bytes queued for peers now, over every connection's outbound queue.
pub const OUTBOUND_QUEUED_BYTES: &str = "quibble_outbound_queued_bytes";
/// Conversations with live subscribers in the fan-out hub now.
pub const HUB_CONVERSATIONS: &str = "quibble_hub_conversations";
/// Users with at least one realtime connection now (entries of the user hub).
pub const USERS_ONLINE: &str = "quibble_users_online";
/// Messages made durable.
pub const MESSAGES_APPENDED: &str = "quibble_messages_appended_total";
/// Seconds from receiving a `Send` to its durable ack.
pub const APPEND_SECONDS: &str = "quibble_append_seconds";
/// Scrubs of the store file's free pages after deletions, by outcome (`ok`, `failed`).
pub const STORE_SCRUBS: &str = "quibble_store_scrubs_total";
/// Seconds one scrub took (it holds up the store's writer).
pub const STORE_SCRUB_SECONDS: &str = "quibble_store_scrub_seconds";
/// Password hashes (argon2) run by the hashing pool, by kind: `hash` (a sign-up or password
/// change) or `verify` (a login, or the current password of a change).
pub const PASSWORD_HASHES: &str = "quibble_password_hashes_total";
/// Sends refused (`RateLimited`) because most readers of their conversation were behind
/// (`chat::congestion`).
pub const SENDS_CONGESTED: &str = "quibble_sends_congested_total";

/// Messages retained away (made tombstones) by rooms' retention (`crate::retention`).
pub const MESSAGES_RETAINED_AWAY: &str = "quibble_messages_retained_away_total";

// Store group commit (issue 9, durable ingest).
/// Store write transactions committed (each one fsync).
pub const STORE_COMMITS: &str = "quibble_store_commits_total";
/// Write requests those commits applied (refused ones included).
pub const STORE_COMMITTED_REQUESTS: &str = "quibble_store_committed_requests_total";
/// Messages those commits appended.
pub const STORE_COMMITTED_MESSAGES: &str = "quibble_store_committed_messages_total";

// The fleet's fan-out over Redis (issue 10, fleet/).
/// Commits published to the other nodes, by outcome: `ok`, or `dropped` (Redis did not take
/// them in time; the other nodes back-fill them from the store).
pub const FLEET_PUBLISHED: &str = "quibble_fleet_published_total";
/// Jumps in a conversation's seqs that a node back-filled from the store.
pub const FLEET_GAPS: &str = "quibble_fleet_gaps_total";
/// Messages a node read back from the store to fill gaps.
pub const FLEET_BACKFILLED: &str = "quibble_fleet_backfilled_total";
/// Commits a partition's full inbox refused (recovered by a sweep).
pub const FLEET_INBOX_FULL: &str = "quibble_fleet_inbox_full_total";
/// Pub/sub messages from Redis that were not a readable event.
pub const FLEET_UNREADABLE: &str = "quibble_fleet_unreadable_total";
/// Times this node (re)subscribed to every partition on Redis.
pub const FLEET_SUBSCRIBED: &str = "quibble_fleet_subscribed_total";

// Certificates (issue 11, tls/reload.rs).
/// Reads of the certificate files (on SIGHUP or a change on disk), by outcome: `changed` (a
/// new certificate is served), `unchanged`, `failed` (the previous one stays served; the log
/// names the file and the problem).
pub const CERTIFICATE_RELOADS: &str = "quibble_certificate_reloads_total";

/// Install the process-wide recorder (once) and return its handle.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed; then this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub fn error(name: &'static str, code: ErrorCode) {
    metrics::counter!(name, "code" => code.as_str()).increment(1);
}

pub fn append_latency(elapsed: Duration) {
    metrics::counter!(MESSAGES_APPENDED).increment(1);
    metrics::histogram!(APPEND_SECONDS).record(elapsed.as_secs_f64());
}

pub fn scrubbed(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(STORE_SCRUBS, "outcome" => outcome).increment(1);
    metrics::histogram!(STORE_SCRUB_SECONDS).record(elapsed.as_secs_f64());
}

/// One store commit of `requests` requests that appended `messages` messages.
pub fn committed(requests: usize, messages: usize) {
    metrics::counter!(STORE_COMMITS).increment(1);
    metrics::counter!(STORE_COMMITTED_REQUESTS).increment(requests as u64);
    metrics::counter!(STORE_COMMITTED_MESSAGES).increment(messages as u64);
}

/// `count` messages retained away.
pub fn retained_away(count: usize) {
    metrics::counter!(MESSAGES_RETAINED_AWAY).increment(count as u64);
}

/// `GET /metrics`
pub async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
}
