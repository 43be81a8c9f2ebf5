//! Quibble's wire protocol: the frame types both sides exchange, the length-prefixed frame
//! codec, the WebSocket multiplexing envelope, and the sans-IO client session state machine.
//!
//! Nothing here does I/O or reads a clock: transports move bytes in and out, and callers pass
//! the current time in milliseconds where a decision depends on it.

pub mod codec;
pub mod error_code;
pub mod limits;
pub mod mux;
pub mod session;
pub mod wire;

pub use codec::{CodecError, Decoder, encode};
pub use error_code::ErrorCode;
pub use wire::{
    ChatMessage, ClientFrame, ConversationId, ConversationKind, ConversationSummary, Cursor,
    EVENTS_VERSION, FriendStatus, LastMessage, MIN_PROTOCOL_VERSION, MODERATION_VERSION,
    PROTOCOL_VERSION, STREAM_ACTIVITY_VERSION, ServerFrame, TYPING_TTL_MS, UserId,
};
