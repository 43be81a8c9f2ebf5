//! Every setting of `quibble serve`, declared once: [`Settings`] is at the same time the
//! command line (clap: `--flag`, `QUIBBLE_…` environment variable, help, default) and the
//! config file (serde: the file key is the field's name), so a setting cannot exist in one
//! place and not in the others. A unit test checks the naming rule for every field: flag
//! `--data-dir`, variable `QUIBBLE_DATA_DIR`, file key `data_dir`.
//!
//! Defaults are clap's (`default_value_t`), and [`Settings::default`] reads them from clap, so
//! each default is written once and `--help` shows it. A setting without a default is an
//! `Option` ("not set"). Which source wins is decided in [`super::sources`]; this file only
//! turns one complete set of settings into the [`Config`] the server consumes
//! ([`Settings::into_config`]): it clamps values to their bounds ([`Settings::clamp`]) and
//! converts units (`_ms` keys to durations, `_mb`/`_kib` to bytes).
//!
//! Adding a setting: add a field here with its `#[arg(long, env = "QUIBBLE_…")]`, a one-line
//! doc comment (its help) and a default, carry it into [`Config`] in [`Settings::into_config`]
//! (clamp it in [`Settings::clamp`] if it has bounds), and add its row to the README's
//! Configuration table (a test checks the row exists). Flag, variable, file key, `--help` and
//! `quibble config check` follow by themselves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};
use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Limits, MAX_INFLIGHT_SENDS, TlsFiles, default_listen};
use crate::logging::LogFormat;

