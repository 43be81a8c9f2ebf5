//! Server configuration: defaults, an optional TOML file, and command-line overrides, merged
//! into one [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The port used when none is given.
pub const DEFAULT_PORT: u16 = 4433;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding the redb file.
    pub data_dir: PathBuf,
    /// Addresses to serve on: HTTP on TCP and WebTransport on UDP, same port number. A port of
    /// 0 picks a free port, shared by every address.
    pub listen: Vec<SocketAddr>,
    /// PEM certificate chain and private key; without them the server makes its own
    /// short-lived self-signed certificate.
    pub tls: Option<TlsFiles>,
    /// The browser client's directory (index.html and the built `pkg/`).
    pub web_dir: Option<PathBuf>,
    /// The store's page cache, in bytes (file key `store_cache_mb`, in MiB).
    pub store_cache_bytes: usize,
    pub limits: Limits,
    /// Where `/metrics` is served; when set, the public port answers it with 404.
    pub metrics_listen: Option<SocketAddr>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (see
    /// [`crate::client_addr`]); none by default.
    pub trusted_proxies: Vec<IpNet>,
    /// The fleet's store: a PostgreSQL URL (`postgres://user@host:port/db`); when set,
    /// everything durable lives there instead of the redb file (the data directory still holds
    /// the certificates and the admin socket).
    pub postgres: Option<String>,
    /// The fleet's fan-out: Redis URL(s), comma-separated (any node of a Redis Cluster will
    /// do); needs [`Config::postgres`].
    pub redis: Option<String>,
}

/// The store's page cache when none is configured, in MiB.
pub const DEFAULT_STORE_CACHE_MB: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Load-shedding and timing knobs.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live realtime connections at most (WebTransport + WebSocket).
    pub max_connections: usize,
    /// How long a new connection has to send `Hello`.
    pub hello_timeout: Duration,
    /// Ping interval the server asks clients for; silence for 3× closes the connection.
    pub heartbeat: Duration,
    /// Messages a connection may have in flight to the store at once.
    pub max_inflight_sends: usize,
    /// Messages per second one user may send, sustained, and in a burst.
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Conversation streams one connection may hold open.
    pub max_streams_per_connection: usize,
    /// How long shutdown waits for connections to drain.
    pub drain_timeout: Duration,
    /// Rooms one user may create per hour, sustained, and in a burst.
    pub rooms_per_hour: u32,
    pub room_burst: u32,
    /// Friend requests (`POST /api/users/add`) one user may make per hour, sustained, and in a
    /// burst.
    pub friend_requests_per_hour: u32,
    pub friend_request_burst: u32,
    /// Rooms one user may join per hour, sustained, and in a burst (each join is announced to
    /// the room's online members).
    pub room_joins_per_hour: u32,
    pub room_join_burst: u32,
    /// Password hashing: threads (each keeps 19 MiB), jobs queued per kind (logins, sign-ups),
    /// and how long a job may wait to start before it is refused with 503.
    pub hash_threads: usize,
    pub hash_queue: usize,
    pub hash_wait: Duration,
    /// Sign-ups per address (IPv6 /64): a burst, then this many per hour.
    pub signup_burst: u32,
    pub signups_per_hour: u32,
    // Connection admission and HTTP deadlines (network edge).
    /// Connections one address (IPv4, or IPv6 /64) may hold open, all kinds counted.
    pub max_connections_per_ip: usize,
    /// Realtime connections that have not yet had their `Hello` accepted, server-wide and per
    /// address.
    pub max_unauthenticated: usize,
    pub max_unauthenticated_per_ip: usize,
    /// Time to send a complete request head, counted from the connection's start or from the
    /// previous response (so it also ends idle keep-alive connections).
    pub http_header_timeout: Duration,
    /// Time to send a whole request body once its head has arrived.
    pub http_body_timeout: Duration,
    /// Time to finish the TLS handshake (HTTPS), and WebTransport's QUIC and HTTP/3 handshake
    /// up to the accepted session request.
    pub tls_handshake_timeout: Duration,
    /// Time a write to an HTTP connection (or a WebSocket on it) may wait on a peer that
    /// reads nothing.
    pub http_write_timeout: Duration,
    /// Messages one (non-admin) user may delete per hour, sustained, and in a burst: each
    /// deletion makes the store overwrite the free pages of its file (`store::redb::scrub`).
    pub deletes_per_hour: u32,
    pub delete_burst: u32,
    // Overload: ingress backpressure (`chat::congestion`).
    /// Bytes queued for a reader's connection at which it is behind; when most of a
    /// conversation's readers are, its sends are refused for a while (`RateLimited`). Half a
    /// stream's queue (`chat::outbound::STREAM_QUEUE_BYTES`): above what one group commit of a
    /// busy conversation queues at once for a reader that keeps up (a sender with 1,024 sends
    /// in flight tripped 64 KiB with its own echoes and ingested a third as fast), below what
    /// gets a stream cut.
    pub congested_queue_bytes: usize,
    /// The shortest wait a send refused for congestion is told to take.
    pub congestion_retry: Duration,
    /// How often the background sweep applies rooms' retention (`crate::retention`).
    pub retention_sweep: Duration,
}

