//! The frames of the protocol: what a client may send ([`ClientFrame`]) and what a server may
//! send ([`ServerFrame`]), each carried as one postcard-encoded value per frame.
//!
//! Streams: a connection has one control stream (`Hello`, `Ping`, `Receipt`, `Typing`; the
//! server sends the user's conversation list, friend, presence, receipt and typing events on
//! it) and one stream per joined conversation (`Join` first, then `Send`, `History`, `Leave`). Over WebTransport these are
//! client-opened bidirectional streams; over WebSocket they are multiplexed by stream id
//! (see [`crate::mux`]), stream id 0 being the control stream.
//!
//! Compatibility: new variants are only ever appended, so older peers keep decoding the ones
//! they know.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// Version a client announces in `Hello`; the server refuses versions it cannot speak and
/// answers `Welcome` with the version the connection speaks.
///
/// Version 2 adds the user's events on the control stream (`Conversations` and the frames
/// after it in [`ServerFrame`]) and the `Receipt` and `Typing` client frames. A server speaks
/// every version from [`MIN_PROTOCOL_VERSION`] up; a version-1 connection never gets a
/// version-2 frame (it could not decode one).
///
/// Version 3 adds moderation: the `Deleted` frame on conversation streams and the `Banned`
/// error code. Older connections get neither (a ban closes them with `Unauthorized`; a deletion
/// reaches them only as the tombstone in later replays and history pages).
///
/// Version 4 changes no frame: a client of version 4 on applies every `Message` its
/// conversation streams receive to its conversation list the way it applies
/// `ConversationActivity` (see there), so the server does not send it `ConversationActivity`
/// for a message it delivers live on one of that connection's streams (half the frames of
/// every delivery). Older connections get `ConversationActivity` for every message.
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest version a server still speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The first version whose connections get the user's events on the control stream.
pub const EVENTS_VERSION: u16 = 2;

/// The first version whose connections get `Deleted` frames and the `Banned` code.
pub const MODERATION_VERSION: u16 = 3;

/// The first version whose connections derive a conversation's activity from the messages
/// their open streams receive (see [`PROTOCOL_VERSION`]).
pub const STREAM_ACTIVITY_VERSION: u16 = 4;

/// A conversation: a room (and, later, a direct-message pair). Ids are assigned by the store.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub u64);

/// A user account id, assigned by the store.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u64);

impl UserId {
    /// No user: never assigned to an account (ids start at 1); the author of hidden markers.
    pub const NOBODY: UserId = UserId(0);
}

/// A resume point: the store's epoch and the last seq the client has of a conversation.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
}

/// A durable chat message as the server delivers it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub conversation: ConversationId,
    /// Position in the conversation, strictly increasing, assigned when made durable.
    pub seq: u64,
    pub author: UserId,
    pub author_name: String,
    /// The id the author's client chose when sending (for matching its own optimistic copy).
    pub client_id: u64,
    /// Server time at which the message became durable, Unix milliseconds.
    pub sent_at_ms: u64,
    /// The text. Empty only for a message whose text is gone (a real message never has an
    /// empty body): see [`ChatMessage::is_deleted`] and [`ChatMessage::is_hidden`].
    pub body: String,
}

impl ChatMessage {
    /// A deleted message as it is delivered from then on: seq, author and time kept (so seqs
    /// stay contiguous), client id and body erased.
    pub fn tombstone(&self) -> ChatMessage {
        ChatMessage {
            conversation: self.conversation,
            seq: self.seq,
            author: self.author,
            author_name: self.author_name.clone(),
            client_id: 0,
            sent_at_ms: self.sent_at_ms,
            body: String::new(),
        }
    }

    /// The marker a user gets in place of a message from someone they block: only the seq and
    /// time, so seqs stay contiguous; author [`UserId::NOBODY`], no name, no body.
    pub fn hidden(&self) -> ChatMessage {
        ChatMessage {
            conversation: self.conversation,
            seq: self.seq,
            author: UserId::NOBODY,
            author_name: String::new(),
            client_id: 0,
            sent_at_ms: self.sent_at_ms,
            body: String::new(),
        }
    }

    /// Whether this is a deleted message's tombstone ("message deleted").
    pub fn is_deleted(&self) -> bool {
        self.body.is_empty() && self.author != UserId::NOBODY
    }