/// The settings of `quibble serve`: flags, `QUIBBLE_…` variables and file keys, one field each.
#[derive(Debug, Clone, PartialEq, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    // Where and how to serve.
    /// Directory for the store, the certificate and the admin socket.
    #[arg(long, env = "QUIBBLE_DATA_DIR", default_value = "quibble-data")]
    pub data_dir: PathBuf,
    /// Address to serve on (HTTP on TCP, WebTransport on UDP, one port number); repeat or
    /// comma-separate for several. Port 0 picks a free port.
    #[arg(long, env = "QUIBBLE_LISTEN", value_delimiter = ',', default_values_t = default_listen())]
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain (with tls_key); when not set, a self-signed certificate is made.
    #[arg(long, env = "QUIBBLE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert.
    #[arg(long, env = "QUIBBLE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// UDP port of HTTP/3, served only with tls_cert; when not set, the HTTPS port + 1 (any
    /// free port when that is 0); 0 picks a free port.
    #[arg(long, env = "QUIBBLE_HTTP3_PORT")]
    pub http3_port: Option<u16>,
    /// The file's older form of tls_cert and tls_key: a `[tls]` table with `cert` and `key`.
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub tls: Option<TlsFiles>,
    /// Directory of the browser client; when not set, client-wasm/web of this checkout.
    #[arg(long, env = "QUIBBLE_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Serve /metrics only on this address (plain HTTP; 404 on the public port); when not set,
    /// on the public port.
    #[arg(long, env = "QUIBBLE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies (CIDRs or addresses, comma-separated) whose X-Forwarded-For names the
    /// client.
    #[arg(long, env = "QUIBBLE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Log lines as text (coloured only on a terminal) or json (one object per line).
    #[arg(long, env = "QUIBBLE_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,

    // The store and the fleet.
    /// The store's page cache, in MiB.
    #[arg(long, env = "QUIBBLE_STORE_CACHE_MB", default_value_t = 64)]
    pub store_cache_mb: usize,
    /// Keep everything durable in this PostgreSQL database (postgres://user@host:port/db)
    /// instead of the redb file: the fleet's store.
    #[arg(long, env = "QUIBBLE_POSTGRES", hide_env_values = true)]
    pub postgres: Option<String>,
    /// Be a node of a fleet: carry commits to the other nodes through this Redis
    /// (redis://host:port; several comma-separated, or any node of a Cluster). Needs postgres.
    #[arg(long, env = "QUIBBLE_REDIS", hide_env_values = true)]
    pub redis: Option<String>,

    // Connections.
    /// Live realtime connections at most (WebTransport and WebSocket together).
    #[arg(long, env = "QUIBBLE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open connections of every kind from one IPv4 address or IPv6 /64.
    #[arg(long, env = "QUIBBLE_MAX_CONNECTIONS_PER_IP", default_value_t = 128)]
    pub max_connections_per_ip: usize,
    /// Realtime connections whose Hello is not accepted yet [default: max_connections / 4].
    #[arg(long, env = "QUIBBLE_MAX_UNAUTHENTICATED_CONNECTIONS")]
    pub max_unauthenticated_connections: Option<usize>,
    /// Realtime connections whose Hello is not accepted yet, per address.
    #[arg(long, env = "QUIBBLE_MAX_UNAUTHENTICATED_PER_IP", default_value_t = 16)]
    pub max_unauthenticated_per_ip: usize,
    /// Sends one conversation stream may have waiting for the store's commit (1 to 4096).
    #[arg(long, env = "QUIBBLE_MAX_INFLIGHT_SENDS", default_value_t = 64)]
    pub max_inflight_sends: usize,

    // Deadlines.
    /// Milliseconds between client pings; a connection silent for 3x this is closed (100 to
    /// 600000).
    #[arg(long, env = "QUIBBLE_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// Milliseconds a new realtime connection has to get its Hello accepted.
    #[arg(long, env = "QUIBBLE_HELLO_TIMEOUT_MS", default_value_t = 5_000)]
    pub hello_timeout_ms: u64,
    /// Milliseconds to send a whole request head (also the keep-alive idle timeout).
    #[arg(long, env = "QUIBBLE_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,
    /// Milliseconds to send a whole request body (else 408).
    #[arg(long, env = "QUIBBLE_HTTP_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_body_timeout_ms: u64,
    /// Milliseconds for the TLS handshake, and WebTransport's up to the accepted session.
    #[arg(
        long,
        env = "QUIBBLE_TLS_HANDSHAKE_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub tls_handshake_timeout_ms: u64,
    /// Milliseconds a write may wait on a peer that reads nothing before the connection ends.
    #[arg(long, env = "QUIBBLE_HTTP_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    pub http_write_timeout_ms: u64,

    // Per-user and per-address rates.
    /// Messages per second one user may send, sustained.
    #[arg(long, env = "QUIBBLE_MESSAGES_PER_SECOND", default_value_t = 50)]
    pub messages_per_second: u32,
    /// Messages one user may send in a burst.
    #[arg(long, env = "QUIBBLE_MESSAGE_BURST", default_value_t = 200)]
    pub message_burst: u32,
    /// Rooms one user may create per hour, sustained.
    #[arg(long, env = "QUIBBLE_ROOMS_PER_HOUR", default_value_t = 20)]
    pub rooms_per_hour: u32,
    /// Rooms one user may create in a burst.
    #[arg(long, env = "QUIBBLE_ROOM_BURST", default_value_t = 10)]
    pub room_burst: u32,
    /// Friend requests one user may make per hour, sustained.
    #[arg(long, env = "QUIBBLE_FRIEND_REQUESTS_PER_HOUR", default_value_t = 60)]
    pub friend_requests_per_hour: u32,
    /// Friend requests one user may make in a burst.
    #[arg(long, env = "QUIBBLE_FRIEND_REQUEST_BURST", default_value_t = 20)]
    pub friend_request_burst: u32,
    /// Rooms one user may join per hour, sustained.
    #[arg(long, env = "QUIBBLE_ROOM_JOINS_PER_HOUR", default_value_t = 120)]
    pub room_joins_per_hour: u32,
    /// Rooms one user may join in a burst.
    #[arg(long, env = "QUIBBLE_ROOM_JOIN_BURST", default_value_t = 30)]
    pub room_join_burst: u32,
    /// Messages one (non-admin) user may delete per hour, sustained.
    #[arg(long, env = "QUIBBLE_DELETES_PER_HOUR", default_value_t = 600)]
    pub deletes_per_hour: u32,
    /// Messages one (non-admin) user may delete in a burst.
    #[arg(long, env = "QUIBBLE_DELETE_BURST", default_value_t = 60)]
    pub delete_burst: u32,
    /// Sign-ups per address (IPv6 /64) in a burst.
    #[arg(long, env = "QUIBBLE_SIGNUP_BURST", default_value_t = 64)]
    pub signup_burst: u32,
    /// Sign-ups per address (IPv6 /64) per hour, sustained.
    #[arg(long, env = "QUIBBLE_SIGNUPS_PER_HOUR", default_value_t = 360)]
    pub signups_per_hour: u32,

    // Password hashing.
    /// Password-hashing threads, 19 MiB each [default: one per core, at most 4].
    #[arg(long, env = "QUIBBLE_HASH_THREADS", default_value_t = default_hash_threads())]
    pub hash_threads: usize,
    /// Hashing jobs queued per kind (logins, sign-ups); past it, 503.
    #[arg(long, env = "QUIBBLE_HASH_QUEUE", default_value_t = 32)]
    pub hash_queue: usize,
    /// Milliseconds a hashing job may wait to start; past it, 503.
    #[arg(long, env = "QUIBBLE_HASH_WAIT_MS", default_value_t = 2_000)]
    pub hash_wait_ms: u64,

    // Overload.
    /// KiB queued for most of a conversation's readers at which its sends are refused for a
    /// while (1 to 512).
    #[arg(long, env = "QUIBBLE_CONGESTED_QUEUE_KIB", default_value_t = 256)]
    pub congested_queue_kib: usize,
    /// The shortest wait, in milliseconds, a send refused for congestion is told to take (1 to
    /// 10000).
    #[arg(long, env = "QUIBBLE_CONGESTION_RETRY_MS", default_value_t = 25)]
    pub congestion_retry_ms: u64,

    // Data.
    /// Milliseconds between runs of the sweep that applies rooms' retention (10 to 86400000).
    #[arg(long, env = "QUIBBLE_RETENTION_SWEEP_MS", default_value_t = 60_000)]
    pub retention_sweep_ms: u64,
}

