//! Prometheus metrics: the series the server records, the process-wide recorder, and the
//! `/metrics` text endpoint.
//!
//! Every series is described (its `# HELP` text) and registered when the recorder is
//! installed, with a zero for every label value it can take (every transport, refusal reason,
//! handshake outcome, protocol error code, …), so a scrape of a fresh server lists them all.
//! Histograms get buckets chosen for what they measure. The series recorded per connection,
//! per message or per commit are cached as handles here ([`hot`]), so the hot path does no
//! lookup, allocation or label formatting. Histogram samples are kept by the recorder until
//! they are folded into buckets: [`upkeep`] does that every few seconds, so memory stays
//! bounded when nobody scrapes.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use metrics::{Counter, Histogram, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use quibble_protocol::ErrorCode;

use crate::handshake::{HandshakeTransport, Outcome};

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
/// Handshakes by transport (`webtransport`, `websocket`, `https`) and outcome
/// ([`crate::handshake::Outcome`]).
pub const HANDSHAKES: &str = "quibble_handshakes_total";
/// Connections closed with an error, by code (`bad_frame`, `frame_too_large`, …).
pub const CONNECTION_ERRORS: &str = "quibble_connection_errors_total";
/// Conversation streams closed with an error, by code.
pub const STREAM_ERRORS: &str = "quibble_stream_errors_total";
/// Conversation streams cut for lagging behind the live feed.
pub const STREAMS_LAGGED: &str = "quibble_streams_lagged_total";
/// Connections (or WebTransport streams) cut because the peer did not read.
pub const SLOW_CONSUMERS: &str = "quibble_slow_consumers_total";
/// Bytes queued for peers now, over every connection's outbound queue.
pub const OUTBOUND_QUEUED_BYTES: &str = "quibble_outbound_queued_bytes";
/// Conversations with live subscribers in the fan-out hub now.
pub const HUB_CONVERSATIONS: &str = "quibble_hub_conversations";
/// Users with at least one realtime connection now (entries of the user hub).
pub const USERS_ONLINE: &str = "quibble_users_online";
/// Chat messages received from clients (`Send` frames).
pub const MESSAGES_IN: &str = "quibble_messages_in_total";
/// Chat messages queued to clients: live fan-out, replays after a join, history pages.
pub const MESSAGES_OUT: &str = "quibble_messages_out_total";
/// Seconds from a commit being handed to the live side to its messages queued on every live
/// stream of the conversation.
pub const FANOUT_SECONDS: &str = "quibble_fanout_seconds";
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
/// (`chat::congestion`), by reason (`readers_behind`, `in_flight`).
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
/// Seconds one group commit of the store's writer took, from its transaction's start to its
/// durable commit.
pub const STORE_COMMIT_SECONDS: &str = "quibble_store_commit_seconds";
/// Write requests per commit.
pub const STORE_COMMIT_BATCH: &str = "quibble_store_commit_batch_requests";

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

/// The realtime transports (`transport` of the connection series). An HTTP/3 listener would
/// add its label to [`REFUSAL_TRANSPORTS`] and [`HandshakeTransport`].
pub const REALTIME_TRANSPORTS: [&str; 2] = ["webtransport", "websocket"];
/// The `transport` label values of [`CONNECTIONS_REFUSED`].
const REFUSAL_TRANSPORTS: [&str; 5] = ["http", "http3", "metrics", "websocket", "webtransport"];
/// The `reason` label values of [`CONNECTIONS_REFUSED`].
const REFUSAL_REASONS: [&str; 5] = [
    "server_full",
    "address_full",
    "unauthenticated_full",
    "unauthenticated_address_full",
    "out_of_files",
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Buckets of the latencies bound by an fsync (a commit, a send's ack), in seconds.
const COMMIT_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];
/// Buckets of the fan-out latency (in memory: microseconds to milliseconds), in seconds.
const FANOUT_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_02, 0.000_05, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1,
];
/// Buckets of requests per commit (the writers take at most 16,384).
const BATCH_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];
/// Buckets of a scrub's duration (it reads and rewrites free pages), in seconds.
const SCRUB_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];