    /// Whether this is the marker of a message from a blocked user (show it collapsed, or not
    /// at all).
    pub fn is_hidden(&self) -> bool {
        self.body.is_empty() && self.author == UserId::NOBODY
    }

    /// The message as a conversation's last message: its body cut to [`PREVIEW_CHARS`]
    /// characters.
    pub fn last_message(&self) -> LastMessage {
        LastMessage {
            seq: self.seq,
            author: self.author,
            author_name: self.author_name.clone(),
            preview: self.body.chars().take(PREVIEW_CHARS).collect(),
            sent_at_ms: self.sent_at_ms,
        }
    }
}

/// Client → server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// First frame on the control stream.
    Hello { version: u16, token: String },
    /// Heartbeat on the control stream; answered by `Pong`.
    Ping { nonce: u64 },
    /// First frame on a conversation stream. With `resume`, the server replays every message
    /// after `resume.seq` (when the epoch matches); without, it sends the most recent page.
    Join {
        conversation: ConversationId,
        resume: Option<Cursor>,
    },
    /// Post a message to the stream's conversation. `client_id` makes resends idempotent: the
    /// server de-duplicates per (author, conversation, client id), so a resend in the same
    /// conversation is acknowledged with the original seq and stores nothing, while the same
    /// id in another conversation is a different message. A body that shows nothing (only
    /// whitespace, control or invisible characters) is rejected as empty.
    Send { client_id: u64, body: String },
    /// Ask for up to `limit` messages with seq < `before_seq`.
    History { before_seq: u64, limit: u16 },
    /// Leave the stream's conversation; the server ends the stream.
    Leave,
    /// Control stream: this user's devices have received (`delivered`) and the user has read
    /// (`read`) the conversation up to these seqs. The server keeps the highest of each
    /// (cursors never move back; values past the head are clamped to it) and tells the other
    /// members. Clients debounce.
    Receipt {
        conversation: ConversationId,
        delivered: u64,
        read: u64,
    },
    /// Control stream: the user is typing in the conversation. Good for [`TYPING_TTL_MS`];
    /// send it again (every few seconds) while typing goes on.
    Typing { conversation: ConversationId },
}

/// How long a `Typing` lasts unless refreshed; the server says "stopped" once it has run out.
pub const TYPING_TTL_MS: u32 = 5_000;

/// What a conversation is, in a summary.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Room,
    /// A direct-message conversation with `peer`.
    Dm {
        peer: UserId,
    },
}

/// Characters of a message's body in a [`LastMessage`].
pub const PREVIEW_CHARS: usize = 100;

/// The last message of a conversation, in a summary or an activity event.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    pub seq: u64,
    pub author: UserId,
    pub author_name: String,
    /// The body's first [`PREVIEW_CHARS`] characters.
    pub preview: String,
    pub sent_at_ms: u64,
}

/// One conversation of the user's list, as the user sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub conversation: ConversationId,
    pub kind: ConversationKind,
    /// The room's name, or for a DM the other member's username.
    pub title: String,
    pub head_seq: u64,
    pub delivered_seq: u64,
    pub read_seq: u64,
    /// For a DM, the other member's cursors (how far the user's messages were delivered and
    /// read); live changes come as `Receipt`.
    pub peer_delivered_seq: Option<u64>,
    pub peer_read_seq: Option<u64>,
    /// Messages after `read_seq` not written by the user.
    pub unread: u64,
    pub last: Option<LastMessage>,
    /// When something last happened (the last message, else the joining), Unix ms.
    pub activity_ms: u64,
}

/// How the user stands with another user, in a `Friend` event.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendStatus {
    /// Nothing (any more): declined, cancelled or unfriended.
    None,
    Friends,
    /// The user asked the other.
    Outgoing,
    /// The other asked the user.
    Incoming,
}

