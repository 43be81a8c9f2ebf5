//! WebTransport client endpoints shared between sessions: a [`WtEndpoints`] pool lets many
//! sessions (of one client or of many) use a few UDP sockets instead of one each, so that a
//! process holding thousands of sessions does not run out of open files. QUIC tells the
//! sessions on one socket apart by their connection ids.
//!
//! An endpoint's QUIC configuration fixes how the server's certificate is trusted and which
//! address family its socket has, so the pool keeps its endpoints by that [`EndpointKey`]. A
//! session takes a [`Lease`] on the least loaded endpoint of its key that has fewer than the
//! pool's `sessions_per_endpoint` leases, opening a new endpoint when all are full; the lease
//! is given back when the session ends. Endpoints no session leases any more are closed when
//! the next lease is placed if their key differs (the server rotated its certificate, so its
//! old hash is of no more use). A client given no pool gets one of its own, whose single
//! endpoint serves its reconnects.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wtransport::config::IpBindConfig;
use wtransport::endpoint::endpoint_side;
use wtransport::quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig};
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Endpoint};

use super::{TransportKind, wt_udp_buffers};
use crate::error::TransportError;
use crate::tls::TlsRoots;

/// QUIC keep-alive (the server drops connections idle for 30 s).
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// QUIC idle timeout, as the server's.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

type ClientEndpoint = Endpoint<endpoint_side::Client>;

/// A pool of WebTransport client endpoints (UDP sockets) that sessions share; cheap to clone
/// (the clones share the pool). Give it to every client that should share it with
/// [`ClientOptions::wt_endpoints`](crate::ClientOptions::wt_endpoints).
#[derive(Clone)]
pub struct WtEndpoints {
    pool: Arc<Pool>,
}

struct Pool {
    sessions_per_endpoint: usize,
    slots: Mutex<Vec<Slot>>,
}

struct Slot {
    key: EndpointKey,
    endpoint: Arc<ClientEndpoint>,
    leases: Arc<AtomicUsize>,
}

impl std::fmt::Debug for WtEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WtEndpoints")
            .field("sessions_per_endpoint", &self.pool.sessions_per_endpoint)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

/// How an endpoint trusts the server's certificate.
#[derive(Debug, Clone)]
pub(crate) enum Pinning {
    /// The certificate with this SHA-256 hash (from `/api/cert`).
    Hash(Sha256Digest),
    /// Certificates these roots vouch for.
    Roots(TlsRoots),
}

/// The address family of an endpoint's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
    /// Both, for a server given by name.
    Dual,
}

impl Family {
    /// The family to reach `host` (a name, an address, an IPv6 address in brackets) with.
    pub(crate) fn of(host: &str) -> Family {
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(IpAddr::V4(_)) => Family::V4,
            Ok(IpAddr::V6(_)) => Family::V6,
            Err(_) => Family::Dual,
        }
    }

    fn bind_config(self) -> IpBindConfig {
        match self {
            Family::V4 => IpBindConfig::InAddrAnyV4,
            Family::V6 => IpBindConfig::InAddrAnyV6,
            Family::Dual => IpBindConfig::InAddrAnyDual,
        }
    }
}

/// What makes endpoints interchangeable: the same trust and address family.
#[derive(Debug, Clone)]
pub(crate) struct EndpointKey {
    pub family: Family,
    pub pinning: Pinning,
}

impl PartialEq for EndpointKey {
    fn eq(&self, other: &Self) -> bool {
        self.family == other.family
            && match (&self.pinning, &other.pinning) {
                (Pinning::Hash(a), Pinning::Hash(b)) => a == b,
                (Pinning::Roots(a), Pinning::Roots(b)) => a.same(b),
                _ => false,
            }
    }
}

/// A session's share of an endpoint; the endpoint stays open at least as long.
pub(crate) struct Lease {
    endpoint: Arc<ClientEndpoint>,
    leases: Arc<AtomicUsize>,
}

