//! Connection admission: whether a peer may open one more connection now. Every connection the
//! server holds for a peer — a TCP connection on an HTTP port (plain requests and the WebSocket
//! it may become), an HTTP/3 connection or a WebTransport session — takes a [`Slot`] from one
//! global budget and from its address's budget (counted per [`IpKey`]: IPv6 by /64). A TCP
//! connection is also an open file, so it takes a place in the descriptor budget too (what the
//! open-file limit leaves, [`crate::fd_limit`]); QUIC connections (WebTransport, HTTP/3) share
//! their endpoint's UDP socket and take none, so the open-file limit does not cap them. A
//! realtime connection whose `Hello` has not been accepted yet also holds an unauthenticated
//! place, from a smaller pool with a smaller per-address share;
//! [`RealtimePermit::authenticated`] gives it back, so a signed-in connection counts only
//! against the first two budgets. Slots and permits are guards
//! (dropping them returns what they hold); a refusal says which budget was full and is counted
//! in metrics by transport and reason. Shutdown waits for the global budget to refill.
//!
//! Behind a trusted reverse proxy ([`crate::client_addr`]) the TCP peer is the proxy, which
//! carries many clients: its connections take only a global slot ([`Admission::admit_proxied`]),
//! and a WebSocket upgrade through it, once the client's address is known, takes that
//! address's share instead (an open connection and an unauthenticated place,
//! [`Admission::realtime`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;
use crate::http::error::ApiError;
use crate::ip_key::IpKey;

/// The budgets, from [`Limits`].
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub total: usize,
    /// TCP connections at once (each one an open file).
    pub descriptors: usize,
    pub per_ip: usize,
    pub unauthenticated: usize,
    pub unauthenticated_per_ip: usize,
}

impl From<&Limits> for Budgets {
    fn from(l: &Limits) -> Self {
        Budgets {
            total: l.max_connections,
            descriptors: Semaphore::MAX_PERMITS,
            per_ip: l.max_connections_per_ip,
            unauthenticated: l.max_unauthenticated,
            unauthenticated_per_ip: l.max_unauthenticated_per_ip,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server is at its connection limit; try again shortly")]
    ServerFull,
    #[error("too many connections from your address; close some and try again")]
    AddressFull,
    #[error("too many connections are signing in right now; try again shortly")]
    UnauthenticatedFull,
    #[error("too many connections from your address are signing in; try again shortly")]
    UnauthenticatedAddressFull,
}

impl Refusal {
    /// The metrics label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::AddressFull => "address_full",
            Refusal::UnauthenticatedFull => "unauthenticated_full",
            Refusal::UnauthenticatedAddressFull => "unauthenticated_address_full",
        }
    }

    /// 503 when the server as a whole is full, 429 when the peer's address is over its share.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::ServerFull | Refusal::UnauthenticatedFull => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::AddressFull | Refusal::UnauthenticatedAddressFull => {
                StatusCode::TOO_MANY_REQUESTS
            }
        }
    }

    /// The stable error code of the JSON body.
    pub fn code(self) -> &'static str {
        match self.status() {
            StatusCode::TOO_MANY_REQUESTS => "too_many_connections",
            _ => "overloaded",
        }
    }

    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::UnauthenticatedFull | Refusal::UnauthenticatedAddressFull => {
                Duration::from_secs(2)
            }
            Refusal::ServerFull => Duration::from_secs(5),
            Refusal::AddressFull => Duration::from_secs(10),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError {
            retry_after: Some(r.retry_after().as_secs()),
            ..ApiError::new(r.status(), r.code(), r.to_string())
        }
    }
}

/// How often [`Admission::drained`] looks whether every slot is back.
const DRAIN_POLL: Duration = Duration::from_millis(10);

pub struct Admission {
    budgets: Budgets,
    total: Arc<Semaphore>,
    descriptors: Arc<Semaphore>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    unauthenticated: usize,
    /// Only addresses holding something: bounded by the open connections.
    per_ip: HashMap<IpKey, PerIp>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    unauthenticated: usize,
}

impl Admission {
    pub fn new(budgets: Budgets) -> Arc<Admission> {
        Arc::new(Admission {
            budgets,
            total: Arc::new(Semaphore::new(budgets.total)),
            descriptors: Arc::new(Semaphore::new(
                budgets.descriptors.min(Semaphore::MAX_PERMITS),
            )),
            counts: Mutex::new(Counts::default()),
        })
    }

    #[cfg(test)]
    /// Connections open now.
    fn open(&self) -> usize {
        self.budgets.total - self.total.available_permits()
    }

