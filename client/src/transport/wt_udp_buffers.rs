//! The kernel buffers of a WebTransport client endpoint's UDP socket, raised to the server's
//! 4 MiB each way. A pool's endpoint carries up to `sessions_per_endpoint` sessions (the bench
//! puts a whole room's bots on one), and at 100k deliveries/s Linux's default 208 KiB receive
//! buffer overflows: the datagrams dropped are retransmitted after a loss timeout, which is
//! the fan-out tail (a socket of one session keeps the default). wtransport 0.7's client builder cannot take a socket bound beforehand
//! (its server builder can), so the endpoint's own socket is found among this process' open
//! files by its local address, through a duplicate of it (`pidfd_getfd`, no unsafe code): the
//! options set on the duplicate are the socket's. The kernel caps the sizes at
//! `net.core.rmem_max` / `wmem_max`; a failure leaves the defaults (sessions still work, with
//! losses under bursts), so it is reported to the caller, who logs it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};

use rustix::net::{SocketAddrAny, SocketType, getsockname, sockopt};
use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

/// Bytes asked for each way (as the server's socket).
pub const BUFFER: usize = 4 * 1024 * 1024;

/// Ask for [`BUFFER`] bytes each way on the UDP socket bound to `local` in this process.
pub fn enlarge(local: SocketAddr) -> io::Result<()> {
    let socket = find(local)?;
    sockopt::set_socket_recv_buffer_size(&socket, BUFFER)?;
    sockopt::set_socket_send_buffer_size(&socket, BUFFER)?;
    Ok(())
}

/// A duplicate of this process' UDP socket bound to `local`.
pub(super) fn find(local: SocketAddr) -> io::Result<OwnedFd> {
    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    let mut fds: Vec<(RawFd, std::path::PathBuf)> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let fd = entry.file_name().to_str()?.parse::<RawFd>().ok()?;
            Some((fd, entry.path()))
        })
        .collect();
    // Highest first: a socket just opened while the others stay open usually has the highest
    // number, so the search is short.
    fds.sort_unstable_by_key(|&(fd, _)| std::cmp::Reverse(fd));
    for (fd, path) in fds {
        // Closed since the listing, or not a socket: not ours.
        let is_socket = std::fs::read_link(&path)
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let Ok(socket) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else {
            continue;
        };
        let bound = getsockname(&socket)
            .ok()
            .and_then(|addr: SocketAddrAny| SocketAddr::try_from(addr).ok());
        if bound == Some(local) && sockopt::socket_type(&socket)? == SocketType::DGRAM {
            return Ok(socket);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no UDP socket bound to {local} in this process"),
    ))
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
    fn the_socket_bound_there_gets_the_largest_buffers_the_kernel_allows() {
        let other = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = sockopt::socket_recv_buffer_size(&other).unwrap();
        enlarge(socket.local_addr().unwrap()).unwrap();
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
            assert_eq!(got, 2 * BUFFER.min(cap), "{name}: {got} (was {before})");
        }
        // The other socket is left alone.
        assert_eq!(sockopt::socket_recv_buffer_size(&other).unwrap(), before);
        // Nothing bound there: an error, not some other socket.
        let gone = other.local_addr().unwrap();
        drop(other);
        assert!(enlarge(gone).is_err());
    }
}
