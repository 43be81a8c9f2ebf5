//! Transports: each adapts its sockets to the engine's logical streams
//! ([`crate::chat::stream`]) and closes connections the way the engine asks.

pub mod quic_keys;
pub mod quic_tls;
pub mod quic_transport;
pub mod udp_buffers;
pub mod ws;
pub mod wt;