/// One hashing thread per core, at most 4.
fn default_hash_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            heartbeat: Duration::from_secs(10),
            max_inflight_sends: 64,
            messages_per_second: 50,
            message_burst: 200,
            // Each allowed QUIC stream costs every session memory up front (transport/wt.rs).
            max_streams_per_connection: 64,
            drain_timeout: Duration::from_secs(5),
            rooms_per_hour: 20,
            room_burst: 10,
            friend_requests_per_hour: 60,
            friend_request_burst: 20,
            room_joins_per_hour: 120,
            room_join_burst: 30,
            hash_threads: default_hash_threads(),
            hash_queue: 32,
            hash_wait: Duration::from_secs(2),
            signup_burst: 64,
            signups_per_hour: 360,
            max_connections_per_ip: 128,
            max_unauthenticated: 2_500,
            max_unauthenticated_per_ip: 16,
            hello_timeout: Duration::from_secs(5),
            http_header_timeout: Duration::from_secs(10),
            http_body_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            http_write_timeout: Duration::from_secs(30),
            deletes_per_hour: 600,
            delete_burst: 60,
            congested_queue_bytes: 256 * 1024,
            congestion_retry: Duration::from_millis(25),
            retention_sweep: Duration::from_secs(60),
        }
    }
}

/// The `[server]` file format (all keys optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<Vec<SocketAddr>>,
    pub tls: Option<TlsFiles>,
    pub web_dir: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub messages_per_second: Option<u32>,
    pub message_burst: Option<u32>,
    /// Milliseconds between client pings ([`Limits::heartbeat`]).
    pub heartbeat_ms: Option<u64>,
    pub store_cache_mb: Option<usize>,
    pub rooms_per_hour: Option<u32>,
    pub room_burst: Option<u32>,
    pub friend_requests_per_hour: Option<u32>,
    pub friend_request_burst: Option<u32>,
    pub room_joins_per_hour: Option<u32>,
    pub room_join_burst: Option<u32>,
    pub hash_threads: Option<usize>,
    pub hash_queue: Option<usize>,
    pub hash_wait_ms: Option<u64>,
    pub signup_burst: Option<u32>,
    pub signups_per_hour: Option<u32>,
    pub metrics_listen: Option<SocketAddr>,
    pub max_connections_per_ip: Option<usize>,
    pub max_unauthenticated_connections: Option<usize>,
    pub max_unauthenticated_per_ip: Option<usize>,
    pub hello_timeout_ms: Option<u64>,
    pub http_header_timeout_ms: Option<u64>,
    pub http_body_timeout_ms: Option<u64>,
    pub tls_handshake_timeout_ms: Option<u64>,
    pub http_write_timeout_ms: Option<u64>,
    pub deletes_per_hour: Option<u32>,
    pub delete_burst: Option<u32>,
    /// Networks or single addresses, e.g. `["10.0.0.0/8", "192.0.2.1"]`.
    pub trusted_proxies: Option<Vec<String>>,
    // Durable ingest (issue 9).
    /// [`Limits::max_inflight_sends`], clamped to 1..=[`MAX_INFLIGHT_SENDS`].
    pub max_inflight_sends: Option<usize>,
    // Overload ([`Limits::congested_queue_bytes`], [`Limits::congestion_retry`]).
    pub congested_queue_kib: Option<usize>,
    pub congestion_retry_ms: Option<u64>,
    /// [`Limits::retention_sweep`], clamped to 10 ms..=1 day.
    pub retention_sweep_ms: Option<u64>,
    // The fleet (issue 10).
    /// The PostgreSQL database to keep everything durable in, instead of the embedded file.
    pub postgres: Option<String>,
    /// Redis for the fleet's fan-out (with `postgres`).
    pub redis: Option<String>,
}

