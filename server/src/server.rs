//! Starting and stopping the server: raise the open-file limit and size the connection budget
//! below it, open the store, bind the UDP and TCP sockets (one port number for both), HTTP/3's
//! UDP sockets (a port of their own, with certificate files) and the optional metrics
//! listener, run WebTransport, HTTP and HTTP/3, rotate a self-signed certificate or reload the
//! certificate files (`tls::reload`), and shut down gracefully (not ready, `GoAway`, drain,
//! stop accepting, close the store).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::HeaderValue;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::timeout;
use wtransport::Endpoint;
use wtransport::endpoint::endpoint_side::Server as ServerSide;

use crate::admission::{Admission, Budgets};
use crate::auth::HashPool;
use crate::chat::congestion::Policy;
use crate::chat::hub::Hub;
use crate::chat::send_limit::SendLimiter;
use crate::chat::typing::Typing;
use crate::chat::users::Users;
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::enforce::Enforcement;
use crate::fleet::control::Control;
use crate::fleet::{Fleet, Seeds};
use crate::http::http3::Http3Endpoints;
use crate::http::listener::HttpPort;
use crate::http::login_limit::LoginLimiter;
use crate::http::signup_limit::SignupLimiter;
use crate::http::user_limit::UserLimiter;
use crate::state::{AppState, Shared};
use crate::store::{CommitHook, Store, StoreError};
use crate::tls::{Certificates, TlsError, reload};
use crate::transport::quic_keys::QuicKeys;
use crate::transport::wt;