/// The handles recorded on hot paths, registered once.
pub struct Hot {
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub fanout_seconds: Histogram,
    pub streams_lagged: Counter,
    store_commits: Counter,
    store_committed_requests: Counter,
    store_committed_messages: Counter,
    store_commit_seconds: Histogram,
    store_commit_batch: Histogram,
    messages_appended: Counter,
    append_seconds: Histogram,
    /// By [`ErrorCode::ALL`] order.
    connection_errors: Vec<Counter>,
    stream_errors: Vec<Counter>,
    slow_consumers: Counter,
    /// By [`HandshakeTransport`] then [`Outcome`].
    handshakes: Vec<Counter>,
}

struct Installed {
    prometheus: PrometheusHandle,
    hot: Hot,
}

fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let recorder = with_buckets(PrometheusBuilder::new()).build_recorder();
        let prometheus = recorder.handle();
        // Fails only if another recorder is installed; then this handle renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        register_zeros();
        Installed {
            prometheus,
            hot: Hot::register(),
        }
    })
}

/// Install the process-wide recorder (once, with every series registered) and return its
/// handle.
pub fn handle() -> &'static PrometheusHandle {
    &installed().prometheus
}

/// The cached handles of the hot paths.
pub fn hot() -> &'static Hot {
    &installed().hot
}

/// Fold histogram samples into their buckets every few seconds (they are kept one by one
/// until then), and let the handshake log summarise what it held back.
pub async fn upkeep() {
    let mut ticker = tokio::time::interval(UPKEEP_PERIOD);
    loop {
        ticker.tick().await;
        handle().run_upkeep();
        crate::handshake::summarise();
    }
}

fn with_buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    let buckets: [(&str, &[f64]); 5] = [
        (APPEND_SECONDS, &COMMIT_BUCKETS),
        (STORE_COMMIT_SECONDS, &COMMIT_BUCKETS),
        (FANOUT_SECONDS, &FANOUT_BUCKETS),
        (STORE_COMMIT_BATCH, &BATCH_BUCKETS),
        (STORE_SCRUB_SECONDS, &SCRUB_BUCKETS),
    ];
    buckets
        .into_iter()
        .fold(builder, |builder, (name, values)| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
                // Refused only for an empty list; these are constants, none empty.
                .expect("bucket lists are not empty")
        })
}