    /// Take a slot for a new TCP connection from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, transport: &'static str) -> Result<Slot, Refusal> {
        self.slot(ip, transport, Descriptor::Needed)
    }

    /// Take a slot for a QUIC connection from `ip` that is not a realtime session (HTTP/3): no
    /// descriptor of its own, like WebTransport, and no unauthenticated place.
    pub fn admit_shared(
        self: &Arc<Self>,
        ip: IpAddr,
        transport: &'static str,
    ) -> Result<Slot, Refusal> {
        self.slot(ip, transport, Descriptor::Shared)
    }

    /// Take a slot for a connection from `ip`, with a place in the descriptor budget if it
    /// needs an open file of its own.
    fn slot(
        self: &Arc<Self>,
        ip: IpAddr,
        transport: &'static str,
        descriptor: Descriptor,
    ) -> Result<Slot, Refusal> {
        let refused = |r: Refusal| {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED,
                "transport" => transport, "reason" => r.reason())
            .increment(1);
            r
        };
        let descriptor = match descriptor {
            Descriptor::Needed => match self.descriptors.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => return Err(refused(Refusal::ServerFull)),
            },
            Descriptor::Shared => None,
        };
        let Ok(permit) = self.total.clone().try_acquire_owned() else {
            return Err(refused(Refusal::ServerFull));
        };
        let key = IpKey::of(ip);
        let mut counts = self.lock();
        let entry = counts.per_ip.entry(key).or_default();
        if entry.open >= self.budgets.per_ip {
            if entry.open == 0 {
                counts.per_ip.remove(&key);
            }
            return Err(refused(Refusal::AddressFull));
        }
        entry.open += 1;
        Ok(Slot(Arc::new(SlotInner {
            admission: self.clone(),
            key: Some(key),
            _total: permit,
            _descriptor: descriptor,
        })))
    }

    /// Take a slot for a new connection from a trusted proxy: the global budget only (the
    /// proxy's clients are counted by address when they are known, see [`Admission::realtime`]).
    pub fn admit_proxied(self: &Arc<Self>, transport: &'static str) -> Result<Slot, Refusal> {
        let permits = self
            .descriptors
            .clone()
            .try_acquire_owned()
            .and_then(|descriptor| Ok((descriptor, self.total.clone().try_acquire_owned()?)));
        let Ok((descriptor, permit)) = permits else {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED,
                "transport" => transport, "reason" => Refusal::ServerFull.reason())
            .increment(1);
            return Err(Refusal::ServerFull);
        };
        Ok(Slot(Arc::new(SlotInner {
            admission: self.clone(),
            key: None,
            _total: permit,
            _descriptor: Some(descriptor),
        })))
    }

    /// Take an unauthenticated place for a realtime connection of `client` on `slot` (the
    /// slot's own address, unless it is a trusted proxy's: then `client` also takes one of
    /// its address's open connections).
    pub fn realtime(
        self: &Arc<Self>,
        slot: &Slot,
        client: IpAddr,
        transport: &'static str,
    ) -> Result<RealtimePermit, Refusal> {
        let (key, open) = match slot.0.key {
            Some(key) => (key, 0),
            None => (IpKey::of(client), 1),
        };
        let mut counts = self.lock();
        let refusal = if counts.unauthenticated >= self.budgets.unauthenticated {
            Some(Refusal::UnauthenticatedFull)
        } else {
            let entry = counts.per_ip.get(&key);
            let held = |f: fn(&PerIp) -> usize| entry.map_or(0, f);
            if held(|e| e.open) + open > self.budgets.per_ip {
                Some(Refusal::AddressFull)
            } else {
                (held(|e| e.unauthenticated) >= self.budgets.unauthenticated_per_ip)
                    .then_some(Refusal::UnauthenticatedAddressFull)
            }
        };
        if let Some(r) = refusal {
            metrics::counter!(crate::metrics::CONNECTIONS_REFUSED,
                "transport" => transport, "reason" => r.reason())
            .increment(1);
            return Err(r);
        }
        counts.unauthenticated += 1;
        let entry = counts.per_ip.entry(key).or_default();
        entry.unauthenticated += 1;
        entry.open += open;
        Ok(RealtimePermit(Arc::new(RealtimeInner {
            slot: slot.clone(),
            key,
            open,
            unauthenticated: AtomicBool::new(true),
        })))
    }

    /// A slot and an unauthenticated place for a WebTransport session (no descriptor of its
    /// own: the endpoint's UDP socket carries them all).
    pub fn admit_realtime(
        self: &Arc<Self>,
        ip: IpAddr,
        transport: &'static str,
    ) -> Result<RealtimePermit, Refusal> {
        let slot = self.slot(ip, transport, Descriptor::Shared)?;
        self.realtime(&slot, ip, transport)
    }

    /// Completes when every slot is back, or after `max`; false if some were still out.
    pub async fn drained(&self, max: Duration) -> bool {
        // Polled, not `acquire_many`: the semaphore is fair, so a waiting acquire would refuse
        // every new slot, and during the drain the HTTP port still answers (`/readyz` says
        // 503 `draining`, see `http::listener`).
        let all = self.budgets.total.min(Semaphore::MAX_PERMITS);
        tokio::time::timeout(max, async {
            while self.total.available_permits() < all {
                tokio::time::sleep(DRAIN_POLL).await;
            }
        })
        .await
        .is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding the lock.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn release(&self, key: IpKey, open: usize, unauthenticated: usize) {
        let mut counts = self.lock();
        counts.unauthenticated -= unauthenticated;
        if let Some(entry) = counts.per_ip.get_mut(&key) {
            entry.open -= open;
            entry.unauthenticated -= unauthenticated;
            if entry.open == 0 && entry.unauthenticated == 0 {
                counts.per_ip.remove(&key);
            }
        }
    }
}