/// Connections the metrics listener serves at once.
const METRICS_CONNECTIONS: usize = 16;
/// How often the certificate is checked for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("no address to listen on")]
    NoAddress,
    #[error("cannot use the certificate for HTTPS: {0}")]
    Https(#[from] wtransport::tls::rustls::Error),
    #[error("cannot start password hashing: {0}")]
    HashPool(#[from] crate::auth::AuthError),
    #[error("--redis: {0}")]
    Redis(#[from] crate::fleet::LinkError),
    #[error(transparent)]
    Http3(#[from] crate::http::http3::endpoint::EndpointError),
}

/// A bound server, ready to run.
pub struct Server {
    state: AppState,
    shutdown: watch::Sender<bool>,
    endpoints: Vec<(SocketAddr, Arc<Endpoint<ServerSide>>)>,
    listeners: Vec<tokio::net::TcpListener>,
    addrs: Vec<SocketAddr>,
    metrics: Option<(SocketAddr, tokio::net::TcpListener)>,
    web_dir: Option<PathBuf>,
    /// TLS for HTTP, when certificate files are configured.
    https: Option<Arc<wtransport::tls::rustls::ServerConfig>>,
    /// HTTP/3, on with certificate files.
    http3: Option<Http3Endpoints>,
    /// Asks for the certificate files to be read again.
    reload: reload::Trigger,
}

impl Server {
    /// Open the store and bind every listen address.
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        let descriptors = fit_open_file_limit(&config);
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let names = certificate_names(&config.listen);
        let certs = Arc::new(Certificates::load(config.tls.as_ref(), names)?);
        let https = match &config.tls {
            Some(_) => Some(crate::http::https::server_config(certs.clone())?),
            None => None,
        };
        crate::metrics::handle();
        let hub = Hub::new(Policy::from(&config.limits)); // overload: congestion thresholds
        let users = Users::default();
        let typing = Arc::new(Typing::default());
        // The store's commit hook gets each commit's messages at once: it delivers them here,
        // or in fleet mode hands them to the fleet, which delivers them here in seq order with
        // the other nodes' and publishes them to those nodes.
        let fleet = match &config.redis {
            Some(urls) => Some(Fleet::new(Seeds::parse(urls)?)),
            None => None,
        };
        let committed = Arc::new(crate::chat::committed::Committed {
            hub: hub.clone(),
            users: users.clone(),
            typing: Arc::clone(&typing),
            fleet: fleet.as_ref().map(|(fleet, _)| Arc::clone(fleet)),
        });
        let on_commit: CommitHook = match &fleet {
            Some((fleet, _)) => {
                let fleet = Arc::clone(fleet);
                Box::new(move |messages| fleet.committed(messages))
            }
            None => {
                let committed = Arc::clone(&committed);
                Box::new(move |messages| committed.publish(messages))
            }
        };
        let store = match &config.postgres {
            Some(url) => Store::connect_postgres(url, on_commit).await?,
            None => Store::open(
                &config.data_dir.join("quibble.redb"),
                config.store_cache_bytes,
                on_commit,
            )?,
        };
        let sockets = bind_sockets(&config.listen)?;
        let port = sockets
            .first()
            .map(|(a, _, _)| a.port())
            .ok_or(ServeError::NoAddress)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut endpoints = Vec::new();
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        let quic_keys =
            QuicKeys::load_or_create(&config.data_dir).map_err(|source| ServeError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        for (addr, udp, tcp) in sockets {
            let endpoint = wt::endpoint(
                udp,
                certs.clone(),
                &quic_keys,
                config.limits.max_streams_per_connection,
            )
            .map_err(|source| ServeError::Bind { addr, source })?;
            endpoints.push((addr, Arc::new(endpoint)));
            tcp.set_nonblocking(true)
                .map_err(|source| ServeError::Bind { addr, source })?;
            listeners.push(
                tokio::net::TcpListener::from_std(tcp)
                    .map_err(|source| ServeError::Bind { addr, source })?,
            );
            addrs.push(addr);
        }
        // HTTP/3 on a UDP port of its own (WebTransport has this port's UDP socket): with
        // certificate files only, as browsers take HTTP/3 only from a trusted certificate.
        let http3 = match &config.tls {
            Some(_) => {
                let requested = config.http3_port.unwrap_or_else(|| {
                    let https = config.listen.iter().map(SocketAddr::port).find(|p| *p != 0);
                    crate::http::http3::endpoint::default_port(https.unwrap_or(0))
                });
                Some(Http3Endpoints::bind(
                    &addrs,
                    requested,
                    certs.clone(),
                    &quic_keys,
                )?)
            }
            None => None,
        };
        let state = AppState::new(Shared {
            store,
            hub,
            users,
            typing,
            certs,
            admission: Admission::new(Budgets {
                descriptors,
                ..Budgets::from(&config.limits)
            }),
            limits: Arc::new(config.limits.clone()),
            login_limiter: Arc::new(LoginLimiter::default()),
            signup_limiter: Arc::new(SignupLimiter::new(
                config.limits.signup_burst,
                config.limits.signups_per_hour,
            )),
            hash_pool: Arc::new(HashPool::start(
                config.limits.hash_threads,
                config.limits.hash_queue,
                config.limits.hash_wait,
            )?),
            send_limiter: Arc::new(SendLimiter::new(
                config.limits.messages_per_second,
                config.limits.message_burst,
            )),
            room_limiter: Arc::new(UserLimiter::new(
                config.limits.rooms_per_hour,
                config.limits.room_burst,
            )),
            friend_limiter: Arc::new(UserLimiter::new(
                config.limits.friend_requests_per_hour,
                config.limits.friend_request_burst,
            )),
            join_limiter: Arc::new(UserLimiter::new(
                config.limits.room_joins_per_hour,
                config.limits.room_join_burst,
            )),
            delete_limiter: Arc::new(UserLimiter::new(
                config.limits.deletes_per_hour,
                config.limits.delete_burst,
            )),
            shutdown: shutdown_rx,
            webtransport_port: port,
            enforcement: Enforcement::default(),
            trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            // idle (issue 9): the heartbeat sweep's watch list.
            heartbeats: Default::default(),
            fleet: fleet.as_ref().map(|(fleet, _)| Arc::clone(fleet)),
            listening: Default::default(),
        });
        if let Some((_, tasks)) = fleet {
            tasks.spawn(committed, state.clone());
        }
        // The IP bans are in force before the first connection is accepted.
        state.reload_ip_bans().await?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(bind_tcp(addr)?),
            None => None,
        };
        Ok(Server {
            state,
            shutdown,
            endpoints,
            listeners,
            addrs,
            metrics,
            web_dir: config.web_dir.or_else(crate::http::web::default_dir),
            https,
            http3,
            reload: reload::Trigger::default(),
        })
    }

    /// The shared state (the admin socket serves on it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bound addresses (HTTP on TCP and WebTransport on UDP, same port).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// HTTP/3's endpoints (UDP), when it is on.
    pub fn http3(&self) -> Option<&Http3Endpoints> {
        self.http3.as_ref()
    }

    /// The metrics listener's address, when it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// Asks the running server to read its certificate files again (the binary's SIGHUP).
    pub fn reload_trigger(&self) -> reload::Trigger {
        self.reload.clone()
    }

    /// `https` with configured certificate files, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serve until `stop` completes, then shut down gracefully.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            state,
            shutdown,
            endpoints,
            listeners,
            web_dir,
            https,
            http3,
            metrics,
            reload,
            ..
        } = self;
        let mut accept_loops = JoinSet::new();
        for (_, endpoint) in &endpoints {
            accept_loops.spawn(wt::accept_loop(state.clone(), endpoint.clone()));
        }
        let limits = &state.limits;
        let tls = https.map(tokio_rustls::TlsAcceptor::from);
        let router = crate::http::router(state.clone(), web_dir.as_deref(), metrics.is_none());
        let mut tasks = JoinSet::new();
        // Advertised on HTTP/1.1 (every HTTPS response): browsers then use HTTP/3 instead.
        let alt_svc = http3
            .as_ref()
            .and_then(Http3Endpoints::port)
            .and_then(|port| HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400")).ok());
        if let Some(endpoints) = &http3 {
            tasks.spawn(crate::http::http3::serve(
                state.clone(),
                endpoints.clone(),
                router.clone(),
            ));
        }
        // The HTTP ports accept until the drain is over (see `http::listener`).
        let (closed, closed_rx) = watch::channel(false);
        // Every socket was bound (the TCP ones listen) in `bind`, the store is open and the
        // WebTransport accept loops run: ready, before any HTTP request can ask.
        state
            .listening
            .store(true, std::sync::atomic::Ordering::Release);
        for tcp in listeners {
            let port = HttpPort {
                tcp,
                router: router.clone(),
                admission: state.admission.clone(),
                tls: tls.clone(),
                header_timeout: limits.http_header_timeout,
                tls_handshake_timeout: limits.tls_handshake_timeout,
                write_stall: limits.http_write_timeout,
                label: "http",
                proxies: state.trusted_proxies.clone(),
                alt_svc: alt_svc.clone(),
            };
            tasks.spawn(port.serve(state.shutdown.clone(), closed_rx.clone()));
        }
        if let Some((_, tcp)) = metrics {
            let port = HttpPort {
                tcp,
                router: crate::http::metrics_router(),
                admission: Admission::new(Budgets {
                    total: METRICS_CONNECTIONS,
                    descriptors: METRICS_CONNECTIONS,
                    per_ip: METRICS_CONNECTIONS,
                    unauthenticated: 0,
                    unauthenticated_per_ip: 0,
                }),
                tls: None,
                header_timeout: limits.http_header_timeout,
                tls_handshake_timeout: limits.tls_handshake_timeout,
                write_stall: limits.http_write_timeout,
                label: "metrics",
                proxies: TrustedProxies::default(),
                alt_svc: None,
            };
            tasks.spawn(port.serve(state.shutdown.clone(), closed_rx.clone()));
        }
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        let cert_reload = tokio::spawn(reload::run(state.certs.clone(), reload));
        let typing_sweeper = tokio::spawn(end_typing(state.clone()));
        // idle (issue 9): one task closes silent connections.
        let heartbeat_sweeper = tokio::spawn(crate::chat::heartbeat::sweep(state.clone()));
        let metrics_upkeep = tokio::spawn(crate::metrics::upkeep());
        let retention_sweeper = tokio::spawn(crate::retention::sweep(state.clone()));

        stop.await;
        tracing::info!("shutting down: not ready, sending GoAway, draining");
        let _ = shutdown.send(true);
        // ws (issue 9): GoAway to every connection through the user hub (none keeps a
        // future waiting for the signal: memory per idle connection).
        state.users.go_away_all();
        if !state.admission.drained(state.limits.drain_timeout).await {
            tracing::warn!("some connections did not close in time");
        }
        let _ = closed.send(true);
        housekeeping.abort();
        cert_reload.abort();
        typing_sweeper.abort();
        heartbeat_sweeper.abort();
        metrics_upkeep.abort();
        retention_sweeper.abort();
        // The accept loops saw the shutdown signal; they must be gone before the close.
        while accept_loops.join_next().await.is_some() {}
        for (_, endpoint) in &endpoints {
            endpoint.close(wtransport::VarInt::from_u32(0), b"shutdown");
        }
        for (_, endpoint) in &endpoints {
            let _ = timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        if let Some(endpoints) = &http3 {
            endpoints.close().await;
        }
        let _ = timeout(Duration::from_secs(2), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Tells conversations when someone's typing ran out (see `chat::typing`).
async fn end_typing(state: AppState) {
    let mut ticker = tokio::time::interval(crate::chat::typing::SWEEP);
    loop {
        let now = ticker.tick().await;
        for (user, conversation) in state.typing.sweep(now) {
            if let Some(username) = state.users.name_of(user) {
                // Only the typer's own node tells the others (each runs it out by itself).
                if state.users.is_online(user) {
                    state.tell_fleet(Control::Typing {
                        conversation,
                        user,
                        username: username.clone(),
                        typing: false,
                    });
                }
                state.users.typing_as(conversation, user, &username, false);
            }
        }
    }
}

/// Periodic chores: self-signed certificate rotation and limiter cleanup.
async fn housekeeping(state: AppState) {
    let mut ticker = tokio::time::interval(ROTATION_CHECK);
    loop {
        ticker.tick().await;
        state.login_limiter.retain_recent();
        state.signup_limiter.retain_recent();
        state.send_limiter.retain_recent();
        state.room_limiter.retain_recent();
        state.friend_limiter.retain_recent();
        state.join_limiter.retain_recent();
        state.delete_limiter.retain_recent();
        // Handshakes from now on present the new certificate; `/api/cert` publishes its hash.
        match state.certs.rotate_if_due(SystemTime::now()) {
            Ok(true) => {
                tracing::info!(sha256 = %state.certs.info().sha256_hex, "rotated the self-signed certificate");
            }
            Ok(false) => {}
            Err(e) => tracing::error!("certificate rotation failed: {e}"),
        }
    }
}

/// Raise the soft open-file limit to the hard one; returns the TCP connections it leaves room
/// for (the admission's descriptor budget), so the server refuses them at its limit instead of
/// running out of descriptors. WebTransport sessions share the endpoint's UDP socket: only
/// `max_connections` bounds them.
fn fit_open_file_limit(config: &Config) -> usize {
    let soft = match crate::fd_limit::raise_to_hard() {
        Ok(soft) => soft,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            crate::fd_limit::soft_limit()
        }
    };
    let budget = crate::fd_limit::connection_budget(soft);
    if config.limits.max_connections > budget {
        tracing::warn!(
            configured = config.limits.max_connections,
            open_file_limit = soft,
            "TCP connections (HTTP, WebSocket) limited to {budget} to stay within the open-file \
             limit; WebTransport sessions are not"
        );
    }
    budget
}

/// Names a self-signed certificate covers.
fn certificate_names(listen: &[SocketAddr]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for addr in listen {
        let ip = addr.ip().to_string();
        if !addr.ip().is_unspecified() && !names.contains(&ip) {
            names.push(ip);
        }
    }
    names
}

type BoundPair = (SocketAddr, UdpSocket, TcpListener);

/// Bind UDP and TCP on every address with one port number. A port of 0 takes the port the
/// first UDP socket gets, retrying if that port is taken on TCP or another address. An
/// IPv6 address the machine lacks is skipped when others remain.
fn bind_sockets(listen: &[SocketAddr]) -> Result<Vec<BoundPair>, ServeError> {
    let requested = listen
        .iter()
        .map(SocketAddr::port)
        .find(|p| *p != 0)
        .unwrap_or(0);
    let mut last_error = None;
    for _ in 0..16 {
        match bind_once(listen, requested) {
            Ok(bound) if bound.is_empty() => return Err(ServeError::NoAddress),
            Ok(bound) => return Ok(bound),
            Err(ServeError::Bind { addr, source })
                if requested == 0 && source.kind() == io::ErrorKind::AddrInUse =>
            {
                last_error = Some(ServeError::Bind { addr, source });
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(ServeError::NoAddress))
}

fn bind_once(listen: &[SocketAddr], requested: u16) -> Result<Vec<BoundPair>, ServeError> {
    let mut port = requested;
    let mut bound = Vec::new();
    for (i, addr) in listen.iter().enumerate() {
        let mut addr = *addr;
        addr.set_port(port);
        let pair = UdpSocket::bind(addr).and_then(|udp| {
            let addr = udp.local_addr()?;
            Ok((addr, udp, TcpListener::bind(addr)?))
        });
        match pair {
            Ok(pair) => {
                port = pair.0.port();
                bound.push(pair);
            }
            Err(source) if addr.is_ipv6() && listen.len() > 1 && is_missing_address(&source) => {
                tracing::warn!(%addr, "skipping: {source}");
                if i == 0 {
                    continue;
                }
            }
            Err(source) => return Err(ServeError::Bind { addr, source }),
        }
    }
    Ok(bound)
}

fn bind_tcp(addr: SocketAddr) -> Result<(SocketAddr, tokio::net::TcpListener), ServeError> {
    TcpListener::bind(addr)
        .and_then(|tcp| {
            tcp.set_nonblocking(true)?;
            let local = tcp.local_addr()?;
            Ok((local, tokio::net::TcpListener::from_std(tcp)?))
        })
        .map_err(|source| ServeError::Bind { addr, source })
}

fn is_missing_address(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(97) // EAFNOSUPPORT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_one_port_for_udp_and_tcp_on_both_families() {
        let listen: Vec<SocketAddr> =
            vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let bound = bind_sockets(&listen).unwrap();
        let port = bound[0].0.port();
        assert_ne!(port, 0);
        for (addr, udp, tcp) in &bound {
            assert_eq!(addr.port(), port);
            assert_eq!(udp.local_addr().unwrap().port(), port);
            assert_eq!(tcp.local_addr().unwrap().port(), port);
        }
    }

    #[test]
    fn a_taken_fixed_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = bind_sockets(&[addr]).err().unwrap();
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
