//! The HTTP/3 endpoints: one quinn endpoint per listen address on its own UDP port (HTTP/3 and
//! WebTransport both negotiate ALPN `h3`, and wtransport's server refuses every request that is
//! not a WebTransport CONNECT, so they cannot share a socket: see the README's HTTP/3 section)
//! and their QUIC settings. The TLS settings are WebTransport's (`transport::quic_tls`: TLS
//! 1.3, ALPN `h3`, the SHA-256 suites, the server's certificate resolver), so both QUIC ports
//! present the same certificate the same way, and a reloaded certificate reaches both. The QUIC settings bound what one connection can make the
//! server hold: requests at once, unidirectional streams (HTTP/3's control and QPACK streams),
//! flow-control windows, and an idle timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use wtransport::quinn::crypto::rustls::QuicServerConfig;
use wtransport::quinn::{self, EndpointConfig, TransportConfig, VarInt};
use wtransport::tls::rustls;
use wtransport::tls::rustls::server::ResolvesServerCert;

use crate::transport::quic_keys::QuicKeys;
use crate::transport::{quic_tls, quic_transport, udp_buffers};

/// Requests one connection may have in flight at once (QUIC bidirectional streams).
pub const MAX_REQUESTS: u32 = 32;
/// Unidirectional streams a client may open: HTTP/3's control stream and QPACK's two, plus
/// room for the reserved (grease) streams some clients open.
const MAX_UNI: u32 = 8;
/// A connection silent for this long is closed by QUIC itself.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot listen for HTTP/3 on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot set up TLS for HTTP/3: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot set up TLS for HTTP/3: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// The bound HTTP/3 endpoints (one per listen address, one port number).
#[derive(Clone)]
pub struct Http3Endpoints {
    endpoints: Vec<(SocketAddr, quinn::Endpoint)>,
}

impl Http3Endpoints {
    /// Bind `port` on the address of each of `listen` (0: a free port, the same on every
    /// address) and present what `certs` resolves there (the server's current certificate).
    pub fn bind(
        listen: &[SocketAddr],
        port: u16,
        certs: Arc<dyn ResolvesServerCert>,
        keys: &QuicKeys,
    ) -> Result<Http3Endpoints, EndpointError> {
        let sockets = bind_sockets(listen, port)?;
        let mut endpoints = Vec::with_capacity(sockets.len());
        for (addr, socket) in sockets {
            udp_buffers::enlarge(&socket);
            let mut config = EndpointConfig::default();
            keys.apply(&mut config);
            let endpoint = quinn::Endpoint::new(
                config,
                Some(server_config(certs.clone())?),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|source| EndpointError::Bind { addr, source })?;
            endpoints.push((addr, endpoint));
        }
        Ok(Http3Endpoints { endpoints })
    }

    /// The UDP port every endpoint listens on.
    pub fn port(&self) -> Option<u16> {
        self.endpoints.first().map(|(addr, _)| addr.port())
    }

    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().map(|(addr, _)| *addr)
    }

    pub(super) fn endpoints(&self) -> impl Iterator<Item = &quinn::Endpoint> {
        self.endpoints.iter().map(|(_, endpoint)| endpoint)
    }

    /// Close every connection and wait (briefly) for the peers to hear of it.
    pub async fn close(&self) {
        for (_, endpoint) in &self.endpoints {
            endpoint.close(VarInt::from_u32(0), b"shutdown");
        }
        for (_, endpoint) in &self.endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        }
    }
}

/// The QUIC server configuration presenting what `certs` resolves.
fn server_config(certs: Arc<dyn ResolvesServerCert>) -> Result<quinn::ServerConfig, EndpointError> {
    let tls = quic_tls::config(certs)?;
    let crypto = QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// The transport settings of an HTTP/3 connection.
fn transport() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(IDLE_TIMEOUT.try_into().ok());
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_REQUESTS));
    t.max_concurrent_uni_streams(VarInt::from_u32(MAX_UNI));
    // Request bodies are at most 64 KiB (the router refuses more): small windows suffice.
    t.stream_receive_window(VarInt::from_u32(128 * 1024));
    t.receive_window(VarInt::from_u32(1024 * 1024));
    // Responses (the wasm file) go out at up to this many unacknowledged bytes.
    t.send_window(2 * 1024 * 1024);
    t.mtu_discovery_config(Some(quic_transport::mtu_discovery()));
    t
}

/// Bind UDP `port` on the address of each of `listen`. With port 0 the first socket's port is
/// taken on every other address, retried a few times if another address has it taken. An IPv6
/// address the machine lacks is skipped when others remain.
fn bind_sockets(
    listen: &[SocketAddr],
    port: u16,
) -> Result<Vec<(SocketAddr, UdpSocket)>, EndpointError> {
    let mut last_error = None;
    for _ in 0..16 {
        match bind_once(listen, port) {
            Err(EndpointError::Bind { addr, source })
                if port == 0 && source.kind() == io::ErrorKind::AddrInUse =>
            {
                last_error = Some(EndpointError::Bind { addr, source });
            }
            other => return other,
        }
    }
    Err(last_error.unwrap_or_else(|| EndpointError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], port)),
        source: io::Error::new(io::ErrorKind::AddrInUse, "no free port"),
    }))
}

fn bind_once(
    listen: &[SocketAddr],
    requested: u16,
) -> Result<Vec<(SocketAddr, UdpSocket)>, EndpointError> {
    let mut port = requested;
    let mut bound = Vec::new();
    for addr in listen {
        let mut addr = *addr;
        addr.set_port(port);
        match UdpSocket::bind(addr).and_then(|s| Ok((s.local_addr()?, s))) {
            Ok((local, socket)) => {
                port = local.port();
                bound.push((local, socket));
            }
            Err(source) if addr.is_ipv6() && listen.len() > 1 && is_missing_address(&source) => {
                tracing::warn!(%addr, "HTTP/3: skipping: {source}");
            }
            Err(source) => return Err(EndpointError::Bind { addr, source }),
        }
    }
    if bound.is_empty() {
        return Err(EndpointError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], requested)),
            source: io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to listen on"),
        });
    }
    Ok(bound)
}

fn is_missing_address(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::Unsupported
    ) || e.raw_os_error() == Some(97) // EAFNOSUPPORT
}

/// The HTTP/3 port when none is configured: the HTTPS port + 1, or any free port (0) when
/// the HTTPS port is itself chosen at random (or is the last one).
pub fn default_port(https_port_requested: u16) -> u16 {
    match https_port_requested {
        0 => 0,
        p => p.checked_add(1).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_follows_the_https_port() {
        assert_eq!(default_port(4433), 4434);
        assert_eq!(default_port(0), 0);
        assert_eq!(default_port(u16::MAX), 0);
    }

    #[test]
    fn port_zero_gives_one_port_on_both_families() {
        let listen: Vec<SocketAddr> =
            vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let bound = bind_sockets(&listen, 0).unwrap();
        let port = bound[0].0.port();
        assert_ne!(port, 0);
        assert!(bound.iter().all(|(addr, _)| addr.port() == port));
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let listen: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        let err = bind_sockets(&listen, port).err().unwrap();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