/// One admitted connection; cloned into whatever keeps the connection alive (an upgraded
/// WebSocket keeps its TCP connection's slot). The last clone gives the slot back.
#[derive(Clone)]
pub struct Slot(Arc<SlotInner>);

struct SlotInner {
    admission: Arc<Admission>,
    /// `None` for a trusted proxy's connection, which no address's budget counts.
    key: Option<IpKey>,
    _total: OwnedSemaphorePermit,
    /// A TCP connection's place in the descriptor budget.
    _descriptor: Option<OwnedSemaphorePermit>,
}

/// Whether a connection needs an open file of its own.
#[derive(Clone, Copy)]
enum Descriptor {
    /// A TCP connection.
    Needed,
    /// A WebTransport session on the endpoint's socket.
    Shared,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.admission.release(key, 1, 0);
        }
    }
}

/// A realtime connection's admission: its slot, and its unauthenticated place until `Hello`
/// is accepted. Clones share one place.
#[derive(Clone)]
pub struct RealtimePermit(Arc<RealtimeInner>);

struct RealtimeInner {
    slot: Slot,
    /// The client's address, whose budgets the places below are taken from.
    key: IpKey,
    /// Open connections this permit holds of `key`'s: 1 through a trusted proxy (the slot
    /// counts for no address), else 0 (the slot counts).
    open: usize,
    unauthenticated: AtomicBool,
}

impl RealtimePermit {
    /// `Hello` was accepted: leave the unauthenticated pool (idempotent).
    pub fn authenticated(&self) {
        if self.0.unauthenticated.swap(false, Ordering::AcqRel) {
            self.0.slot.0.admission.release(self.0.key, 0, 1);
        }
    }
}

