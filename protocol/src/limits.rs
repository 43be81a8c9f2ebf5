//! Hard limits shared by clients and servers, so both sides agree on what is too big.

/// Largest encoded frame body (after the length prefix) either side accepts.
pub const MAX_FRAME_LEN: usize = 256 * 1024;

/// Largest message body, in bytes of UTF-8.
pub const MAX_BODY_LEN: usize = 4096;

/// Most messages in one history page (a page of full-size messages still fits in a frame).
pub const MAX_HISTORY_PAGE: u16 = 50;

/// Longest session token a client may present.
pub const MAX_TOKEN_LEN: usize = 128;