impl Lease {
    pub(crate) fn endpoint(&self) -> &ClientEndpoint {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WtEndpoints {
    /// A pool whose endpoints carry up to `sessions_per_endpoint` sessions each (at least 1).
    pub fn new(sessions_per_endpoint: usize) -> WtEndpoints {
        WtEndpoints {
            pool: Arc::new(Pool {
                sessions_per_endpoint: sessions_per_endpoint.max(1),
                slots: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The pool of a client that was given none: one endpoint for all its sessions.
    pub(crate) fn private() -> WtEndpoints {
        WtEndpoints::new(usize::MAX)
    }

    /// Endpoints (UDP sockets) open in the pool.
    pub fn endpoints(&self) -> usize {
        self.slots().len()
    }

    /// The local addresses of the pool's sockets.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.slots()
            .iter()
            .filter_map(|slot| slot.endpoint.local_addr().ok())
            .collect()
    }

    /// A lease on an endpoint for `key`: the least loaded one with room, or a new one.
    pub(crate) fn lease(&self, key: &EndpointKey) -> Result<Lease, TransportError> {
        let mut slots = self.slots();
        slots.retain(|slot| slot.key == *key || slot.leases.load(Ordering::Acquire) > 0);
        let roomy = slots
            .iter()
            .filter(|slot| slot.key == *key)
            .map(|slot| (slot.leases.load(Ordering::Acquire), slot))
            .filter(|(leases, _)| *leases < self.pool.sessions_per_endpoint)
            .min_by_key(|(leases, _)| *leases)
            .map(|(_, slot)| (slot.endpoint.clone(), slot.leases.clone()));
        let (endpoint, leases) = match roomy {
            Some(found) => found,
            None => {
                let endpoint = Arc::new(open(key, self.pool.sessions_per_endpoint)?);
                let leases = Arc::new(AtomicUsize::new(0));
                slots.push(Slot {
                    key: key.clone(),
                    endpoint: endpoint.clone(),
                    leases: leases.clone(),
                });
                (endpoint, leases)
            }
        };
        leases.fetch_add(1, Ordering::AcqRel);
        Ok(Lease { endpoint, leases })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // The slot list is consistent between statements: a panic elsewhere cannot break it.
        self.pool
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The QUIC settings of every session: keep-alives and the idle timeout the server expects,
/// one MTU probe (of 1,452 bytes: quinn's binary search from 1,200 stops when its next step is
/// under `minimum_change` but tries the upper bound first), where quinn's default search
/// sends five padded probes, each parsed byte by byte by the server.
fn transport() -> Result<TransportConfig, String> {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    let idle = IdleTimeout::try_from(IDLE_TIMEOUT).map_err(|e| format!("bad idle timeout: {e}"))?;
    t.max_idle_timeout(Some(idle));
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(1452).minimum_change(200);
    t.mtu_discovery_config(Some(mtu));
    Ok(t)
}

/// A new client endpoint (and its UDP socket) for `key`, to carry up to `sessions` sessions.
fn open(key: &EndpointKey, sessions: usize) -> Result<ClientEndpoint, TransportError> {
    let failed = |reason: String| TransportError::Failed {
        transport: TransportKind::WebTransport,
        reason,
    };
    // Sessions that share a socket get the server's buffers, so that bursts are not dropped
    // (one session's socket keeps the default: a client of its own needs no more).
    let shared = (sessions > 1)
        .then(|| wt_udp_buffers::bind_shared(key.family))
        .and_then(|bound| {
            bound
                .inspect_err(|e| {
                    tracing::warn!("cannot enlarge a WebTransport client's UDP buffers: {e}")
                })
                .ok()
        });
    let bind = ClientConfig::builder();
    let bind = match shared {
        Some(socket) => bind.with_bind_socket(socket),
        None => bind.with_bind_config(key.family.bind_config()),
    };
    let builder = match &key.pinning {
        Pinning::Roots(roots) => bind.with_custom_tls(roots.quic().clone()),
        Pinning::Hash(hash) => bind.with_server_certificate_hashes([hash.clone()]),
    };
    let mut config = builder.build();
    config
        .quic_config_mut()
        .transport_config(Arc::new(transport().map_err(failed)?));
    Endpoint::client(config).map_err(|e| failed(format!("cannot open a UDP socket: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EndpointKey {
        EndpointKey {
            family: Family::V4,
            pinning: Pinning::Hash(Sha256Digest::new([byte; 32])),
        }
    }

    #[test]
    fn families_follow_the_server_address() {
        assert_eq!(Family::of("127.0.0.1"), Family::V4);
        assert_eq!(Family::of("[::1]"), Family::V6);
        assert_eq!(Family::of("localhost"), Family::Dual);
    }

    #[tokio::test]
    async fn leases_fill_endpoints_in_turn_and_come_back() {
        let pool = WtEndpoints::new(2);
        let mut held: Vec<Lease> = (0..5).map(|_| pool.lease(&key(1)).unwrap()).collect();
        // 5 sessions at 2 per endpoint: 3 sockets, each on its own port.
        assert_eq!(pool.endpoints(), 3);
        let mut ports: Vec<u16> = pool.local_addrs().iter().map(SocketAddr::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        // A freed place is taken again before a new endpoint is opened.
        drop(held.pop());
        held.push(pool.lease(&key(1)).unwrap());
        assert_eq!(pool.endpoints(), 3);
        // Another certificate needs its own endpoint.
        let other = pool.lease(&key(2)).unwrap();
        assert_eq!(pool.endpoints(), 4);
        drop(other);
        // Unleased endpoints of another key are closed when the next lease is placed.
        held.push(pool.lease(&key(1)).unwrap());
        assert_eq!(pool.endpoints(), 3);
        // Once all 6 are given back, a lease reuses an endpoint of its key.
        held.clear();
        held.push(pool.lease(&key(1)).unwrap());
        assert_eq!(pool.endpoints(), 3);
    }
}
