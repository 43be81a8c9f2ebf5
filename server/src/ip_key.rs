//! The key every per-address limit counts under: an IPv4 address as it is, an IPv6 address by
//! its /64 prefix (one subscriber usually holds a whole /64, so counting single IPv6 addresses
//! would let one peer multiply its quota by 2^64), and an IPv4-mapped IPv6 address as the IPv4
//! address it maps.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A peer's address as per-address limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Prefix64(u64),
}

impl IpKey {
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4),
                None => IpKey::V6Prefix64((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        IpKey::of(ip)
    }
}

impl fmt::Display for IpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpKey::V4(v4) => write!(f, "{v4}"),
            IpKey::V6Prefix64(prefix) => {
                write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IpKey {
        IpKey::of(s.parse().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("192.0.2.7").to_string(), "192.0.2.7");
    }
}
