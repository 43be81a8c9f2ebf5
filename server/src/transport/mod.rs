//! Transports: each adapts its sockets to the engine's logical streams
//! ([`crate::chat::stream`]) and closes connections the way the engine asks.

pub mod quic_keys;
pub mod ws;
pub mod wt;
