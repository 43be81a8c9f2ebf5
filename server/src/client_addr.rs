//! Who the peer is: the one answer every per-address rule uses (login and sign-up limits, IP
//! bans, the connection registry). It is the socket's address, except when the TCP peer is one
//! of the configured trusted proxies (`trusted_proxies`, CIDRs): then it is the right-most
//! `X-Forwarded-For` entry that is not itself a trusted proxy. Entries to the left of that one
//! were written by the client and are never believed; a peer that is not trusted cannot make
//! the server read the header at all. WebTransport has no proxy in front of it (QUIC goes to the
//! server directly), so its address is always the UDP peer's.
//!
//! Addresses are canonical: an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4
//! peer) is the IPv4 address, so rules and limits written for IPv4 apply to it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The header a reverse proxy appends the address it received a request from to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Every header line, right to left, and each line's entries right to left: the order
        // in which the proxies appended them.
        let mut nearest = peer;
        for line in headers.get_all(FORWARDED_FOR).iter().rev() {
            let Ok(line) = line.to_str() else {
                return nearest;
            };
            for entry in line.rsplit(',') {
                let Some(ip) = parse_entry(entry) else {
                    // Garbage where a trusted proxy should have written an address: the
                    // nearest address known for sure is the hop that handed it over.
                    return nearest;
                };
                if !self.trusts(ip) {
                    return ip;
                }
                nearest = ip;
            }
        }
        // Only trusted proxies all the way: the farthest one is the client.
        nearest
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client's address, as an extractor: from the connection's peer (`ConnectInfo`, set by
/// the HTTP listener) and, behind a trusted proxy, `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            tracing::error!("a request without its connection's address");
            return Err(ApiError::internal());
        };
        Ok(ClientIp(
            state.trusted_proxies.client(peer.ip(), &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(FORWARDED_FOR, HeaderValue::from_str(line).unwrap());
        }
        h
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let none = TrustedProxies::default();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(none.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        let trusted = proxies(&["10.0.0.0/8"]);
        assert_eq!(trusted.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(trusted.client(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // A trusted proxy that sent no header: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn the_right_most_untrusted_entry_wins_over_what_the_client_wrote() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client claims 192.0.2.66; the edge proxy appended the real 203.0.113.9, then an
        // inner proxy (10.0.0.2) appended the edge proxy's address.
        let h = headers(&["192.0.2.66, 203.0.113.9", "10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers(&["192.0.2.66,2001:db8::7 , 2001:db8:ffff::1"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        // Ports are tolerated.
        let h = headers(&["[2001:db8::8]:4711, 203.0.113.7:80"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("203.0.113.7"));
        // Only proxies: the farthest.
        let h = headers(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_at_the_last_hop_known_for_sure() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, unknown"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&["203.0.113.9, nonsense, 10.0.0.2"]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let h = headers(&["::ffff:192.0.2.5"]);
        assert_eq!(trusted.client(ip("::ffff:127.0.0.1"), &h), ip("192.0.2.5"));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("::ffff:198.51.100.4"), &h),
            ip("198.51.100.4")
        );
    }
}
