//! What the session hands its driver: frames to send, actions on the transport, events for
//! the application, and its connection state.

use crate::error_code::ErrorCode;
use crate::wire::{
    ChatMessage, ClientFrame, ConversationId, ConversationSummary, FriendStatus, UserId,
};

/// A logical stream: the control stream or one conversation's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKey {
    Control,
    Conversation(ConversationId),
}

/// How the transport a connection runs on orders its streams, as told to
/// [`super::Session::on_connected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    /// Every stream's frames share one byte stream (WebSocket): the server reads the client's
    /// frames in the order they were written, so `Join` can follow `Hello` at once.
    Shared,
    /// Each stream is its own QUIC stream (WebTransport): the server may accept a
    /// conversation's stream before the control stream, so nothing else is opened before
    /// `Welcome`.
    PerStream,
}

/// A frame to send on a logical stream (opening the stream first if it is not open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub stream: StreamKey,
    pub frame: ClientFrame,
}

/// Something the driver must do with the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a new transport connection (first connect, or reconnect after backoff).
    Connect,
    /// Close the transport: it is dead (missed heartbeats) or the server refused us. The
    /// driver then calls [`super::Session::on_disconnected`].
    Disconnect { reason: String },
}

/// The connection state, for a connection indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the driver to connect (right after creation, or a reconnect is due).
    Connecting,
    /// Transport up, `Hello` sent, no `Welcome` yet.
    Handshaking,
    /// Welcomed: chatting.
    Ready,
    /// Disconnected; a reconnect is scheduled at `retry_at_ms`.
    Reconnecting { retry_at_ms: u64, attempt: u32 },
    /// The server refused us for good (bad token, unsupported version, banned); no reconnects.
    Failed(ErrorCode),
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `Welcome` received.
    Connected { user: UserId, username: String },
    /// A conversation stream is live; `head_seq` is the newest seq at join time.
    Joined {
        conversation: ConversationId,
        head_seq: u64,
    },
    /// The store's epoch changed: everything cached for this conversation is void.
    Reset { conversation: ConversationId },
    /// A new message, in seq order, each seq once (replayed or live).
    Message(ChatMessage),
    /// An older page asked for with `load_older`, ascending.
    History {
        conversation: ConversationId,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    /// One of our sends is durable.
    Sent {
        conversation: ConversationId,
        client_id: u64,
        seq: u64,
        sent_at_ms: u64,
    },
    /// One of our sends was refused with `RateLimited`: it stays pending and the session
    /// sends it again in `retry_in_ms` (its turn kept), as often as needed.
    Throttled {
        conversation: ConversationId,
        client_id: u64,
        retry_in_ms: u64,
    },
    /// One of our sends was refused for good (any code but `RateLimited`) and dropped from
    /// the outbox.
    Rejected {
        conversation: ConversationId,
        client_id: u64,
        code: ErrorCode,
        reason: String,
    },
    /// The server reported a fatal error on a stream.
    Error {
        stream: StreamKey,
        code: ErrorCode,
        reason: String,
    },
    /// The server is going away; the session reconnects after the hint.
    GoAway { reconnect_after_ms: u64 },
    /// The connection dropped; the session will reconnect.
    Disconnected,
    /// The user's whole conversation list, most recent activity first: after every `Welcome`
    /// (so after a reconnect it replaces whatever the application shows).
    ConversationList(Vec<ConversationSummary>),
    /// One entry of the list as it is now: added (a room joined, a new DM), the user's
    /// cursors moved, or a new message (head, last message, unread count).
    ConversationUpdated(ConversationSummary),
    /// The user left the room: it is no longer in the list.
    ConversationRemoved { conversation: ConversationId },
    /// Another member's cursors moved ("delivered", "seen").
    Receipt {
        conversation: ConversationId,
        user: UserId,
        delivered: u64,
        read: u64,
    },
    /// How the user stands with `user` changed (requests, accept, decline, unfriend).
    Friend {
        user: UserId,
        username: String,
        status: FriendStatus,
        /// The pair's DM, once they have one.
        dm: Option<ConversationId>,
    },
    /// A friend's or room co-member's presence (`last_seen_ms` is 0 while online).
    Presence {
        user: UserId,
        username: String,
        online: bool,
        last_seen_ms: u64,
    },
    /// `user` started (`typing`) or stopped typing in the conversation; the server says
    /// when it stopped or ran out. After `Disconnected` every indicator is void.
    Typing {
        conversation: ConversationId,
        user: UserId,
        username: String,
        typing: bool,
    },
    /// The message `seq`, already delivered as a [`Event::Message`] (or in a history page), was
    /// deleted: show it as "message deleted" from now on (its tombstone keeps seq, author and
    /// time). Messages delivered later come as tombstones themselves
    /// ([`ChatMessage::is_deleted`]).
    Deleted {
        conversation: ConversationId,
        seq: u64,
    },
}
