//! The Quibble browser client: `protocol::session` driven over the browser's WebTransport, with
//! a WebSocket raced a moment later as the fallback, exported to the page with wasm-bindgen
//! (`Client` for the realtime session, free functions for the REST API).
//!
//! The session decides everything (framing, resume points, resends, heartbeats, backoff); this
//! crate only moves bytes, time and randomness into it and hands its events to JavaScript.
//! The browser-facing modules exist only on `wasm32`; the pure bookkeeping they share
//! ([`streams`], [`cert_hash`]) builds and is tested on the host too.

pub mod cert_hash;
pub mod streams;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod ws;
#[cfg(target_arch = "wasm32")]
mod wt;
