//! The physical transports under a session, behind one [`Connection`] type: it encodes the
//! session's [`Transmit`]s onto physical streams and reports what arrives as
//! [`TransportEvent`]s. The transports ([`wt`], [`ws`]) only move frames; [`dial`] opens one
//! (racing them for [`TransportChoice::Auto`]).
//!
//! Stream rule: a `Join` is always the first frame of a fresh physical stream (a new
//! bidirectional stream, or a new WebSocket stream id); every other frame goes on the current
//! stream of its logical stream.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use quibble_protocol::session::{StreamKey, Transmit};
use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame, codec};

pub(crate) mod dial;
mod streams;
pub(crate) mod ws;
pub(crate) mod wt;
pub(crate) mod wt_endpoints;
mod wt_udp_buffers;

/// A realtime transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    WebTransport,
    WebSocket,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::WebTransport => "WebTransport",
            TransportKind::WebSocket => "WebSocket",
        })
    }
}

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportChoice {
    /// WebTransport, with a WebSocket raced in if it is not up within a few hundred ms; every
    /// reconnect tries WebTransport again.
    #[default]
    Auto,
    WebTransport,
    WebSocket,
}

impl FromStr for TransportChoice {
    type Err = String;

    /// `auto`, `webtransport` (or `wt`), `websocket` (or `ws`), in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(TransportChoice::Auto),
            "webtransport" | "wt" => Ok(TransportChoice::WebTransport),
            "websocket" | "ws" => Ok(TransportChoice::WebSocket),
            _ => Err(format!(
                "unknown transport {s:?} (expected auto, webtransport or websocket)"
            )),
        }
    }
}

/// The transport in use, shared between the driver (which sets it) and the client handle.
#[derive(Debug, Default)]
pub(crate) struct CurrentTransport(AtomicU8);

impl CurrentTransport {
    pub(crate) fn get(&self) -> Option<TransportKind> {
        match self.0.load(Ordering::Relaxed) {
            1 => Some(TransportKind::WebTransport),
            2 => Some(TransportKind::WebSocket),
            _ => None,
        }
    }

    pub(crate) fn set(&self, kind: Option<TransportKind>) {
        let value = match kind {
            None => 0,
            Some(TransportKind::WebTransport) => 1,
            Some(TransportKind::WebSocket) => 2,
        };
        self.0.store(value, Ordering::Relaxed);
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseInfo {
    /// The protocol error code the server closed with, if it gave one of ours.
    pub code: Option<ErrorCode>,
    pub reason: String,
}

impl fmt::Display for CloseInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} ({code})", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Something that happened on a connection.
#[derive(Debug)]
pub(crate) enum TransportEvent {
    Frame(StreamKey, ServerFrame),
    /// The server ended a conversation stream.
    StreamClosed(StreamKey),
    /// The connection is gone (the control stream ended, or the transport failed).
    Closed(CloseInfo),
}

/// An open connection on either transport.
pub(crate) enum Connection {
    WebTransport(wt::WtConnection),
    WebSocket(ws::WsConnection),
}

impl Connection {
    pub(crate) fn kind(&self) -> TransportKind {
        match self {
            Connection::WebTransport(_) => TransportKind::WebTransport,
            Connection::WebSocket(_) => TransportKind::WebSocket,
        }
    }

    /// Queue a frame for sending (never waits). A frame that cannot be encoded is dropped
    /// with a log line.
    pub(crate) fn send(&mut self, transmit: Transmit) {
        let fresh = matches!(transmit.frame, ClientFrame::Join { .. });
        let bytes = match codec::encode(&transmit.frame) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(stream = ?transmit.stream, "cannot encode a frame, dropping it: {e}");
                return;
            }
        };
        match self {
            Connection::WebTransport(c) => c.send(transmit.stream, bytes, fresh),
            Connection::WebSocket(c) => c.send(transmit.stream, bytes, fresh),
        }
    }

    /// The next event. Cancel-safe.
    pub(crate) async fn recv(&mut self) -> TransportEvent {
        match self {
            Connection::WebTransport(c) => c.recv().await,
            Connection::WebSocket(c) => c.recv().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_choices_parse() {
        assert_eq!("auto".parse(), Ok(TransportChoice::Auto));
        assert_eq!("WebTransport".parse(), Ok(TransportChoice::WebTransport));
        assert_eq!("wt".parse(), Ok(TransportChoice::WebTransport));
        assert_eq!("websocket".parse(), Ok(TransportChoice::WebSocket));
        assert!("quic".parse::<TransportChoice>().is_err());
    }

    #[test]
    fn the_current_transport_round_trips() {
        let current = CurrentTransport::default();
        assert_eq!(current.get(), None);
        for kind in [TransportKind::WebTransport, TransportKind::WebSocket] {
            current.set(Some(kind));
            assert_eq!(current.get(), Some(kind));
        }
        current.set(None);
        assert_eq!(current.get(), None);
    }

    #[test]
    fn close_info_names_the_code() {
        let info = CloseInfo {
            code: Some(ErrorCode::Unauthorized),
            reason: "invalid or expired token".into(),
        };
        assert_eq!(info.to_string(), "invalid or expired token (unauthorized)");
    }
}