/// One hashing thread per core, at most 4.
fn default_hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Conversation streams one connection may hold open (not a setting: each allowed QUIC stream
/// costs every session memory up front, transport/wt.rs).
const MAX_STREAMS_PER_CONNECTION: usize = 64;
/// How long shutdown waits for connections to drain (not a setting).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for Settings {
    /// Every setting at its default: clap's defaults, with the environment ignored.
    fn default() -> Self {
        let command =
            Settings::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["defaults"]);
        match Settings::from_arg_matches(&matches) {
            Ok(settings) => settings,
            // The defaults are constants of this file, checked by the unit tests.
            Err(e) => unreachable!("the settings' defaults do not parse: {e}"),
        }
    }
}

impl Settings {
    /// The ids (= file keys) of every setting, in declaration order.
    pub fn keys() -> Vec<String> {
        Settings::augment_args(clap::Command::new("keys"))
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect()
    }

    /// Bring every value within its bounds, and fill the defaults that depend on other
    /// settings. Idempotent.
    pub fn clamp(&mut self) {
        self.heartbeat_ms = self.heartbeat_ms.clamp(100, 600_000);
        self.max_inflight_sends = self.max_inflight_sends.clamp(1, MAX_INFLIGHT_SENDS);
        // A high-water mark of at least 1 KiB and at most half the connection's queue (above
        // it nothing would ever congest).
        let cap_kib = crate::chat::outbound::CONNECTION_QUEUE_BYTES / 2 / 1024;
        self.congested_queue_kib = self.congested_queue_kib.clamp(1, cap_kib);
        self.congestion_retry_ms = self.congestion_retry_ms.clamp(1, 10_000);
        self.retention_sweep_ms = self.retention_sweep_ms.clamp(10, 86_400_000);
        let quarter = self.max_connections / 4;
        self.max_unauthenticated_connections = Some(
            self.max_unauthenticated_connections
                .unwrap_or(quarter)
                .clamp(1, self.max_connections.max(1)),
        );
    }

