//! The client session state machine (sans-IO, in the manner of `quinn-proto`): it decides what
//! to send, which cursor to resume each conversation from, which messages are new, when to
//! ping, when the connection is dead and when to reconnect. Drivers (`quibble-client`,
//! `quibble-client-wasm`) only move bytes and time into it and carry out what it asks.
//!
//! Driving loop, for a driver:
//! 1. When [`Session::poll_action`] yields [`Action::Connect`], open a transport; when it is
//!    up call [`Session::on_connected`]; if it fails or later drops call
//!    [`Session::on_disconnected`].
//! 2. Send every [`Session::poll_transmit`] on its logical stream, opening the stream for a
//!    conversation the first time one is addressed to it (WebTransport: a new bidirectional
//!    stream; WebSocket: a new stream id). Feed every received frame to
//!    [`Session::on_frame`]; when the server ends a conversation stream call
//!    [`Session::on_stream_closed`].
//! 3. Call [`Session::handle_timeout`] when [`Session::poll_timeout`] comes due.
//! 4. Hand [`Session::poll_event`] results to the application.

use crate::wire::{ClientFrame, ConversationId, Cursor, ServerFrame};

mod backoff;
mod conversation;
mod events;
mod outbox;

pub use events::{Action, Event, State, StreamKey, Transmit};
pub use outbox::PendingSend;

/// Settings a driver chooses when creating a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Bearer token from the REST login.
    pub token: String,
    /// First reconnect delay ceiling; doubles per failed attempt (full jitter).
    pub backoff_base_ms: u64,
    /// Largest reconnect delay.
    pub backoff_cap_ms: u64,
    /// Ping interval until the server's `Welcome` says otherwise.
    pub heartbeat_ms: u64,
    /// A random number from the driver; client message ids start from it so that ids from
    /// different runs of a client do not collide.
    pub client_id_seed: u64,
    /// Messages the session keeps out of order while it fills a gap, at most.
    pub max_gap_buffer: usize,
}

impl SessionConfig {
    pub fn new(token: impl Into<String>, client_id_seed: u64) -> Self {
        SessionConfig {
            token: token.into(),
            backoff_base_ms: 250,
            backoff_cap_ms: 30_000,
            heartbeat_ms: 10_000,
            client_id_seed,
            max_gap_buffer: 1024,
        }
    }
}

/// The session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    // private state: implementation detail
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        todo!()
    }

    /// Current connection state.
    pub fn state(&self) -> State {
        todo!()
    }

    // ---- driver notifications ----

    /// The transport is up: queues `Hello` on the control stream.
    pub fn on_connected(&mut self, now_ms: u64) {
        todo!()
    }

    /// The transport failed or dropped. `random` is a fresh random number for backoff jitter.
    /// Schedules the next [`Action::Connect`] (unless the failure is final).
    pub fn on_disconnected(&mut self, now_ms: u64, random: u64) {
        todo!()
    }

    /// A frame arrived on a logical stream.
    pub fn on_frame(&mut self, stream: StreamKey, frame: ServerFrame, now_ms: u64) {
        todo!()
    }

    /// The server ended a conversation stream (after `Lagged`, an `Error`, or our `Leave`).
    /// If the conversation is still wanted it is rejoined from its cursor.
    pub fn on_stream_closed(&mut self, stream: StreamKey, now_ms: u64) {
        todo!()
    }

    /// Time has passed: send pings, declare a silent connection dead, reconnect after backoff.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        todo!()
    }

    /// The next time (ms) at which [`Session::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        todo!()
    }

    /// Next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Next thing the driver must do with the transport.
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }

    // ---- application commands ----

    /// Join a conversation (now if connected, else on connect). Joining twice is a no-op.
    pub fn join(&mut self, conversation: ConversationId) {
        todo!()
    }

    /// Leave a conversation: sends `Leave` and forgets its cursor.
    pub fn leave(&mut self, conversation: ConversationId) {
        todo!()
    }

    /// Queue a message; returns its client id. It is sent when the conversation is joined and
    /// resent after every reconnect until the server acknowledges it.
    pub fn send(&mut self, conversation: ConversationId, body: String) -> u64 {
        todo!()
    }

    /// Ask for up to `limit` messages older than the oldest one this session has seen.
    /// Returns false when there is nothing older (or the conversation is not joined).
    pub fn load_older(&mut self, conversation: ConversationId, limit: u16) -> bool {
        todo!()
    }

    /// The resume point of a conversation (store epoch and last contiguous seq).
    pub fn cursor(&self, conversation: ConversationId) -> Option<Cursor> {
        todo!()
    }

    /// Messages sent but not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PendingSend> + '_ {
        std::iter::empty()
    }
}
