//! The server's configuration: [`Config`] is what the server consumes; where it comes from is
//! split by concern. [`settings`] declares every setting once (flag, `QUIBBLE_…` variable,
//! file key, default, bounds) and turns a complete set into a [`Config`]; [`sources`] merges
//! flag > environment > file > default and remembers which one each value came from;
//! [`render`] prints the effective settings for `quibble config check`. Adding a setting: see
//! [`settings`].

pub mod render;
pub mod settings;
pub mod sources;

pub use settings::Settings;
pub use sources::{Loaded, Source};

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// UDP port of HTTP/3 (served only with [`Config::tls`]): `None` is the HTTPS port + 1
    /// (any free port when that port is 0), `Some(0)` any free port.
    pub http3_port: Option<u16>,
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

/// A certificate chain and its private key, both PEM files (the file's older `[tls]` table).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
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

impl Default for Limits {
    /// The limits of the default settings.
    fn default() -> Self {
        match Settings::default().into_config() {
            Ok(config) => config.limits,
            Err(e) => unreachable!("the default settings are refused: {e}"),
        }
    }
}

/// The most sends a stream may have in flight to the store, whatever the settings say: each
/// holds its body (at most `MAX_BODY_LEN` bytes) until it is committed.
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
    #[error(
        "tls_cert and tls_key go together (--tls-cert/--tls-key, QUIBBLE_TLS_CERT/QUIBBLE_TLS_KEY, or the file's keys)"
    )]
    HalfTls,
    #[error("the config file sets both [tls] and tls_cert/tls_key; keep one")]
    TlsTwice,
    #[error("listen: addresses use different ports ({0} and {1}); use one port number")]
    MixedPorts(u16, u16),
    #[error("listen: no address given")]
    NoListen,
    #[error("trusted_proxies: {0:?} is not an address or a network (CIDR)")]
    TrustedProxy(String),
    #[error(
        "redis needs postgres (--redis needs --postgres): the nodes of a fleet share one PostgreSQL store"
    )]
    RedisWithoutPostgres,
    #[error("{key}: cannot read {path}: {source}")]
    Unreadable {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a setting cannot be written as TOML: {0}")]
    Unrepresentable(String),
}

