//! The WebSocket envelope: one binary WebSocket message carries a varint stream id followed by
//! exactly one frame (as produced by [`crate::codec`]). Stream 0 is the control stream; a client
//! opens a conversation stream by sending `Join` on a new id.

use serde::de::DeserializeOwned;

use crate::codec::{CodecError, decode_exact, read_varint, write_varint};

/// The control stream's id.
pub const CONTROL_STREAM: u64 = 0;

/// Longest varint a stream id may use.
const MAX_STREAM_ID_LEN: usize = 10;

/// Wrap an encoded frame for stream `stream_id`.
pub fn wrap(stream_id: u64, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 2);
    write_varint(stream_id, &mut out);
    out.extend_from_slice(frame);
    out
}

/// Split a WebSocket message into its stream id and the encoded frame (still prefixed).
pub fn split(message: &[u8]) -> Result<(u64, &[u8]), CodecError> {
    match read_varint(message, MAX_STREAM_ID_LEN)? {
        Some((id, len)) => Ok((id, &message[len..])),
        None => Err(CodecError::BadLength),
    }
}

/// Split and decode a WebSocket message.
pub fn unwrap<T: DeserializeOwned>(message: &[u8], max: usize) -> Result<(u64, T), CodecError> {
    let (id, frame) = split(message)?;
    Ok((id, decode_exact(frame, max)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::limits::MAX_FRAME_LEN;
    use crate::wire::ClientFrame;

    #[test]
    fn wrap_then_unwrap() {
        let frame = encode(&ClientFrame::Ping { nonce: 42 }).unwrap();
        let msg = wrap(300, &frame);
        let (id, got) = unwrap::<ClientFrame>(&msg, MAX_FRAME_LEN).unwrap();
        assert_eq!(id, 300);
        assert_eq!(got, ClientFrame::Ping { nonce: 42 });
    }

    #[test]
    fn empty_and_truncated_messages_are_errors() {
        assert!(split(&[]).is_err());
        let frame = encode(&ClientFrame::Ping { nonce: 42 }).unwrap();
        let msg = wrap(1, &frame);
        assert!(unwrap::<ClientFrame>(&msg[..msg.len() - 1], MAX_FRAME_LEN).is_err());
    }
}
