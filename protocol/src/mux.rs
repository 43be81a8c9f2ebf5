//! The WebSocket envelope: one binary WebSocket message carries a varint stream id followed by
//! exactly one frame (as produced by [`crate::codec`]). Stream 0 is the control stream; a client
//! opens a conversation stream by sending `Join` on a new id. A message with the stream id and
//! nothing after it ends that stream (the WebSocket counterpart of a WebTransport stream FIN);
//! either side may send it.
//!
//! Stream ids are never reused. A client opens conversation streams on strictly increasing
//! ids (1, 2, 3, …; 0 is control). A stream is over once either side has finished it (a
//! finish message, or the server ending it after `Leave`, `Lagged` or an `Error`), and the
//! server forgets it then: it no longer counts toward the server's limit on open streams, and
//! the client need not finish it too. A frame on an id that is not open and not above the
//! highest id opened so far is for a stream that is over: a `Join` there is refused with
//! `Error { ProtocolViolation, "stream id N is closed; open a new id" }` and a finish; any
//! other frame there is dropped (it was in flight when the stream ended). The server's memory
//! for this is one integer per connection (the highest id opened), not a set.

use serde::de::DeserializeOwned;

use crate::codec::{CodecError, decode_exact, read_varint, write_varint};

/// The control stream's id.
pub const CONTROL_STREAM: u64 = 0;

/// Longest varint a stream id may use.
const MAX_STREAM_ID_LEN: usize = 10;

/// Wrap an encoded frame for stream `stream_id`.
pub fn wrap(stream_id: u64, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + 2);
    wrap_into(stream_id, frame, &mut out);
    out
}

/// Append the message carrying `frame` on stream `stream_id` to `out` (an empty `frame`: the
/// message that ends the stream); returns its length. A writer that sends many messages at
/// once builds them all in one buffer this way.
pub fn wrap_into(stream_id: u64, frame: &[u8], out: &mut Vec<u8>) -> usize {
    let start = out.len();
    write_varint(stream_id, out);
    out.extend_from_slice(frame);
    out.len() - start
}

/// The message that ends stream `stream_id`.
pub fn finish(stream_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(2);
    write_varint(stream_id, &mut out);
    out
}

/// What one WebSocket message carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<T> {
    /// A frame on a stream.
    Frame(u64, T),
    /// The sender ended the stream.
    Finish(u64),
}

/// Split a WebSocket message into its stream id and the encoded frame (still prefixed); the
/// frame is empty for a finish message.
pub fn split(message: &[u8]) -> Result<(u64, &[u8]), CodecError> {
    match read_varint(message, MAX_STREAM_ID_LEN)? {
        Some((id, len)) => Ok((id, &message[len..])),
        None => Err(CodecError::BadLength),
    }
}

/// Split and decode a WebSocket message.
pub fn unwrap<T: DeserializeOwned>(message: &[u8], max: usize) -> Result<Envelope<T>, CodecError> {
    let (id, frame) = split(message)?;
    if frame.is_empty() {
        return Ok(Envelope::Finish(id));
    }
    Ok(Envelope::Frame(id, decode_exact(frame, max)?))
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
        assert_eq!(
            unwrap::<ClientFrame>(&msg, MAX_FRAME_LEN).unwrap(),
            Envelope::Frame(300, ClientFrame::Ping { nonce: 42 })
        );
        assert_eq!(
            unwrap::<ClientFrame>(&finish(7), MAX_FRAME_LEN).unwrap(),
            Envelope::Finish(7)
        );
    }

    #[test]
    fn messages_built_in_one_buffer_split_back_apart() {
        let frames = [
            encode(&ClientFrame::Ping { nonce: 1 }).unwrap(),
            Vec::new(),
            encode(&ClientFrame::Ping { nonce: 2 }).unwrap(),
        ];
        let mut out = Vec::new();
        let lens: Vec<usize> = [(5, &frames[0]), (300, &frames[1]), (0, &frames[2])]
            .into_iter()
            .map(|(id, frame)| wrap_into(id, frame, &mut out))
            .collect();
        let (one, rest) = out.split_at(lens[0]);
        let (two, three) = rest.split_at(lens[1]);
        assert_eq!(one, wrap(5, &frames[0]));
        assert_eq!(two, finish(300));
        assert_eq!(three, wrap(0, &frames[2]));
    }

    #[test]
    fn empty_and_truncated_messages_are_errors() {
        assert!(split(&[]).is_err());
        let frame = encode(&ClientFrame::Ping { nonce: 42 }).unwrap();
        let msg = wrap(1, &frame);
        assert!(unwrap::<ClientFrame>(&msg[..msg.len() - 1], MAX_FRAME_LEN).is_err());
    }
}