/// The most sends a stream may have in flight to the store, whatever the file says: each holds
/// its body (at most `MAX_BODY_LEN` bytes) until it is committed.
pub const MAX_INFLIGHT_SENDS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("listen addresses use different ports ({0} and {1}); use one port number")]
    MixedPorts(u16, u16),
    #[error("trusted_proxies: {0:?} is not an address or a network (CIDR)")]
    TrustedProxy(String),
    #[error("--redis needs --postgres: the nodes of a fleet share one PostgreSQL store")]
    RedisWithoutPostgres,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

/// Values given on the command line, which win over the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Vec<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub web_dir: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub postgres: Option<String>,
    pub redis: Option<String>,
}

impl Config {
    /// Merge defaults, the file (if any) and the command line.
    pub fn resolve(mut file: FileConfig, cli: Overrides) -> Result<Config, ConfigError> {
        let tls = match (cli.tls_cert, cli.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => file.tls.take(),
            _ => return Err(ConfigError::HalfTls),
        };
        let listen = if !cli.listen.is_empty() {
            cli.listen
        } else {
            file.listen.take().unwrap_or_else(default_listen)
        };
        let ports: Vec<u16> = listen
            .iter()
            .map(SocketAddr::port)
            .filter(|p| *p != 0)
            .collect();
        if let Some(w) = ports.windows(2).find(|w| w[0] != w[1]) {
            return Err(ConfigError::MixedPorts(w[0], w[1]));
        }
        let mut limits = Limits::default();
        if let Some(n) = file.max_connections {
            limits.max_connections = n;
        }
        if let Some(n) = file.messages_per_second {
            limits.messages_per_second = n;
        }
        if let Some(n) = file.message_burst {
            limits.message_burst = n;
        }
        if let Some(ms) = file.heartbeat_ms {
            limits.heartbeat = Duration::from_millis(ms.clamp(100, 600_000));
        }
        if let Some(n) = file.rooms_per_hour {
            limits.rooms_per_hour = n;
        }
        if let Some(n) = file.room_burst {
            limits.room_burst = n;
        }
        if let Some(n) = file.friend_requests_per_hour {
            limits.friend_requests_per_hour = n;
        }
        if let Some(n) = file.friend_request_burst {
            limits.friend_request_burst = n;
        }
        if let Some(n) = file.room_joins_per_hour {
            limits.room_joins_per_hour = n;
        }
        if let Some(n) = file.room_join_burst {
            limits.room_join_burst = n;
        }
        let store_cache_mb = file.store_cache_mb.unwrap_or(DEFAULT_STORE_CACHE_MB);
        if let Some(n) = file.hash_threads {
            limits.hash_threads = n;
        }
        if let Some(n) = file.hash_queue {
            limits.hash_queue = n;
        }
        if let Some(ms) = file.hash_wait_ms {
            limits.hash_wait = Duration::from_millis(ms);
        }
        if let Some(n) = file.signup_burst {
            limits.signup_burst = n;
        }
        if let Some(n) = file.signups_per_hour {
            limits.signups_per_hour = n;
        }
        if let Some(n) = file.max_inflight_sends {
            limits.max_inflight_sends = n.clamp(1, MAX_INFLIGHT_SENDS);
        }
        apply_edge_limits(&file, &mut limits);
        if let Some(n) = file.deletes_per_hour {
            limits.deletes_per_hour = n;
        }
        if let Some(n) = file.delete_burst {
            limits.delete_burst = n;
        }
        apply_overload_limits(&file, &mut limits);
        if let Some(ms) = file.retention_sweep_ms {
            limits.retention_sweep = Duration::from_millis(ms.clamp(10, 86_400_000));
        }
        let trusted_proxies = file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                crate::admin::ops::parse_network(entry)
                    .map_err(|_| ConfigError::TrustedProxy(entry.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let postgres = cli.postgres.or(file.postgres.take());
        let redis = cli.redis.or(file.redis.take());
        if redis.is_some() && postgres.is_none() {
            return Err(ConfigError::RedisWithoutPostgres);
        }
        Ok(Config {
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("quibble-data")),
            listen,
            tls,
            web_dir: cli.web_dir.or(file.web_dir),
            store_cache_bytes: store_cache_mb.saturating_mul(1024 * 1024),
            limits,
            metrics_listen: cli.metrics_listen.or(file.metrics_listen),
            trusted_proxies,
            postgres,
            redis,
        })
    }
}

/// The admission and deadline keys of the file. Without `max_unauthenticated_connections`, a
/// quarter of `max_connections` may be unauthenticated at once.
fn apply_edge_limits(file: &FileConfig, limits: &mut Limits) {
    let ms = Duration::from_millis;
    limits.max_unauthenticated = file
        .max_unauthenticated_connections
        .unwrap_or(limits.max_connections / 4)
        .clamp(1, limits.max_connections.max(1));
    if let Some(n) = file.max_connections_per_ip {
        limits.max_connections_per_ip = n;
    }
    if let Some(n) = file.max_unauthenticated_per_ip {
        limits.max_unauthenticated_per_ip = n;
    }
    if let Some(t) = file.hello_timeout_ms {
        limits.hello_timeout = ms(t);
    }
    if let Some(t) = file.http_header_timeout_ms {
        limits.http_header_timeout = ms(t);
    }
    if let Some(t) = file.http_body_timeout_ms {
        limits.http_body_timeout = ms(t);
    }
    if let Some(t) = file.tls_handshake_timeout_ms {
        limits.tls_handshake_timeout = ms(t);
    }
    if let Some(t) = file.http_write_timeout_ms {
        limits.http_write_timeout = ms(t);
    }
}

/// The overload keys of the file: a high-water mark of at least 1 KiB and below the
/// connection's queue cap (above it nothing would ever congest), a retry of 1 ms to 10 s.
fn apply_overload_limits(file: &FileConfig, limits: &mut Limits) {
    if let Some(kib) = file.congested_queue_kib {
        let cap = crate::chat::outbound::CONNECTION_QUEUE_BYTES;
        limits.congested_queue_bytes = kib.saturating_mul(1024).clamp(1024, cap / 2);
    }
    if let Some(ms) = file.congestion_retry_ms {
        limits.congestion_retry = Duration::from_millis(ms.clamp(1, 10_000));
    }
}

/// Loopback on both address families.
pub fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, DEFAULT_PORT)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_both_families() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("quibble-data"));
        assert_eq!(c.listen.len(), 2);
        assert!(
            c.listen
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 4433)
        );
        assert!(c.tls.is_none());
        assert_eq!(c.store_cache_bytes, 64 * 1024 * 1024);
        assert!((1..=4).contains(&c.limits.hash_threads));
    }

    #[test]
    fn store_and_room_settings_come_from_the_file() {
        let file: FileConfig =
            toml::from_str("store_cache_mb = 8\nrooms_per_hour = 5\nroom_burst = 2\n").unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.store_cache_bytes, 8 * 1024 * 1024);
        assert_eq!((c.limits.rooms_per_hour, c.limits.room_burst), (5, 2));
    }

    #[test]
    fn friend_request_and_join_limits_come_from_the_file() {
        let text = "friend_requests_per_hour = 7\nfriend_request_burst = 3\n\
                    room_joins_per_hour = 9\nroom_join_burst = 4\n";
        let file: FileConfig = toml::from_str(text).unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        let l = &c.limits;
        assert_eq!((l.friend_requests_per_hour, l.friend_request_burst), (7, 3));
        assert_eq!((l.room_joins_per_hour, l.room_join_burst), (9, 4));
    }

    #[test]
    fn hashing_and_signup_knobs_come_from_the_file() {
        let file: FileConfig = toml::from_str(
            "hash_threads = 1\nhash_queue = 8\nhash_wait_ms = 500\nsignup_burst = 5\nsignups_per_hour = 60\n",
        )
        .unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(
            (
                c.limits.hash_threads,
                c.limits.hash_queue,
                c.limits.hash_wait
            ),
            (1, 8, Duration::from_millis(500))
        );
        assert_eq!((c.limits.signup_burst, c.limits.signups_per_hour), (5, 60));
    }

    #[test]
    fn command_line_wins_over_file() {
        let file: FileConfig =
            toml::from_str("data_dir = \"/srv/q\"\nlisten = [\"0.0.0.0:9000\"]\n").unwrap();
        let cli = Overrides {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..Overrides::default()
        };
        let c = Config::resolve(file, cli).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/q"));
        assert_eq!(c.listen, vec!["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn edge_keys_and_the_unauthenticated_default() {
        let file: FileConfig = toml::from_str(
            "max_connections = 200\nmax_connections_per_ip = 9\nhttp_header_timeout_ms = 1500\n\
             metrics_listen = \"127.0.0.1:9100\"\n",
        )
        .unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.limits.max_unauthenticated, 50, "a quarter by default");
        assert_eq!(c.limits.max_connections_per_ip, 9);
        assert_eq!(c.limits.http_header_timeout, Duration::from_millis(1500));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let cli = Overrides {
            metrics_listen: Some("127.0.0.1:9200".parse().unwrap()),
            ..Overrides::default()
        };
        let c = Config::resolve(FileConfig::default(), cli).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9200".parse().unwrap()));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(toml::from_str::<FileConfig>("nonsense = 1").is_err());
        let half = Overrides {
            tls_cert: Some("c.pem".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            Config::resolve(FileConfig::default(), half),
            Err(ConfigError::HalfTls)
        ));
        let mixed = Overrides {
            listen: vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
            ..Overrides::default()
        };
        assert!(matches!(
            Config::resolve(FileConfig::default(), mixed),
            Err(ConfigError::MixedPorts(1, 2))
        ));
        let redis_alone = Overrides {
            redis: Some("redis://127.0.0.1:6379".into()),
            ..Overrides::default()
        };
        assert!(matches!(
            Config::resolve(FileConfig::default(), redis_alone),
            Err(ConfigError::RedisWithoutPostgres)
        ));
        let file: FileConfig =
            toml::from_str("postgres = \"postgres://db/q\"\nredis = \"redis://r:1\"").unwrap();
        let fleet = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(fleet.redis.as_deref(), Some("redis://r:1"));
    }

    #[test]
    fn overload_keys_come_from_the_file_within_bounds() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 256 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(25));
        let file: FileConfig =
            toml::from_str("congested_queue_kib = 8\ncongestion_retry_ms = 40\n").unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 8 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(40));
        let file: FileConfig =
            toml::from_str("congested_queue_kib = 100000\ncongestion_retry_ms = 0\n").unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 512 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(1));
    }

    #[test]
    fn trusted_proxies_take_networks_and_single_addresses() {
        let c = Config::resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert!(c.trusted_proxies.is_empty(), "none by default");
        let file: FileConfig =
            toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"::1\"]\n").unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "::1/128"]);
        let file: FileConfig = toml::from_str("trusted_proxies = [\"proxy.example\"]\n").unwrap();
        assert!(matches!(
            Config::resolve(file, Overrides::default()),
            Err(ConfigError::TrustedProxy(entry)) if entry == "proxy.example"
        ));
    }

    #[test]
    fn inflight_sends_come_from_the_file_within_bounds() {
        let limits = |text: &str| {
            let file: FileConfig = toml::from_str(text).unwrap();
            Config::resolve(file, Overrides::default()).unwrap().limits
        };
        assert_eq!(limits("").max_inflight_sends, 64);
        assert_eq!(limits("max_inflight_sends = 1024").max_inflight_sends, 1024);
        assert_eq!(limits("max_inflight_sends = 0").max_inflight_sends, 1);
        assert_eq!(
            limits("max_inflight_sends = 1000000").max_inflight_sends,
            MAX_INFLIGHT_SENDS
        );
    }
}
