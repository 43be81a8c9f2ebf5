//! The transport-agnostic logical stream the engine works with: decoded inbound frames (or the
//! decode error that ends the stream) and the stream's slot in its connection's byte-bounded
//! outbound queue ([`crate::chat::outbound`]). Transports feed the inbound channel and write
//! what the queue holds; dropping the [`StreamTx`] ends the stream (a FIN on WebTransport, a
//! finish message on WebSocket).

use bytes::Bytes;
use quibble_protocol::{CodecError, ErrorCode, ServerFrame, codec};
use tokio::sync::mpsc;

use crate::chat::outbound::StreamTx;

/// Inbound frames decoded ahead of the handler.
pub const INBOUND_FRAMES: usize = 16;

/// What a transport hands the engine for each received frame.
#[derive(Debug)]
pub enum Inbound {
    Frame(quibble_protocol::ClientFrame),
    /// The bytes could not be decoded; nothing more will arrive on this stream.
    Invalid(CodecError),
}

/// One logical stream, seen from the engine.
pub struct StreamIo {
    pub inbound: mpsc::Receiver<Inbound>,
    pub outbound: StreamTx,
}

impl StreamIo {
    /// A stream writing into `outbound`; returns the sender its transport feeds.
    pub fn new(outbound: StreamTx) -> (StreamIo, mpsc::Sender<Inbound>) {
        let (tx, rx) = mpsc::channel(INBOUND_FRAMES);
        (
            StreamIo {
                inbound: rx,
                outbound,
            },
            tx,
        )
    }
}

/// Encode a server frame. Every server frame is bounded well below the frame limit; should one
/// ever not be, the peer gets an `Internal` error instead of an oversized frame.
pub fn encode_frame(frame: &ServerFrame) -> Bytes {
    match codec::encode(frame) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!("cannot encode a server frame: {e}");
            let fallback = ServerFrame::Error {
                code: ErrorCode::Internal,
                reason: "response too large".into(),
            };
            Bytes::from(codec::encode(&fallback).unwrap_or_default())
        }
    }
}

/// The error code for a frame that failed to decode.
pub fn decode_error_code(err: &CodecError) -> ErrorCode {
    match err {
        CodecError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::BadFrame,
    }
}

/// Why a stream or connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// `None` for a normal close.
    pub code: Option<ErrorCode>,
    pub reason: String,
}

impl CloseReason {
    pub fn normal(reason: impl Into<String>) -> Self {
        CloseReason {
            code: None,
            reason: reason.into(),
        }
    }

    pub fn error(code: ErrorCode, reason: impl Into<String>) -> Self {
        CloseReason {
            code: Some(code),
            reason: reason.into(),
        }
    }
}
