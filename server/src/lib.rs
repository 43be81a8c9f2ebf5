//! The Quibble chat server: realtime chat over WebTransport and WebSocket, an HTTP API, and an
//! embedded redb store.

pub mod auth;
pub mod store;
