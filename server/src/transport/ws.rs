//! The WebSocket fallback at `/ws`: the same frames as WebTransport, multiplexed over one
//! socket by stream id (see `quibble_protocol::mux`). One task reads and demultiplexes, one
//! writes (batching frames per socket write), and each logical stream gets a small pump that
//! tags its frames with its id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux::{self, CONTROL_STREAM};
use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame, codec};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::timeout;

use crate::chat::connection::{self, ConnIo};
use crate::chat::stream::{Inbound, StreamIo, decode_error_code, encode_frame, stream_pair};
use crate::http::error::ApiError;
use crate::state::AppState;

/// WebSocket messages queued for the socket before stream pumps wait.
const SOCKET_QUEUE: usize = 1024;
/// A socket that accepts nothing for this long is closed as a slow consumer.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Room for the stream id in front of a frame.
const ENVELOPE_SLACK: usize = 16;
/// The WebSocket library's read buffer per connection, and the most one socket read takes: it
/// is allocated, zeroed and kept for the connection's life (the default 128 KiB made an idle
/// connection cost ~150 KB of RSS); a larger message makes it grow. Client frames are small.
const READ_BUFFER: usize = 2 * 1024;
/// Bytes the library gathers before a socket write (a flush writes at once): big enough to
/// batch a burst of small frames into few writes, small because its buffer keeps the largest
/// size it reached.
const WRITE_BUFFER: usize = 8 * 1024;

/// `GET /ws`: upgrade, unless the server is full.
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "transport" => "websocket")
            .increment(1);
        return ApiError::overloaded().into_response();
    };
    ws.max_message_size(MAX_FRAME_LEN + ENVELOPE_SLACK)
        .max_frame_size(MAX_FRAME_LEN + ENVELOPE_SLACK)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| handle(state, socket, peer, permit))
}

async fn handle(
    state: AppState,
    socket: WebSocket,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let (sink, source) = socket.split();
    let (socket_tx, socket_rx) = mpsc::channel::<Message>(SOCKET_QUEUE);
    let writer = tokio::spawn(write_socket(sink, socket_rx));

    let (control, control_ports) = stream_pair();
    let control_pump = tokio::spawn(tag_stream(
        CONTROL_STREAM,
        control_ports.outbound,
        socket_tx.clone(),
    ));
    let (streams_tx, streams_rx) = mpsc::channel(8);
    let demux = Demux {
        streams: HashMap::from([(CONTROL_STREAM, control_ports.inbound)]),
        new_streams: streams_tx,
        socket: socket_tx.clone(),
        max_streams: state.limits.max_streams_per_connection,
    };
    let reader = tokio::spawn(demux.run(source));

    let reason = connection::serve(
        state,
        ConnIo {
            control,
            streams: streams_rx,
            peer,
            transport: "websocket",
        },
    )
    .await;
    reader.abort();
    let _ = timeout(Duration::from_secs(1), control_pump).await;
    let code = reason.code.map_or(1000, ErrorCode::ws_close_code);
    let close = CloseFrame {
        code,
        reason: Utf8Bytes::from(truncate(&reason.reason, 120)),
    };
    let _ = socket_tx.send(Message::Close(Some(close))).await;
    drop(socket_tx);
    let _ = timeout(Duration::from_secs(1), writer).await;
    drop(permit);
}

/// Close reasons must fit a control frame (125 bytes).
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Routes inbound WebSocket messages to their logical streams.
struct Demux {
    streams: HashMap<u64, mpsc::Sender<Inbound>>,
    new_streams: mpsc::Sender<StreamIo>,
    socket: mpsc::Sender<Message>,
    max_streams: usize,
}

impl Demux {
    async fn run(mut self, mut source: SplitStream<WebSocket>) {
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Text(_) => {
                    self.fail_connection(
                        ErrorCode::BadFrame,
                        "text messages are not part of the protocol",
                    )
                    .await;
                    return;
                }
                Message::Close(_) => return,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            let (id, frame) = match mux::split(&data) {
                Ok(parts) => parts,
                Err(e) => {
                    self.fail_connection(ErrorCode::BadFrame, &e.to_string())
                        .await;
                    return;
                }
            };
            if frame.is_empty() {
                // The peer finished this stream: its handler sees the end of input.
                self.streams.remove(&id);
                continue;
            }
            let inbound = match codec::decode_exact::<ClientFrame>(frame, MAX_FRAME_LEN) {
                Ok(frame) => Inbound::Frame(frame),
                Err(e) => Inbound::Invalid(e),
            };
            self.route(id, inbound).await;
        }
    }

    async fn route(&mut self, id: u64, mut inbound: Inbound) {
        if let Some(tx) = self.streams.get(&id) {
            match tx.send(inbound).await {
                Ok(()) => return,
                // Its handler ended; a new frame on the id opens a new stream.
                Err(returned) => inbound = returned.0,
            }
            self.streams.remove(&id);
            if id == CONTROL_STREAM {
                return;
            }
        }
        if let Inbound::Invalid(e) = &inbound {
            self.refuse_stream(id, decode_error_code(e), &e.to_string())
                .await;
            return;
        }
        if self.streams.len() > self.max_streams {
            self.refuse_stream(id, ErrorCode::RateLimited, "too many open streams")
                .await;
            return;
        }
        let (io, ports) = stream_pair();
        if ports.inbound.send(inbound).await.is_err() || self.new_streams.send(io).await.is_err() {
            return;
        }
        tokio::spawn(tag_stream(id, ports.outbound, self.socket.clone()));
        self.streams.insert(id, ports.inbound);
    }

    async fn refuse_stream(&self, id: u64, code: ErrorCode, reason: &str) {
        let error = encode_frame(&ServerFrame::Error {
            code,
            reason: reason.to_owned(),
        });
        let _ = self.socket.send(binary(mux::wrap(id, &error))).await;
        let _ = self.socket.send(binary(mux::finish(id))).await;
    }

    async fn fail_connection(&self, code: ErrorCode, reason: &str) {
        let close = CloseFrame {
            code: code.ws_close_code(),
            reason: Utf8Bytes::from(truncate(reason, 120)),
        };
        let _ = self.socket.send(Message::Close(Some(close))).await;
    }
}

/// Forward one logical stream's frames to the socket, tagged with its id; finish it at the end.
async fn tag_stream(id: u64, mut frames: mpsc::Receiver<Bytes>, socket: mpsc::Sender<Message>) {
    while let Some(frame) = frames.recv().await {
        if socket.send(binary(mux::wrap(id, &frame))).await.is_err() {
            return;
        }
    }
    let _ = socket.send(binary(mux::finish(id))).await;
}

fn binary(data: Vec<u8>) -> Message {
    Message::Binary(Bytes::from(data))
}

/// Write queued messages, feeding everything already queued before one flush; stop after a
/// close frame, or when the peer takes nothing for [`WRITE_STALL`].
async fn write_socket(mut sink: SplitSink<WebSocket, Message>, mut queue: mpsc::Receiver<Message>) {
    while let Some(first) = queue.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        let batch = async {
            sink.feed(first).await?;
            while !closing {
                let Ok(next) = queue.try_recv() else { break };
                closing = matches!(next, Message::Close(_));
                sink.feed(next).await?;
            }
            sink.flush().await.map(|()| closing)
        };
        match timeout(WRITE_STALL, batch).await {
            Ok(Ok(false)) => {}
            _ => return,
        }
    }
}
