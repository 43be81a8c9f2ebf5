//! The WebSocket dial's first flight: the session's opening frames (`Hello` and the `Join`s
//! behind it) written right behind the upgrade request, in the same write, so that the server
//! has them before it answers `101` instead of a round trip later (as a server-side WebSocket
//! peer pushes its first message right behind its `101`).
//!
//! [`encode`] formats the queued messages as masked client frames with tungstenite's own
//! frame formatting. [`FirstFlight`] wraps the socket under the WebSocket handshake: its first
//! write takes the caller's bytes (the request) and appends the flight, and reports the
//! caller's bytes written only once both are out; every later read and write passes straight
//! through. It sits on the stream the WebSocket handshake writes to: the TCP stream for
//! `ws://`, the TLS stream for `wss://` (so the flight is encrypted like the request).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// `messages` (binary, as the WebSocket transport queues them) as masked, final client
/// frames, back to back.
pub(super) fn encode(messages: impl IntoIterator<Item = Message>) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for message in messages {
        let mut frame = Frame::message(message.into_data(), OpCode::Data(Data::Binary), true);
        frame.header_mut().mask = Some(rand::random());
        frame.format(&mut out).map_err(io::Error::other)?;
    }
    Ok(out)
}

/// A stream whose first write carries `flight` behind the caller's bytes.
#[derive(Debug)]
pub(crate) struct FirstFlight<S> {
    inner: S,
    /// The encoded frames still to attach to the first write; empty once attached.
    flight: Vec<u8>,
    /// The first write (the caller's bytes, then the flight) while it is going out.
    pending: Vec<u8>,
    /// How much of `pending` is written.
    written: usize,
    /// How many bytes of `pending` were the caller's: what the first write reports.
    claimed: usize,
}

impl<S> FirstFlight<S> {
    pub(super) fn new(inner: S, flight: Vec<u8>) -> Self {
        FirstFlight {
            inner,
            flight,
            pending: Vec::new(),
            written: 0,
            claimed: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> FirstFlight<S> {
    /// Write out what is left of the first write.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstFlight<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstFlight<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_empty() && !this.flight.is_empty() && !buf.is_empty() {
            let mut pending = Vec::with_capacity(buf.len() + this.flight.len());
            pending.extend_from_slice(buf);
            pending.append(&mut this.flight);
            this.pending = pending;
            this.claimed = buf.len();
        }
        if !this.pending.is_empty() {
            // A write that returned `Pending` is repeated with the same bytes: they are
            // already in `pending`.
            ready!(this.poll_pending(cx))?;
            return Poll::Ready(Ok(this.claimed));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    use super::*;

    /// Parse one masked frame off `cursor`; returns its unmasked payload.
    fn unmask_next(cursor: &mut Cursor<&[u8]>) -> Vec<u8> {
        let (header, len) = FrameHeader::parse(cursor)
            .expect("a valid header")
            .expect("a whole header");
        assert_eq!(header.opcode, OpCode::Data(Data::Binary));
        assert!(header.is_final);
        let mask = header.mask.expect("a client frame is masked");
        let start = usize::try_from(cursor.position()).unwrap();
        let end = start + usize::try_from(len).unwrap();
        let payload: Vec<u8> = cursor.get_ref()[start..end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        cursor.set_position(end as u64);
        payload
    }

    #[test]
    fn messages_become_masked_binary_frames() {
        let big = vec![7u8; 70_000];
        let bytes = encode([
            Message::Binary(b"hello".to_vec().into()),
            Message::Binary(big.clone().into()),
        ])
        .unwrap();
        let mut cursor = Cursor::new(bytes.as_slice());
        assert_eq!(unmask_next(&mut cursor), b"hello");
        assert_eq!(unmask_next(&mut cursor), big);
        assert_eq!(cursor.position() as usize, bytes.len());
    }

    #[tokio::test]
    async fn the_first_write_carries_the_flight_and_later_writes_pass_through() {
        // A pipe far smaller than the first write: it goes out in several pieces.
        let (near, mut far) = duplex(7);
        let mut stream = FirstFlight::new(near, b"<flight>".to_vec());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        stream.write_all(b"GET /ws\r\n\r\n").await.unwrap();
        stream.write_all(b"after").await.unwrap();
        stream.shutdown().await.unwrap();
        drop(stream);
        assert_eq!(reader.await.unwrap(), b"GET /ws\r\n\r\n<flight>after");
    }
}
