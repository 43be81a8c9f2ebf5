//! Frame codec: each frame is a LEB128 varint length prefix followed by that many bytes of one
//! postcard-encoded value. [`Decoder`] reassembles frames from bytes split at any point and
//! refuses a length over its limit as soon as the prefix is read, so it never buffers more
//! than one frame plus the chunk it was handed.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits::MAX_FRAME_LEN;

/// The longest varint a frame length may use (enough for any `u32`).
const MAX_VARINT_LEN: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame length prefix")]
    BadLength,
    #[error("malformed frame body: {0}")]
    Malformed(String),
    #[error("could not encode frame: {0}")]
    Encode(String),
}

/// Append `value` to `out` as a LEB128 varint.
pub fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Read a LEB128 varint of at most `max_len` bytes from the front of `buf`.
/// `Ok(None)` means more bytes are needed; on success returns the value and its length.
pub fn read_varint(buf: &[u8], max_len: usize) -> Result<Option<(u64, usize)>, CodecError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(max_len) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= max_len {
        Err(CodecError::BadLength)
    } else {
        Ok(None)
    }
}

/// Encode one frame (length prefix + postcard body).
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(frame, &mut out)?;
    Ok(out)
}

/// Append one encoded frame to `out`. Fails, leaving `out` unchanged, if the body would exceed
/// [`MAX_FRAME_LEN`].
pub fn encode_into<T: Serialize>(frame: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let body = postcard::to_allocvec(frame).map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            len: body.len(),
            max: MAX_FRAME_LEN,
        });
    }
    write_varint(body.len() as u64, out);
    out.extend_from_slice(&body);
    Ok(())
}

/// Decode exactly one whole frame from `buf` (as carried in one WebSocket message).
pub fn decode_exact<T: DeserializeOwned>(buf: &[u8], max: usize) -> Result<T, CodecError> {
    let Some((len, prefix)) = read_varint(buf, MAX_VARINT_LEN)? else {
        return Err(CodecError::BadLength);
    };
    let len = usize::try_from(len).map_err(|_| CodecError::BadLength)?;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    if buf.len() - prefix != len {
        return Err(CodecError::BadLength);
    }
    decode_body(&buf[prefix..])
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(CodecError::Malformed(format!(
            "{} trailing bytes after the value",
            rest.len()
        ))),
        Err(e) => Err(CodecError::Malformed(e.to_string())),
    }
}

/// Incremental frame decoder: push bytes as they arrive, pull whole frames out.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with the protocol's frame limit.
    pub fn new() -> Self {
        Self::with_max(MAX_FRAME_LEN)
    }

    /// A decoder that refuses frame bodies longer than `max` bytes.
    pub fn with_max(max: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed. After an error the stream
    /// is unusable (frame boundaries are lost) and should be closed.
    pub fn next_frame<T: DeserializeOwned>(&mut self) -> Result<Option<T>, CodecError> {
        let pending = &self.buf[self.start..];
        let Some((len, prefix)) = read_varint(pending, MAX_VARINT_LEN)? else {
            return Ok(None);
        };
        let len = usize::try_from(len).map_err(|_| CodecError::BadLength)?;
        if len > self.max {
            return Err(CodecError::TooLarge { len, max: self.max });
        }
        if pending.len() - prefix < len {
            return Ok(None);
        }
        let body = &pending[prefix..prefix + len];
        let value = decode_body(body)?;
        self.start += prefix + len;
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ClientFrame, ConversationId, Cursor, ServerFrame};

    #[test]
    fn frames_split_byte_by_byte_decode() {
        let frames = vec![
            ClientFrame::Hello {
                version: 1,
                token: "t".repeat(40),
            },
            ClientFrame::Join {
                conversation: ConversationId(7),
                resume: Some(Cursor { epoch: 9, seq: 300 }),
            },
            ClientFrame::Leave,
        ];
        let mut wire = Vec::new();
        for f in &frames {
            encode_into(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new();
        let mut got = Vec::new();
        for b in &wire {
            dec.push(std::slice::from_ref(b));
            while let Some(f) = dec.next_frame::<ClientFrame>().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut prefix = Vec::new();
        write_varint((MAX_FRAME_LEN + 1) as u64, &mut prefix);
        let mut dec = Decoder::new();
        dec.push(&prefix);
        assert!(matches!(
            dec.next_frame::<ServerFrame>(),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn endless_varint_is_an_error() {
        let mut dec = Decoder::new();
        dec.push(&[0xff; 6]);
        assert_eq!(dec.next_frame::<ClientFrame>(), Err(CodecError::BadLength));
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_malformed() {
        let mut body = postcard::to_allocvec(&ClientFrame::Leave).unwrap();
        body.push(0);
        let mut wire = Vec::new();
        write_varint(body.len() as u64, &mut wire);
        wire.extend_from_slice(&body);
        assert!(matches!(
            decode_exact::<ClientFrame>(&wire, MAX_FRAME_LEN),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn encode_refuses_bodies_over_the_limit() {
        let huge = ClientFrame::Hello {
            version: 1,
            token: "x".repeat(MAX_FRAME_LEN + 1),
        };
        assert!(matches!(encode(&huge), Err(CodecError::TooLarge { .. })));
    }
}