impl ConfigError {
    fn internal(e: impl std::fmt::Display) -> ConfigError {
        ConfigError::Unrepresentable(e.to_string())
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
    use clap::{Args, FromArgMatches};

    use super::*;

    /// The config a file with `text` gives, over the defaults.
    fn from_file(text: &str) -> Result<Config, ConfigError> {
        let settings: Settings = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            source: Box::new(e),
        })?;
        settings.into_config()
    }

    /// The effective settings of the command line `args` (the environment ignored) over a
    /// config file holding `file`.
    fn load(args: &[&str], file: Option<&str>) -> Result<Loaded, ConfigError> {
        let command =
            Settings::augment_args(clap::Command::new("serve")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .expect("a valid command line");
        let cli = Settings::from_arg_matches(&matches).expect("settings");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("quibble.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).expect("write the file");
        }
        Loaded::load(cli, &matches, file.map(|_| path.as_path()))
    }

    #[test]
    fn defaults_are_loopback_both_families() {
        let c = Settings::default().into_config().unwrap();
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
        let l = Limits::default();
        assert_eq!((l.max_connections, l.max_unauthenticated), (10_000, 2_500));
        assert_eq!(l.heartbeat, Duration::from_secs(10));
        assert_eq!(
            (l.max_streams_per_connection, l.drain_timeout.as_secs()),
            (64, 5)
        );
    }

    #[test]
    fn store_and_room_settings_come_from_the_file() {
        let c = from_file("store_cache_mb = 8\nrooms_per_hour = 5\nroom_burst = 2\n").unwrap();
        assert_eq!(c.store_cache_bytes, 8 * 1024 * 1024);
        assert_eq!((c.limits.rooms_per_hour, c.limits.room_burst), (5, 2));
    }

    #[test]
    fn friend_request_and_join_limits_come_from_the_file() {
        let text = "friend_requests_per_hour = 7\nfriend_request_burst = 3\n\
                    room_joins_per_hour = 9\nroom_join_burst = 4\n";
        let l = from_file(text).unwrap().limits;
        assert_eq!((l.friend_requests_per_hour, l.friend_request_burst), (7, 3));
        assert_eq!((l.room_joins_per_hour, l.room_join_burst), (9, 4));
    }

    #[test]
    fn hashing_and_signup_knobs_come_from_the_file() {
        let c = from_file(
            "hash_threads = 1\nhash_queue = 8\nhash_wait_ms = 500\nsignup_burst = 5\nsignups_per_hour = 60\n",
        )
        .unwrap();
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
    fn command_line_wins_over_file_key_by_key() {
        let file = "data_dir = \"/srv/q\"\nlisten = [\"0.0.0.0:9000\"]\nmessage_burst = 7\n";
        let loaded = load(
            &["--listen", "127.0.0.1:0", "--message-burst", "9"],
            Some(file),
        )
        .unwrap();
        let c = loaded.config().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/q"));
        assert_eq!(c.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(c.limits.message_burst, 9);
        assert_eq!(loaded.source("data_dir"), Some(Source::File));
        assert_eq!(loaded.source("listen"), Some(Source::Flag));
        assert_eq!(loaded.source("message_burst"), Some(Source::Flag));
        assert_eq!(loaded.source("messages_per_second"), Some(Source::Default));
        // Several addresses: the flag repeated or comma-separated.
        let loaded = load(
            &["--listen", "127.0.0.1:5,[::1]:5", "--listen", "0.0.0.0:5"],
            None,
        );
        assert_eq!(loaded.unwrap().settings.listen.len(), 3);
    }

    /// A file alone (`quibble admin --config FILE`): its keys over the defaults.
    #[test]
    fn a_file_alone_gives_its_keys_over_the_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("q.toml");
        std::fs::write(&path, "data_dir = \"/srv/q\"\nroom_burst = 3\n").unwrap();
        let loaded = Loaded::from_file(&path).unwrap();
        assert_eq!(loaded.settings.data_dir, PathBuf::from("/srv/q"));
        assert_eq!(loaded.settings.room_burst, 3);
        assert_eq!(loaded.settings.message_burst, 200);
        assert_eq!(loaded.source("room_burst"), Some(Source::File));
        assert_eq!(loaded.source("message_burst"), Some(Source::Default));
    }

    #[test]
    fn the_older_tls_table_still_works() {
        let file = "[tls]\ncert = \"/etc/q/cert.pem\"\nkey = \"/etc/q/key.pem\"\n";
        let tls = from_file(file).unwrap().tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/q/cert.pem"));
        let loaded = load(&[], Some(file)).unwrap();
        assert_eq!(loaded.source("tls_key"), Some(Source::File));
        assert_eq!(
            loaded.config().unwrap().tls.unwrap().key,
            PathBuf::from("/etc/q/key.pem")
        );
        // The flat keys, and flags over the file's table.
        let flat = "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";
        assert_eq!(
            from_file(flat).unwrap().tls.unwrap().cert,
            PathBuf::from("c.pem")
        );
        let loaded = load(&["--tls-cert", "a.pem", "--tls-key", "b.pem"], Some(file)).unwrap();
        assert_eq!(
            loaded.config().unwrap().tls.unwrap().cert,
            PathBuf::from("a.pem")
        );
        assert!(matches!(
            load(&[], Some(&format!("{flat}{file}"))),
            Err(ConfigError::TlsTwice)
        ));
        assert!(matches!(
            load(
                &[],
                Some("[tls]\ncert = \"c\"\nkey = \"k\"\nchain = \"x\"\n")
            ),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn edge_keys_and_the_unauthenticated_default() {
        let c = from_file(
            "max_connections = 200\nmax_connections_per_ip = 9\nhttp_header_timeout_ms = 1500\n\
             metrics_listen = \"127.0.0.1:9100\"\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_unauthenticated, 50, "a quarter by default");
        assert_eq!(c.limits.max_connections_per_ip, 9);
        assert_eq!(c.limits.http_header_timeout, Duration::from_millis(1500));
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
        let c = load(&["--metrics-listen", "127.0.0.1:9200"], None)
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9200".parse().unwrap()));
        let c = from_file("max_connections = 8\nmax_unauthenticated_connections = 100\n").unwrap();
        assert_eq!(c.limits.max_unauthenticated, 8, "at most max_connections");
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(matches!(
            load(&[], Some("nonsense = 1")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            load(&["--tls-cert", "c.pem"], None),
            Err(ConfigError::HalfTls) | Ok(_)
        ));
        assert!(matches!(
            load(&["--tls-cert", "c.pem"], None).unwrap().config(),
            Err(ConfigError::HalfTls)
        ));
        assert!(matches!(
            load(&["--listen", "127.0.0.1:1", "--listen", "[::1]:2"], None)
                .unwrap()
                .config(),
            Err(ConfigError::MixedPorts(1, 2))
        ));
        assert!(matches!(
            load(&["--redis", "redis://127.0.0.1:6379"], None)
                .unwrap()
                .config(),
            Err(ConfigError::RedisWithoutPostgres)
        ));
        assert!(matches!(
            from_file("listen = []"),
            Err(ConfigError::NoListen)
        ));
        let fleet = from_file("postgres = \"postgres://db/q\"\nredis = \"redis://r:1\"").unwrap();
        assert_eq!(fleet.redis.as_deref(), Some("redis://r:1"));
    }

    #[test]
    fn a_bad_file_value_names_its_key_and_line() {
        let err = load(&[], Some("data_dir = \"d\"\nmax_connections = \"many\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_connections") && err.contains("line 2"),
            "{err}"
        );
        let err = load(&[], Some("max_conections = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn overload_keys_come_from_the_file_within_bounds() {
        let c = Settings::default().into_config().unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 256 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(25));
        let c = from_file("congested_queue_kib = 8\ncongestion_retry_ms = 40\n").unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 8 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(40));
        let c = from_file("congested_queue_kib = 100000\ncongestion_retry_ms = 0\n").unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 512 * 1024);
        assert_eq!(c.limits.congestion_retry, Duration::from_millis(1));
        let c = from_file("congested_queue_kib = 0\nheartbeat_ms = 5\n").unwrap();
        assert_eq!(c.limits.congested_queue_bytes, 1024);
        assert_eq!(c.limits.heartbeat, Duration::from_millis(100));
    }

    #[test]
    fn trusted_proxies_take_networks_and_single_addresses() {
        let c = Settings::default().into_config().unwrap();
        assert!(c.trusted_proxies.is_empty(), "none by default");
        let c = from_file("trusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\", \"::1\"]\n").unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "::1/128"]);
        let c = load(&["--trusted-proxies", "10.0.0.0/8,::1"], None)
            .unwrap()
            .config()
            .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(matches!(
            from_file("trusted_proxies = [\"proxy.example\"]\n"),
            Err(ConfigError::TrustedProxy(entry)) if entry == "proxy.example"
        ));
    }

    #[test]
    fn inflight_sends_come_from_the_file_within_bounds() {
        let limits = |text: &str| from_file(text).unwrap().limits;
        assert_eq!(limits("").max_inflight_sends, 64);
        assert_eq!(limits("max_inflight_sends = 1024").max_inflight_sends, 1024);
        assert_eq!(limits("max_inflight_sends = 0").max_inflight_sends, 1);
        assert_eq!(
            limits("max_inflight_sends = 1000000").max_inflight_sends,
            MAX_INFLIGHT_SENDS
        );
    }

    /// The rule that keeps a setting the same everywhere: flag `--data-dir`, variable
    /// `QUIBBLE_DATA_DIR`, file key `data_dir`, and a help line.
    #[test]
    fn every_setting_has_its_flag_variable_and_help() {
        let command = Settings::augment_args(clap::Command::new("serve"));
        let mut count = 0;
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(arg.get_long(), Some(id.replace('_', "-").as_str()), "{id}");
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(format!("QUIBBLE_{}", id.to_uppercase()).as_str()));
            assert!(arg.get_help().is_some(), "{id} has no help");
            count += 1;
        }
        assert_eq!(count, Settings::keys().len());
        // Each key is a file key (the table read back is the same settings).
        let table = toml::Table::try_from(Settings::default()).unwrap();
        let back: Settings = table.try_into().unwrap();
        assert_eq!(back, Settings::default());
    }

    /// The README's Configuration table has a row for every setting.
    #[test]
    fn the_readme_lists_every_setting() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## Configuration")
            .expect("a Configuration section");
        let section = &readme[start..];
        for key in Settings::keys() {
            let flag = format!("`--{}", key.replace('_', "-"));
            let env = format!("`QUIBBLE_{}`", key.to_uppercase());
            assert!(
                section.contains(&flag)
                    && section.contains(&env)
                    && section.contains(&format!("`{key}`")),
                "README's Configuration table lacks {key} (flag, variable or file key)"
            );
        }
    }

    /// `quibble config check`'s output is a config file that gives the same settings back,
    /// with each value's source, clamps shown and passwords hidden.
    #[test]
    fn the_rendered_configuration_reads_back_the_same() {
        let file =
            "heartbeat_ms = 50\npostgres = \"postgres://q:pw@db/q\"\nredis = \"redis://r:1\"\n";
        let loaded = load(
            &["--message-burst", "9", "--trusted-proxies", "10.0.0.0/8"],
            Some(file),
        )
        .unwrap();
        let text = render::render(&loaded);
        assert!(!text.contains("pw@"), "{text}");
        assert!(text.contains("postgres://q:***@db/q"), "{text}");
        let line = |key: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} "))
                })
                .unwrap_or_else(|| panic!("no line for {key} in:\n{text}"))
                .to_owned()
        };
        assert!(line("message_burst").ends_with("# flag"), "{text}");
        assert!(
            line("heartbeat_ms").contains("100")
                && line("heartbeat_ms").ends_with("# file, clamped from 50")
        );
        assert!(line("max_unauthenticated_connections").contains("2500"));
        assert!(line("tls_cert").starts_with("# tls_cert is not set"));
        assert!(line("room_burst").ends_with("# default"));
        for key in Settings::keys() {
            line(&key);
        }
        let mut back: Settings = toml::from_str(&text).unwrap();
        back.postgres = loaded.settings.postgres.clone();
        assert_eq!(back, loaded.settings);
    }
}
