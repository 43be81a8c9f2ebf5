//! The UDP socket of a WebTransport client endpoint that several sessions share, bound here
//! with the server's 4 MiB kernel buffers each way and handed to wtransport
//! (`ClientConfigBuilder::with_bind_socket`). A pool's endpoint carries up to
//! `sessions_per_endpoint` sessions (the bench puts a whole room's bots on one), and at 100k
//! deliveries/s Linux's default 208 KiB receive buffer overflows: the datagrams dropped are
//! retransmitted after a loss timeout, which is the fan-out tail. A socket of one session keeps
//! wtransport's own binding and the kernel's default: a client of its own needs no more.
//!
//! The socket is bound as wtransport binds one (any address of the family, a port the kernel
//! picks; IPv6-only for `V6`, dual-stack for `Dual`). The kernel caps the sizes at
//! `net.core.rmem_max` / `wmem_max`; a refused size is an error for the caller, who then binds
//! the usual way (sessions still work, with losses under bursts).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use rustix::net::{AddressFamily, SocketType, bind, socket, sockopt};

use super::wt_endpoints::Family;

/// Bytes asked for each way (as the server's socket).
pub const BUFFER: usize = 4 * 1024 * 1024;

/// A UDP socket of `family` with [`BUFFER`] bytes of kernel buffer each way, bound to any
/// address on a port the kernel picks.
pub fn bind_shared(family: Family) -> io::Result<UdpSocket> {
    let (domain, any, v6only) = match family {
        Family::V4 => (
            AddressFamily::INET,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            None,
        ),
        Family::V6 => (
            AddressFamily::INET6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            Some(true),
        ),
        Family::Dual => (
            AddressFamily::INET6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
            Some(false),
        ),
    };
    let fd = socket(domain, SocketType::DGRAM, None)?;
    if let Some(only) = v6only {
        sockopt::set_ipv6_v6only(&fd, only)?;
    }
    sockopt::set_socket_recv_buffer_size(&fd, BUFFER)?;
    sockopt::set_socket_send_buffer_size(&fd, BUFFER)?;
    bind(&fd, &any)?;
    let socket = UdpSocket::from(fd);
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel allows at most (`None` where there is no such file).
    fn cap(name: &str) -> Option<usize> {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[test]
    fn a_shared_socket_gets_the_largest_buffers_the_kernel_allows_in_its_family() {
        for (family, v4) in [
            (Family::V4, true),
            (Family::V6, false),
            (Family::Dual, false),
        ] {
            let socket = bind_shared(family).unwrap();
            assert_eq!(socket.local_addr().unwrap().is_ipv4(), v4, "{family:?}");
            assert_ne!(socket.local_addr().unwrap().port(), 0);
            // Linux reports twice the size set (its bookkeeping overhead).
            for (name, got) in [
                (
                    "rmem_max",
                    sockopt::socket_recv_buffer_size(&socket).unwrap(),
                ),
                (
                    "wmem_max",
                    sockopt::socket_send_buffer_size(&socket).unwrap(),
                ),
            ] {
                let Some(cap) = cap(name) else { continue };
                assert_eq!(got, 2 * BUFFER.min(cap), "{family:?} {name}");
            }
        }
        assert!(sockopt::ipv6_v6only(bind_shared(Family::V6).unwrap()).unwrap());
        assert!(!sockopt::ipv6_v6only(bind_shared(Family::Dual).unwrap()).unwrap());
    }
}
