//! The WebSocket transport (`ws://host:port/ws`, or `wss://` for an `https` server, verified
//! with the client's roots from `tls.rs` over tokio-rustls): every frame travels as one
//! binary message in the `protocol::mux` envelope, stream id 0 being the control stream and each
//! conversation stream getting a fresh, strictly increasing id (ids are never reused). One
//! task reads and reports, one task writes (batching whatever is queued into one flush).
//!
//! A stream is over once either side has finished it. The stream table holds a [`MuxStream`]
//! per open stream, and forgetting one (the server ended it, its frame was malformed, or a
//! rejoin replaced it) sends our finish for its id, so neither side keeps a dead id.
//!
//! The dial takes the session's first flight (`Hello` and the `Join`s behind it): it goes out
//! in the upgrade request's write (see `first_flight`), inside TLS for `wss://`.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux;
use quibble_protocol::session::{StreamKey, Transmit};
use quibble_protocol::{ErrorCode, ServerFrame, codec};
use reqwest::Url;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::first_flight::{self, FirstFlight};
use super::streams::{CONTROL_ID, INBOUND_QUEUE, Inbound, StreamTable};
use super::{CloseInfo, TransportEvent, TransportKind, encode_transmit};
use crate::error::TransportError;
use crate::tls::{self, TlsRoots};

/// Room for the stream id in front of a frame.
const ENVELOPE_SLACK: usize = 16;
/// A socket that accepts nothing for this long is given up.
const WRITE_STALL: Duration = Duration::from_secs(15);

/// An open WebSocket connection.
pub(crate) struct WsConnection {
    out: mpsc::UnboundedSender<Message>,
    inbound: mpsc::Receiver<Inbound>,
    /// Each logical stream's current WebSocket stream.
    streams: StreamTable<MuxStream>,
    reader: JoinHandle<()>,
}

/// The socket's read buffer. tungstenite zero-fills the buffer's free capacity before every
/// read, so its default 128 KiB cost a 128 KiB memset per read: 15–19 % of the bench's CPU,
/// whose bots read a few small messages at a time. 16 KiB still takes ~100 deliveries a read.
const READ_BUFFER: usize = 16 * 1024;

/// Open the WebSocket at `url`, carrying `first_flight` (see the module docs); a `wss` URL is
/// verified with `tls`.
pub(crate) async fn connect(
    url: &Url,
    first_flight: Vec<Transmit>,
    tls: &TlsRoots,
) -> Result<WsConnection, TransportError> {
    let failed = |e: tungstenite::Error| TransportError::Failed {
        transport: TransportKind::WebSocket,
        reason: describe(&e),
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_FRAME_LEN + ENVELOPE_SLACK))
        .max_frame_size(Some(MAX_FRAME_LEN + ENVELOPE_SLACK));
    let (out, mut out_rx) = mpsc::unbounded_channel();
    let mut streams = StreamTable::new(MuxStream {
        id: CONTROL_ID,
        out: out.clone(),
    });
    for transmit in &first_flight {
        if let Some((bytes, fresh)) = encode_transmit(transmit) {
            queue(&mut streams, &out, transmit.stream, bytes, fresh);
        }
    }
    let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
    let queued = std::iter::from_fn(|| out_rx.try_recv().ok());
    let flight = first_flight::encode(queued).map_err(|e| failed(e.into()))?;
    let tcp = TcpStream::connect(authority(url).map_err(failed)?)
        .await
        .map_err(|e| failed(e.into()))?;
    tcp.set_nodelay(true).map_err(|e| failed(e.into()))?;
    let reader = match url.scheme() {
        "ws" => {
            let stream = FirstFlight::new(tcp, flight);
            let (socket, _response) = client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(failed)?;
            start(socket, out_rx, inbound_tx)
        }
        "wss" => {
            let tls_stream = handshake_tls(url, tcp, tls).await?;
            let stream = FirstFlight::new(tls_stream, flight);
            let (socket, _response) = client_async_with_config(url.as_str(), stream, Some(config))
                .await
                .map_err(failed)?;
            start(socket, out_rx, inbound_tx)
        }
        _ => {
            return Err(failed(tungstenite::Error::Url(
                UrlError::UnsupportedUrlScheme,
            )));
        }
    };
    Ok(WsConnection {
        inbound,
        streams,
        out,
        reader,
    })
}