impl Drop for RealtimeInner {
    fn drop(&mut self) {
        let unauthenticated = usize::from(*self.unauthenticated.get_mut());
        if self.open + unauthenticated > 0 {
            self.slot
                .0
                .admission
                .release(self.key, self.open, unauthenticated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission() -> Arc<Admission> {
        Admission::new(Budgets {
            total: 4,
            descriptors: 4,
            per_ip: 3,
            unauthenticated: 2,
            unauthenticated_per_ip: 1,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_global_budgets() {
        let a = admission();
        let held: Vec<Slot> = (0..3)
            .map(|_| a.admit(ip("10.0.0.1"), "t").unwrap())
            .collect();
        assert_eq!(
            a.admit(ip("10.0.0.1"), "t").err(),
            Some(Refusal::AddressFull)
        );
        let other = a.admit(ip("10.0.0.2"), "t").unwrap();
        assert_eq!(
            a.admit(ip("10.0.0.3"), "t").err(),
            Some(Refusal::ServerFull)
        );
        assert_eq!(a.open(), 4);
        drop(held);
        drop(other);
        assert_eq!(a.open(), 0);
        assert!(
            a.lock().per_ip.is_empty(),
            "no entry outlives its connections"
        );
    }

    #[test]
    fn the_descriptor_budget_caps_tcp_connections_not_webtransport_sessions() {
        let a = Admission::new(Budgets {
            total: 4,
            descriptors: 2,
            per_ip: 4,
            unauthenticated: 4,
            unauthenticated_per_ip: 4,
        });
        let tcp: Vec<Slot> = (1..=2)
            .map(|i| a.admit(ip(&format!("10.0.0.{i}")), "t").unwrap())
            .collect();
        assert_eq!(
            a.admit(ip("10.0.0.3"), "t").err(),
            Some(Refusal::ServerFull)
        );
        assert_eq!(a.admit_proxied("t").err(), Some(Refusal::ServerFull));
        let sessions: Vec<RealtimePermit> = (4..=5)
            .map(|i| a.admit_realtime(ip(&format!("10.0.0.{i}")), "t").unwrap())
            .collect();
        assert_eq!(a.open(), 4);
        assert_eq!(
            a.admit_realtime(ip("10.0.0.6"), "t").err(),
            Some(Refusal::ServerFull),
            "sessions still count against the total"
        );
        drop(sessions);
        assert_eq!(
            a.admit(ip("10.0.0.3"), "t").err(),
            Some(Refusal::ServerFull),
            "no descriptor came back"
        );
        drop(tcp);
        assert!(a.admit(ip("10.0.0.3"), "t").is_ok());
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a = admission();
        let _held: Vec<Slot> = (1..=3)
            .map(|i| a.admit(ip(&format!("2001:db8::{i}")), "t").unwrap())
            .collect();
        assert_eq!(
            a.admit(ip("2001:db8::ffff"), "t").err(),
            Some(Refusal::AddressFull)
        );
        assert!(a.admit(ip("2001:db8:0:1::1"), "t").is_ok());
    }

    #[test]
    fn unauthenticated_places_move_out_on_hello() {
        let a = admission();
        let s1 = a.admit(ip("10.0.0.1"), "t").unwrap();
        let s2 = a.admit(ip("10.0.0.1"), "t").unwrap();
        let p1 = a.realtime(&s1, ip("10.0.0.1"), "t").unwrap();
        assert_eq!(
            a.realtime(&s2, ip("10.0.0.1"), "t").err(),
            Some(Refusal::UnauthenticatedAddressFull)
        );
        p1.clone().authenticated();
        p1.authenticated();
        let p2 = a.realtime(&s2, ip("10.0.0.1"), "t").unwrap();
        let s3 = a.admit(ip("10.0.0.2"), "t").unwrap();
        let s4 = a.admit(ip("10.0.0.3"), "t").unwrap();
        let _p3 = a.realtime(&s3, ip("10.0.0.2"), "t").unwrap();
        assert_eq!(
            a.realtime(&s4, ip("10.0.0.3"), "t").err(),
            Some(Refusal::UnauthenticatedFull)
        );
        drop(p2);
        assert!(a.realtime(&s4, ip("10.0.0.3"), "t").is_ok());
    }

    #[test]
    fn a_trusted_proxy_counts_globally_and_its_clients_by_their_own_address() {
        let a = admission();
        // Four connections from the proxy: more than one address's share, within the total.
        let proxied: Vec<Slot> = (0..4).map(|_| a.admit_proxied("t").unwrap()).collect();
        assert_eq!(a.admit_proxied("t").err(), Some(Refusal::ServerFull));
        assert!(
            a.lock().per_ip.is_empty(),
            "the proxy counts for no address"
        );
        // Its clients take their own address's places: one signing in at once per address...
        let first = a.realtime(&proxied[0], ip("2001:db8::1"), "t").unwrap();
        assert_eq!(
            a.realtime(&proxied[1], ip("2001:db8::2"), "t").err(),
            Some(Refusal::UnauthenticatedAddressFull),
            "the same /64"
        );
        first.authenticated();
        // ...and three open per address.
        let mut permits = vec![first];
        for (slot, client) in proxied[1..3].iter().zip(["2001:db8::2", "2001:db8::3"]) {
            let permit = a.realtime(slot, ip(client), "t").unwrap();
            permit.authenticated();
            permits.push(permit);
        }
        assert_eq!(
            a.realtime(&proxied[3], ip("2001:db8::4"), "t").err(),
            Some(Refusal::AddressFull)
        );
        permits.push(a.realtime(&proxied[3], ip("192.0.2.1"), "t").unwrap());
        drop(proxied);
        assert_eq!(a.open(), 4, "the permits keep their slots");
        drop(permits);
        assert_eq!(a.open(), 0);
        assert!(a.lock().per_ip.is_empty(), "everything given back");
    }

    #[tokio::test]
    async fn drained_waits_for_every_slot() {
        let a = admission();
        let slot = a.admit(ip("10.0.0.1"), "t").unwrap();
        assert!(!a.drained(Duration::from_millis(20)).await);
        drop(slot);
        assert!(a.drained(Duration::from_millis(20)).await);
    }
}