/// Server → client.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Answer to `Hello`: the connection is authenticated.
    Welcome {
        version: u16,
        user: UserId,
        username: String,
        /// The store's epoch; cursors from another epoch are void.
        epoch: u64,
        /// How often the client should ping; the server drops a connection silent for ~3×.
        heartbeat_ms: u32,
    },
    Pong {
        nonce: u64,
    },
    /// Answer to `Join`: every message with seq in `(from_seq, head_seq]` follows, in order,
    /// then live messages.
    Joined {
        conversation: ConversationId,
        epoch: u64,
        head_seq: u64,
        from_seq: u64,
    },
    Message(ChatMessage),
    /// A `Send` is durable. A resend of an already durable `client_id` gets the original seq.
    Sent {
        client_id: u64,
        seq: u64,
        sent_at_ms: u64,
    },
    /// A `Send` was refused. With `RateLimited` it is worth sending again (same client id)
    /// after the wait the reason ends with, "retry in N ms"; with any other code (too long,
    /// empty, not allowed) resending will not help.
    Rejected {
        client_id: u64,
        code: ErrorCode,
        reason: String,
    },
    /// Answer to `History`, messages in ascending seq order.
    HistoryPage {
        before_seq: u64,
        messages: Vec<ChatMessage>,
        /// Whether older messages exist before the first one in `messages`.
        has_more: bool,
    },
    /// A fatal error for the stream (or, on the control stream, the connection), which the
    /// server then closes.
    Error {
        code: ErrorCode,
        reason: String,
    },
    /// The server is going away; reconnect after the hint (jittered by the server).
    GoAway {
        reconnect_after_ms: u32,
        reason: String,
    },
    /// The stream fell too far behind and is being closed; rejoin with a resume point.
    Lagged {
        resume_from: u64,
    },
    /// Control stream, right after `Welcome`: the user's conversations, most recent activity
    /// first, in chunks; `done` on the last chunk. Every later change comes as the events
    /// below, each about something after this snapshot.
    Conversations {
        conversations: Vec<ConversationSummary>,
        done: bool,
    },
    /// Control stream: a conversation was added to the user's list (a room joined, a new DM)
    /// or the user's own cursors in it moved (from this or another device): the whole entry.
    ConversationUpdated(ConversationSummary),
    /// Control stream: the user left the room; it is no longer in their list.
    ConversationRemoved {
        conversation: ConversationId,
    },
    /// Control stream: a message was made durable in one of the user's conversations. Apply it
    /// when `last.seq` is above the summary's `head_seq`: that becomes `last.seq`; the unread
    /// count grows by one unless the user wrote it; and when the user wrote it and their read
    /// cursor was at `last.seq - 1`, both their cursors move to `last.seq` (the server does the
    /// same, see docs). From [`STREAM_ACTIVITY_VERSION`] on, a connection does not get it for
    /// a message delivered live on one of its streams: it applies that `Message` the same way
    /// (a hidden marker excepted: a blocked author's messages are no activity).
    ConversationActivity {
        conversation: ConversationId,
        last: LastMessage,
    },
    /// Control stream: another member's cursors in a conversation of the user's moved.
    Receipt {
        conversation: ConversationId,
        user: UserId,
        delivered: u64,
        read: u64,
    },
    /// Control stream: how the user stands with `user` changed (either side's action).
    Friend {
        user: UserId,
        username: String,
        status: FriendStatus,
        /// The pair's DM, once they have one.
        dm: Option<ConversationId>,
    },
    /// Control stream: a friend's or room co-member's presence. `last_seen_ms`: when the
    /// user's last connection ended (0 while online).
    Presence {
        user: UserId,
        username: String,
        online: bool,
        last_seen_ms: u64,
    },
    /// Control stream: `user` is typing in the conversation (for `TYPING_TTL_MS` unless
    /// refreshed), or stopped (`typing: false`, also sent when it ran out).
    Typing {
        conversation: ConversationId,
        user: UserId,
        username: String,
        typing: bool,
    },
    /// Conversation stream (version 3 on): the message `seq` was deleted; show its tombstone
    /// from now on. Also sent after a resumed `Joined`'s replay for recent deletions at or
    /// before the resume point, so a client that was away learns of them.
    Deleted {
        conversation: ConversationId,
        seq: u64,
    },
}

/// `ServerFrame::Message` of a borrowed message: it serializes exactly as the owned frame does,
/// so a server can encode what it holds without cloning it first.
pub struct MessageFrame<'a>(pub &'a ChatMessage);

/// `ServerFrame::Message`'s index among the frame's variants, as its derived `Serialize`
/// numbers it (variants are only ever appended, so it stays; the test
/// `a_borrowed_message_frame_encodes_as_the_owned_one` checks it).
const MESSAGE_VARIANT: u32 = 3;

impl Serialize for MessageFrame<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_variant("ServerFrame", MESSAGE_VARIANT, "Message", self.0)
    }
}