fn describe() {
    describe_counter!(CONNECTIONS, "Realtime connections accepted, by transport.");
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Realtime connections open now, by transport."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused by admission, by transport and reason."
    );
    describe_counter!(
        HTTP3_CONNECTIONS,
        "HTTP/3 connections that completed their handshake."
    );
    describe_counter!(HTTP3_REQUESTS, "HTTP/3 requests served through the router.");
    describe_counter!(
        HANDSHAKES,
        "Handshakes (QUIC/TLS, TLS, WebSocket upgrade, Hello) by transport and outcome."
    );
    describe_counter!(
        CONNECTION_ERRORS,
        "Realtime connections closed with a protocol error, by code."
    );
    describe_counter!(
        STREAM_ERRORS,
        "Conversation streams closed with a protocol error, by code."
    );
    describe_counter!(
        STREAMS_LAGGED,
        "Conversation streams cut with Lagged for falling behind the live feed."
    );
    describe_counter!(
        SLOW_CONSUMERS,
        "Connections or WebTransport streams cut because the peer did not read."
    );
    describe_gauge!(
        OUTBOUND_QUEUED_BYTES,
        "Bytes queued for peers now, over every connection's outbound queue."
    );
    describe_gauge!(
        HUB_CONVERSATIONS,
        "Conversations with live subscribers in the fan-out hub now."
    );
    describe_gauge!(
        USERS_ONLINE,
        "Users with at least one realtime connection now."
    );
    describe_counter!(
        MESSAGES_IN,
        "Chat messages received from clients (Send frames)."
    );
    describe_counter!(
        MESSAGES_OUT,
        "Chat messages queued to clients: live fan-out, replays and history pages."
    );
    describe_histogram!(
        FANOUT_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from a commit handed to the live side to its messages queued on every live stream of the conversation."
    );
    describe_counter!(MESSAGES_APPENDED, "Messages made durable from Send frames.");
    describe_histogram!(
        APPEND_SECONDS,
        metrics::Unit::Seconds,
        "Seconds from receiving a Send to its durable ack."
    );
    describe_counter!(
        STORE_SCRUBS,
        "Scrubs of deleted bodies from the store file, by outcome."
    );
    describe_histogram!(
        STORE_SCRUB_SECONDS,
        metrics::Unit::Seconds,
        "Seconds one scrub of the store file took."
    );
    describe_counter!(PASSWORD_HASHES, "Password hashes run (argon2), by kind.");
    describe_counter!(
        SENDS_CONGESTED,
        "Sends refused because their conversation's readers were behind, by reason."
    );
    describe_counter!(
        MESSAGES_RETAINED_AWAY,
        "Messages made tombstones by rooms' retention."
    );
    describe_counter!(
        CERTIFICATE_RELOADS,
        "Reads of the certificate files (SIGHUP or a change on disk), by outcome."
    );
    describe_counter!(
        STORE_COMMITS,
        "Store write transactions committed (each one fsync)."
    );
    describe_counter!(
        STORE_COMMITTED_REQUESTS,
        "Write requests the store's commits applied."
    );
    describe_counter!(
        STORE_COMMITTED_MESSAGES,
        "Messages the store's commits appended."
    );
    describe_histogram!(
        STORE_COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Seconds one group commit of the store's writer took, transaction start to durable."
    );
    describe_histogram!(STORE_COMMIT_BATCH, "Write requests per store commit.");
    describe_counter!(
        FLEET_PUBLISHED,
        "Commits published to the other nodes over Redis, by outcome."
    );
    describe_counter!(FLEET_GAPS, "Seq gaps back-filled from the store (fleet).");
    describe_counter!(
        FLEET_BACKFILLED,
        "Messages read back from the store to fill gaps (fleet)."
    );
    describe_counter!(
        FLEET_INBOX_FULL,
        "Commits a full partition inbox refused (fleet)."
    );
    describe_counter!(
        FLEET_UNREADABLE,
        "Unreadable pub/sub messages from Redis (fleet)."
    );
    describe_counter!(
        FLEET_SUBSCRIBED,
        "Times this node (re)subscribed on Redis (fleet)."
    );
}

/// Every series that has no hot handle, at zero for each label value.
fn register_zeros() {
    for transport in REALTIME_TRANSPORTS {
        metrics::counter!(CONNECTIONS, "transport" => transport).increment(0);
        metrics::gauge!(CONNECTIONS_OPEN, "transport" => transport).increment(0.0);
    }
    for transport in REFUSAL_TRANSPORTS {
        for reason in REFUSAL_REASONS {
            metrics::counter!(CONNECTIONS_REFUSED, "transport" => transport, "reason" => reason)
                .increment(0);
        }
    }
    for gauge in [OUTBOUND_QUEUED_BYTES, HUB_CONVERSATIONS, USERS_ONLINE] {
        metrics::gauge!(gauge).increment(0.0);
    }
    for outcome in ["ok", "failed"] {
        metrics::counter!(STORE_SCRUBS, "outcome" => outcome).increment(0);
    }
    let _ = metrics::histogram!(STORE_SCRUB_SECONDS);
    for kind in ["hash", "verify"] {
        metrics::counter!(PASSWORD_HASHES, "kind" => kind).increment(0);
    }
    for reason in ["readers_behind", "in_flight"] {
        metrics::counter!(SENDS_CONGESTED, "reason" => reason).increment(0);
    }
    for outcome in ["ok", "dropped"] {
        metrics::counter!(FLEET_PUBLISHED, "outcome" => outcome).increment(0);
    }
    for outcome in ["changed", "unchanged", "failed"] {
        metrics::counter!(CERTIFICATE_RELOADS, "outcome" => outcome).increment(0);
    }
    for name in [
        HTTP3_CONNECTIONS,
        HTTP3_REQUESTS,
        MESSAGES_RETAINED_AWAY,
        FLEET_GAPS,
        FLEET_BACKFILLED,
        FLEET_INBOX_FULL,
        FLEET_UNREADABLE,
        FLEET_SUBSCRIBED,
    ] {
        metrics::counter!(name).increment(0);
    }
}

