//! Protocol error codes: carried in `Error`/`Rejected` frames, and as the application code
//! when a WebTransport stream or session is closed (and, offset by 4000, a WebSocket close).

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A frame could not be decoded.
    BadFrame,
    /// A frame's length prefix exceeds the limit.
    FrameTooLarge,
    /// A well-formed frame that is not allowed here (e.g. `Send` before `Hello`).
    ProtocolViolation,
    /// The client's protocol version is not supported.
    UnsupportedVersion,
    /// Missing, expired or revoked token.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The conversation does not exist.
    UnknownConversation,
    /// Invalid content (empty or too long a message, bad limit).
    InvalidInput,
    /// Too many requests; retry later.
    RateLimited,
    /// The peer does not read fast enough.
    SlowConsumer,
    /// The server is shutting down.
    ShuttingDown,
    /// The server failed; the request may be retried.
    Internal,
    /// Sending in a direct-message conversation needs its two members to be friends; they are
    /// not (any more). The history stays readable. (Version-1 connections get `Forbidden`.)
    NotFriends,
    /// The account or the address is banned; the reason says why and until when. Do not
    /// reconnect. (Connections before version 3 get `Unauthorized`.)
    Banned,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::ProtocolViolation,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::UnknownConversation,
        ErrorCode::InvalidInput,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
        ErrorCode::NotFriends,
        ErrorCode::Banned,
    ];

    /// Numeric code used when closing a WebTransport stream or session (1-based).
    pub fn as_u32(self) -> u32 {
        match self {
            ErrorCode::BadFrame => 1,
            ErrorCode::FrameTooLarge => 2,
            ErrorCode::ProtocolViolation => 3,
            ErrorCode::UnsupportedVersion => 4,
            ErrorCode::Unauthorized => 5,
            ErrorCode::Forbidden => 6,
            ErrorCode::UnknownConversation => 7,
            ErrorCode::InvalidInput => 8,
            ErrorCode::RateLimited => 9,
            ErrorCode::SlowConsumer => 10,
            ErrorCode::ShuttingDown => 11,
            ErrorCode::Internal => 12,
            ErrorCode::NotFriends => 13,
            ErrorCode::Banned => 14,
        }
    }

    /// The code for a numeric close code, if it is one of ours.
    pub fn from_u32(code: u32) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_u32() == code)
    }

    /// WebSocket close code: the private range 4000–4999.
    pub fn ws_close_code(self) -> u16 {
        4000 + self.as_u32() as u16
    }

    /// Whether a client should reconnect after a connection-level error with this code.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::SlowConsumer
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
        )
    }

    /// A short stable name, e.g. for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UnknownConversation => "unknown_conversation",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFriends => "not_friends",
            ErrorCode::Banned => "banned",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_codes_round_trip_and_are_distinct() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u32(code.as_u32()), Some(code));
            assert!((4000..5000).contains(&code.ws_close_code()));
        }
        assert_eq!(ErrorCode::from_u32(0), None);
        assert_eq!(ErrorCode::from_u32(999), None);
    }
}
