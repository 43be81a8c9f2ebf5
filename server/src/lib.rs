//! The Quibble chat server: realtime chat over WebTransport and WebSocket, a JSON HTTP API,
//! and an embedded redb store.

pub mod access;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod build_info;
pub mod chat;
pub mod client_addr;
pub mod config;
pub mod enforce;
pub mod fd_limit;
pub mod fleet;
pub mod handshake;
pub mod http;
pub mod ip_key;
pub mod logging;
pub mod metrics;
pub mod retention;
pub mod server;
pub mod state;
pub mod store;
pub mod text;
pub mod tls;
pub mod transport;