impl Hot {
    fn register() -> Hot {
        let by_code = |name: &'static str| -> Vec<Counter> {
            ErrorCode::ALL
                .iter()
                .map(|code| metrics::counter!(name, "code" => code.as_str()))
                .collect()
        };
        let handshakes = HandshakeTransport::ALL
            .iter()
            .flat_map(|transport| {
                Outcome::ALL.iter().map(|outcome| {
                    metrics::counter!(HANDSHAKES,
                        "transport" => transport.label(), "outcome" => outcome.label())
                })
            })
            .collect();
        Hot {
            messages_in: metrics::counter!(MESSAGES_IN),
            messages_out: metrics::counter!(MESSAGES_OUT),
            fanout_seconds: metrics::histogram!(FANOUT_SECONDS),
            streams_lagged: metrics::counter!(STREAMS_LAGGED),
            store_commits: metrics::counter!(STORE_COMMITS),
            store_committed_requests: metrics::counter!(STORE_COMMITTED_REQUESTS),
            store_committed_messages: metrics::counter!(STORE_COMMITTED_MESSAGES),
            store_commit_seconds: metrics::histogram!(STORE_COMMIT_SECONDS),
            store_commit_batch: metrics::histogram!(STORE_COMMIT_BATCH),
            messages_appended: metrics::counter!(MESSAGES_APPENDED),
            append_seconds: metrics::histogram!(APPEND_SECONDS),
            connection_errors: by_code(CONNECTION_ERRORS),
            stream_errors: by_code(STREAM_ERRORS),
            slow_consumers: metrics::counter!(SLOW_CONSUMERS),
            handshakes,
        }
    }

    /// A handshake of `transport` ended with `outcome`.
    pub fn handshake(&self, transport: HandshakeTransport, outcome: Outcome) {
        let at = transport as usize * Outcome::ALL.len() + outcome as usize;
        if let Some(counter) = self.handshakes.get(at) {
            counter.increment(1);
        }
    }
}

fn code_index(code: ErrorCode) -> usize {
    ErrorCode::ALL.iter().position(|c| *c == code).unwrap_or(0)
}

/// A connection closed with error `code`.
pub fn connection_error(code: ErrorCode) {
    let hot = hot();
    if let Some(counter) = hot.connection_errors.get(code_index(code)) {
        counter.increment(1);
    }
    if code == ErrorCode::SlowConsumer {
        hot.slow_consumers.increment(1);
    }
}

/// A conversation stream closed with error `code`.
pub fn stream_error(code: ErrorCode) {
    if let Some(counter) = hot().stream_errors.get(code_index(code)) {
        counter.increment(1);
    }
}

/// A WebTransport stream reset because its peer read nothing (the connection goes on).
pub fn slow_stream() {
    hot().slow_consumers.increment(1);
}

pub fn append_latency(elapsed: Duration) {
    let hot = hot();
    hot.messages_appended.increment(1);
    hot.append_seconds.record(elapsed.as_secs_f64());
}

pub fn scrubbed(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics::counter!(STORE_SCRUBS, "outcome" => outcome).increment(1);
    metrics::histogram!(STORE_SCRUB_SECONDS).record(elapsed.as_secs_f64());
}

/// One store commit of `requests` requests that appended `messages` messages.
pub fn committed(requests: usize, messages: usize) {
    let hot = hot();
    hot.store_commits.increment(1);
    hot.store_committed_requests.increment(requests as u64);
    hot.store_committed_messages.increment(messages as u64);
    hot.store_commit_batch.record(requests as f64);
}

/// How long one of the writer's group commits took.
pub fn commit_latency(elapsed: Duration) {
    hot().store_commit_seconds.record(elapsed.as_secs_f64());
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