/// The TLS handshake of a `wss` connection: the server's certificate verified with `tls` for
/// the URL's host; a refused certificate is [`TransportError::Certificate`].
async fn handshake_tls(
    url: &Url,
    tcp: TcpStream,
    tls: &TlsRoots,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TransportError> {
    let failed = |reason: String| TransportError::Failed {
        transport: TransportKind::WebSocket,
        reason,
    };
    let name = tls::server_name(url)
        .ok_or_else(|| failed(format!("{url} has no host name usable for TLS")))?;
    TlsConnector::from(tls.tcp())
        .connect(name, tcp)
        .await
        .map_err(|e| match tls::certificate_failure(&e) {
            Some(reason) => TransportError::Certificate {
                transport: TransportKind::WebSocket,
                server: authority(url).unwrap_or_else(|_| url.to_string()),
                reason,
                trusted: tls.describe(),
            },
            None => failed(format!("TLS handshake failed: {e}")),
        })
}

/// `host:port` of `url`, for the TCP connection.
fn authority(url: &Url) -> Result<String, tungstenite::Error> {
    let host = url
        .host_str()
        .ok_or(tungstenite::Error::Url(UrlError::NoHostName))?;
    let port = url
        .port_or_known_default()
        .ok_or(tungstenite::Error::Url(UrlError::UnsupportedUrlScheme))?;
    Ok(format!("{host}:{port}"))
}

/// Start the socket's writer and reader tasks; returns the reader.
fn start<S>(
    socket: WebSocketStream<S>,
    out_rx: mpsc::UnboundedReceiver<Message>,
    inbound_tx: mpsc::Sender<Inbound>,
) -> JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, source) = socket.split();
    tokio::spawn(write_socket(sink, out_rx));
    tokio::spawn(read_socket(source, inbound_tx))
}

/// Queue an encoded frame on `stream` (on a new stream id if `fresh`).
fn queue(
    streams: &mut StreamTable<MuxStream>,
    out: &mpsc::UnboundedSender<Message>,
    stream: StreamKey,
    frame: Vec<u8>,
    fresh: bool,
) {
    let id = match streams.get(stream) {
        Some((id, _)) if !fresh || stream == StreamKey::Control => id,
        // The control stream ended: the connection is being reported closed.
        None if stream == StreamKey::Control => return,
        _ => {
            let out = out.clone();
            let (id, replaced) = streams.open(stream, |id| MuxStream { id, out });
            // Dropping the replaced stream finishes it, before the new id's first frame.
            drop(replaced);
            id
        }
    };
    // If the writer is gone, the reader reports the connection lost.
    let _ = out.send(binary(mux::wrap(id, &frame)));
}

fn describe(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            format!(
                "the server answered HTTP {}: {}",
                response.status(),
                body.trim()
            )
        }
        other => other.to_string(),
    }
}

impl WsConnection {
    /// Queue an encoded frame on `stream` (on a new stream id if `fresh`).
    pub(crate) fn send(&mut self, stream: StreamKey, frame: Vec<u8>, fresh: bool) {
        queue(&mut self.streams, &self.out, stream, frame, fresh);
    }

    pub(crate) async fn recv(&mut self) -> TransportEvent {
        loop {
            let Some(inbound) = self.inbound.recv().await else {
                return TransportEvent::Closed(CloseInfo {
                    code: None,
                    reason: "the WebSocket reader stopped".into(),
                });
            };
            // A stream the server ended is dropped here, which finishes our side of it.
            if let Some(event) = self.streams.translate(inbound) {
                return event;
            }
        }
    }
}

