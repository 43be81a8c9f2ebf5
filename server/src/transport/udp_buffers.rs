//! The kernel buffers of the WebTransport UDP socket. Every session shares that one socket, so
//! a burst of handshakes (each client's Initial packets padded to 1,200 bytes, the server's
//! answers carrying the certificate) overflowed Linux's default 208 KiB receive buffer: 2,457
//! datagrams dropped while 5,000 sessions were opened 64 at a time, each loss a handshake
//! stalled for a retransmission timeout (the ramp's p99.9 of ~1 s). The socket asks for
//! [`BUFFER`] each way; the kernel caps that at `net.core.rmem_max` / `wmem_max`, and a refusal
//! is logged, not fatal (the defaults still work, only with losses under bursts).

use std::net::UdpSocket;

use rustix::net::sockopt;

/// Bytes asked for each way.
pub const BUFFER: usize = 4 * 1024 * 1024;

/// Ask for [`BUFFER`] bytes of receive and send buffer on `socket`.
pub fn enlarge(socket: &UdpSocket) {
    if let Err(e) = sockopt::set_socket_recv_buffer_size(socket, BUFFER) {
        tracing::warn!("cannot enlarge the UDP receive buffer: {e}");
    }
    if let Err(e) = sockopt::set_socket_send_buffer_size(socket, BUFFER) {
        tracing::warn!("cannot enlarge the UDP send buffer: {e}");
    }
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
    fn the_socket_gets_the_largest_buffers_the_kernel_allows() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = sockopt::socket_recv_buffer_size(&socket).unwrap();
        enlarge(&socket);
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
    }
}
