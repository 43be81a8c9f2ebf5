//! The transport-agnostic logical stream the engine works with: decoded inbound frames (or the
//! decode error that ends the stream) and the stream's slot in its connection's byte-bounded
//! outbound queue ([`crate::chat::outbound`]). Transports feed the inbound channel and write
//! what the queue holds; dropping the [`StreamTx`] ends the stream (a FIN on WebTransport, a
//! finish message on WebSocket).
//!
//! Inbound is bounded in bytes too: every frame handed to the engine holds its wire size from
//! the connection's [`InboundBudget`] until its handler takes it. A transport waits when the
//! budget is spent, so a peer whose frames are not being handled is simply not read further.
//!
//! Idle cost: an idle connection holds these channels for its whole life, so they are
//! [`crate::chat::handoff`] ones: one allocation each, and no buffer while empty.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use quibble_protocol::{CodecError, ErrorCode, ServerFrame, codec};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::chat::handoff;
use crate::chat::outbound::StreamTx;

/// Inbound frames decoded ahead of a stream's handler.
pub const INBOUND_FRAMES: usize = 4;
/// Bytes of frames one connection may have received but not yet handled (eight of the
/// largest frames).
pub const INBOUND_BYTES: usize = 2 * 1024 * 1024;
/// Streams a transport may have opened ahead of the engine taking them.
const NEW_STREAMS: usize = 8;

/// A connection's budget for received frames not yet handled; clones share it.
#[derive(Clone)]
pub struct InboundBudget(Arc<Semaphore>);

impl Default for InboundBudget {
    fn default() -> Self {
        InboundBudget(Arc::new(Semaphore::new(INBOUND_BYTES)))
    }
}

/// The transport's end of a stream's inbound channel.
pub struct InboundTx {
    tx: handoff::Sender<(Inbound, OwnedSemaphorePermit)>,
    budget: InboundBudget,
}

impl InboundTx {
    /// Hand a frame that took `wire_len` bytes to the engine, once the budget has room for
    /// it; gives the frame back if the stream's handler is gone.
    pub async fn send(&mut self, inbound: Inbound, wire_len: usize) -> Result<(), Inbound> {
        let share = wire_len.clamp(1, INBOUND_BYTES) as u32;
        let Ok(permit) = self.budget.0.clone().acquire_many_owned(share).await else {
            return Err(inbound);
        };
        self.tx
            .send((inbound, permit))
            .await
            .map_err(|returned| returned.0)
    }

    /// Whether the stream's handler is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The engine's end of a stream's inbound channel.
pub struct InboundRx {
    rx: handoff::Receiver<(Inbound, OwnedSemaphorePermit)>,
}

impl InboundRx {
    /// The next frame; `None` once the transport has nothing more for this stream.
    pub async fn recv(&mut self) -> Option<Inbound> {
        // Taking the frame gives its bytes back to the budget.
        self.rx.recv().await.map(|(inbound, _permit)| inbound)
    }

    /// [`InboundRx::recv`] as a poll.
    pub fn poll_recv(&mut self, cx: &Context<'_>) -> Poll<Option<Inbound>> {
        self.rx
            .poll_recv(cx)
            .map(|frame| frame.map(|(inbound, _permit)| inbound))
    }
}

/// The transport's end of the channel that hands a connection's new streams to the engine.
pub struct NewStreamTx(handoff::Sender<StreamIo>);

impl NewStreamTx {
    /// Hand a stream the peer opened to the engine, once it has taken the earlier ones; fails
    /// if the connection's engine is gone.
    pub async fn send(&mut self, stream: StreamIo) -> Result<(), StreamIo> {
        self.0.send(stream).await
    }
}

/// The engine's end: streams in the order the peer opened them.
pub struct NewStreamRx(handoff::Receiver<StreamIo>);

impl NewStreamRx {
    /// The next stream; `None` once the transport is gone.
    pub async fn recv(&mut self) -> Option<StreamIo> {
        self.0.recv().await
    }

    /// [`NewStreamRx::recv`] as a poll.
    pub fn poll_recv(&mut self, cx: &Context<'_>) -> Poll<Option<StreamIo>> {
        self.0.poll_recv(cx)
    }
}

/// The channel of a connection's new streams, transport to engine.
pub fn new_streams() -> (NewStreamTx, NewStreamRx) {
    let (tx, rx) = handoff::channel(NEW_STREAMS);
    (NewStreamTx(tx), NewStreamRx(rx))
}

/// What a transport hands the engine for each received frame.
#[derive(Debug)]
pub enum Inbound {
    Frame(quibble_protocol::ClientFrame),
    /// The bytes could not be decoded; nothing more will arrive on this stream.
    Invalid(CodecError),
}

/// One logical stream, seen from the engine.
pub struct StreamIo {
    pub inbound: InboundRx,
    pub outbound: StreamTx,
}

impl StreamIo {
    /// A stream writing into `outbound` and receiving under `budget`; returns the sender its
    /// transport feeds.
    pub fn new(outbound: StreamTx, budget: &InboundBudget) -> (StreamIo, InboundTx) {
        let (tx, rx) = handoff::channel(INBOUND_FRAMES);
        (
            StreamIo {
                inbound: InboundRx { rx },
                outbound,
            },
            InboundTx {
                tx,
                budget: budget.clone(),
            },
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