/// Our side of one open WebSocket stream: dropping it (forgetting the stream) sends the
/// stream's finish message, except for the control stream, which ends with the close frame.
struct MuxStream {
    id: u64,
    out: mpsc::UnboundedSender<Message>,
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        if self.id != CONTROL_ID {
            // If the writer is gone, so is the connection and every stream on it.
            let _ = self.out.send(binary(mux::finish(self.id)));
        }
    }
}

impl Drop for WsConnection {
    fn drop(&mut self) {
        // The writer sends a close frame once its queue is dropped with `self`.
        self.reader.abort();
    }
}

fn binary(data: Vec<u8>) -> Message {
    Message::Binary(data.into())
}

async fn read_socket<S: AsyncRead + AsyncWrite + Unpin>(
    mut source: SplitStream<WebSocketStream<S>>,
    inbound: mpsc::Sender<Inbound>,
) {
    let lost = loop {
        let message = match source.next().await {
            Some(Ok(message)) => message,
            Some(Err(e)) => break lost(format!("WebSocket error: {e}")),
            None => break lost("the server closed the connection".into()),
        };
        let report = match message {
            Message::Binary(data) => match mux::split(&data) {
                Ok((id, [])) => Inbound::Ended(id),
                Ok((id, frame)) => match codec::decode_exact::<ServerFrame>(frame, MAX_FRAME_LEN) {
                    Ok(frame) => Inbound::Frame(id, frame),
                    Err(e) => {
                        tracing::warn!(stream = id, "malformed frame from the server: {e}");
                        Inbound::Ended(id)
                    }
                },
                Err(e) => break lost(format!("malformed message from the server: {e}")),
            },
            Message::Close(frame) => break close_info(frame),
            Message::Text(_) => break lost("the server sent a text message".into()),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        if inbound.send(report).await.is_err() {
            return;
        }
    };
    let _ = inbound.send(Inbound::Lost(lost)).await;
}

fn lost(reason: String) -> CloseInfo {
    CloseInfo { code: None, reason }
}

/// Why the server closed: our error codes travel as WebSocket close codes 4000 + n.
fn close_info(frame: Option<CloseFrame>) -> CloseInfo {
    let Some(frame) = frame else {
        return lost("the server closed the connection".into());
    };
    let code = u16::from(frame.code);
    let reason = if frame.reason.is_empty() {
        format!("the server closed the connection (code {code})")
    } else {
        frame.reason.to_string()
    };
    CloseInfo {
        code: code
            .checked_sub(4000)
            .and_then(|n| ErrorCode::from_u32(u32::from(n))),
        reason,
    }
}

async fn write_socket<S: AsyncRead + AsyncWrite + Unpin>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut queue: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(first) = queue.recv().await {
        let batch = async {
            sink.feed(first).await?;
            while let Ok(next) = queue.try_recv() {
                sink.feed(next).await?;
            }
            sink.flush().await
        };
        match timeout(WRITE_STALL, batch).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!("WebSocket write failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("WebSocket write stalled for {WRITE_STALL:?}");
                return;
            }
        }
    }
    let _ = timeout(WRITE_STALL, sink.send(Message::Close(None))).await;
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    #[test]
    fn close_codes_carry_protocol_error_codes() {
        let info = close_info(Some(CloseFrame {
            code: CloseCode::from(ErrorCode::Unauthorized.ws_close_code()),
            reason: "invalid or expired token".into(),
        }));
        assert_eq!(info.code, Some(ErrorCode::Unauthorized));
        assert_eq!(info.reason, "invalid or expired token");
        let normal = close_info(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        assert_eq!(normal.code, None);
        assert!(normal.reason.contains("1000"));
        assert_eq!(close_info(None).code, None);
    }
}