    /// The files the settings name can be opened (`quibble config check`: a certificate that
    /// cannot be read stops `serve` at start).
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let legacy = self.tls.as_ref();
        let files = [
            (
                "tls_cert",
                self.tls_cert.as_ref().or(legacy.map(|t| &t.cert)),
            ),
            ("tls_key", self.tls_key.as_ref().or(legacy.map(|t| &t.key))),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|source| ConfigError::Unreadable {
                    key,
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Check the settings against each other and make the server's [`Config`].
    pub fn into_config(mut self) -> Result<Config, ConfigError> {
        self.clamp();
        let tls = match (self.tls_cert, self.tls_key, self.tls) {
            (Some(cert), Some(key), None) => Some(TlsFiles { cert, key }),
            (None, None, legacy) => legacy,
            (Some(_), Some(_), Some(_)) => return Err(ConfigError::TlsTwice),
            _ => return Err(ConfigError::HalfTls),
        };
        let ports: Vec<u16> = self
            .listen
            .iter()
            .map(SocketAddr::port)
            .filter(|p| *p != 0)
            .collect();
        if let Some(w) = ports.windows(2).find(|w| w[0] != w[1]) {
            return Err(ConfigError::MixedPorts(w[0], w[1]));
        }
        if self.listen.is_empty() {
            return Err(ConfigError::NoListen);
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|entry| {
                crate::admin::ops::parse_network(entry)
                    .map_err(|_| ConfigError::TrustedProxy(entry.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.redis.is_some() && self.postgres.is_none() {
            return Err(ConfigError::RedisWithoutPostgres);
        }
        let ms = Duration::from_millis;
        let limits = Limits {
            max_connections: self.max_connections,
            hello_timeout: ms(self.hello_timeout_ms),
            heartbeat: ms(self.heartbeat_ms),
            max_inflight_sends: self.max_inflight_sends,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst,
            max_streams_per_connection: MAX_STREAMS_PER_CONNECTION,
            drain_timeout: DRAIN_TIMEOUT,
            rooms_per_hour: self.rooms_per_hour,
            room_burst: self.room_burst,
            friend_requests_per_hour: self.friend_requests_per_hour,
            friend_request_burst: self.friend_request_burst,
            room_joins_per_hour: self.room_joins_per_hour,
            room_join_burst: self.room_join_burst,
            hash_threads: self.hash_threads,
            hash_queue: self.hash_queue,
            hash_wait: ms(self.hash_wait_ms),
            signup_burst: self.signup_burst,
            signups_per_hour: self.signups_per_hour,
            max_connections_per_ip: self.max_connections_per_ip,
            max_unauthenticated: self
                .max_unauthenticated_connections
                .unwrap_or(self.max_connections / 4),
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip,
            http_header_timeout: ms(self.http_header_timeout_ms),
            http_body_timeout: ms(self.http_body_timeout_ms),
            tls_handshake_timeout: ms(self.tls_handshake_timeout_ms),
            http_write_timeout: ms(self.http_write_timeout_ms),
            deletes_per_hour: self.deletes_per_hour,
            delete_burst: self.delete_burst,
            congested_queue_bytes: self.congested_queue_kib.saturating_mul(1024),
            congestion_retry: ms(self.congestion_retry_ms),
            retention_sweep: ms(self.retention_sweep_ms),
        };
        Ok(Config {
            data_dir: self.data_dir,
            listen: self.listen,
            tls,
            http3_port: self.http3_port,
            web_dir: self.web_dir,
            store_cache_bytes: self.store_cache_mb.saturating_mul(1024 * 1024),
            limits,
            metrics_listen: self.metrics_listen,
            trusted_proxies,
            postgres: self.postgres,
            redis: self.redis,
        })
    }
}
