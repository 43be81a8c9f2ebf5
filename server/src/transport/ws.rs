//! The WebSocket fallback at `/ws`: the same frames as WebTransport, multiplexed over one
//! socket by stream id (see `quibble_protocol::mux`, which also states the stream-id rule
//! implemented here). A connection is one task (its conversation streams run inside it, see
//! `chat::connection`) that drives three parts together: the engine, a reader that
//! demultiplexes, and the socket's one writer, which takes every stream's frames from the
//! connection's byte-bounded queue ([`Outbound`]) and wraps each in its stream id only at
//! write time, so a fanned-out frame is held once however many sockets queue it.
//!
//! Stream ids: the demultiplexer remembers the open streams and one integer, the highest id
//! opened. A stream is forgotten as soon as either side ends it, so ended streams never count
//! toward the stream limit; a frame on a forgotten id at or below the highest is for a stream
//! that is over (a `Join` there is refused, anything else dropped).
//!
//! Closing: the writer sends what is queued and the close frame while the reader goes on
//! reading and discarding whatever the peer still sends, for a bounded time, so the socket is
//! not closed with unread input (which makes the kernel reset the connection and the peer
//! lose the close frame). A message over the size limit cannot be skipped (the WebSocket
//! library stops reading at it): that connection is closed with `FrameTooLarge` and its socket
//! kept open for the same bounded time, for the peer to read the close.

use std::future::poll_fn;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux::{self, CONTROL_STREAM};
use quibble_protocol::{ClientFrame, ErrorCode, ServerFrame, codec};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::Instrument;

use crate::admission::{RealtimePermit, Slot};
use crate::chat::connection::{self, ConnIo};
use crate::chat::liveness::Liveness;
use crate::chat::outbound::{Batch, Item, Outbound};
use crate::chat::stream::{
    CloseReason, Inbound, InboundBudget, InboundTx, NewStreamTx, StreamIo, decode_error_code,
    encode_frame, new_streams,
};
use crate::client_addr::ClientIp;
use crate::handshake::{self, HandshakeTransport, Outcome};
use crate::http::error::ApiError;
use crate::state::AppState;

/// This transport's handshakes.
const WS: HandshakeTransport = HandshakeTransport::WebSocket;

/// A socket that accepts nothing for this long is closed as a slow consumer.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Room for the stream id in front of a frame.
const ENVELOPE_SLACK: usize = 16;
/// Bytes of frames the writer takes from the queue per socket write.
const WRITE_BATCH: usize = 64 * 1024;
/// How long a closing connection waits for the peer to take what is queued and the close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How long the socket then stays open, reading and discarding, for the peer to read the
/// close frame and answer it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);
/// The WebSocket library's read buffer per connection, and the most one socket read takes: it
/// is allocated, zeroed and kept for the connection's life (the default 128 KiB made an idle
/// connection cost ~150 KB of RSS); a larger message makes it grow to that message's size, and
/// it stays so. Client frames are small and few (a `Send` of the largest body takes 16 reads;
/// the send rate limit allows a few a second): the syscalls cost nothing next to a message's
/// fsync, and 256 B less per idle connection is 3 % of its budget.
const READ_BUFFER: usize = 256;
/// Bytes the library gathers before a socket write (a flush writes at once): big enough to
/// batch a burst of small frames into few writes, small because its buffer keeps the largest
/// size it reached.
const WRITE_BUFFER: usize = 8 * 1024;

/// `GET /ws`: upgrade, unless the server is full. (A banned address never gets here: the
/// router refuses it first, `http::address_ban`.)
pub async fn upgrade(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    Extension(slot): Extension<Slot>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            handshake::failed(WS, Outcome::BadRequest, &client, &rejection.body_text());
            return rejection.into_response();
        }
    };
    let permit = match state.admission.realtime(&slot, client, "websocket") {
        Ok(permit) => permit,
        Err(refusal) => {
            handshake::failed(WS, Outcome::Refused, &client, &refusal);
            return ApiError::from(refusal).into_response();
        }
    };
    let span = connection::span("websocket", client);
    ws.max_message_size(MAX_FRAME_LEN + ENVELOPE_SLACK)
        .max_frame_size(MAX_FRAME_LEN + ENVELOPE_SLACK)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            // A task of its own, sized for the connection: the upgrade's task is sized for its
            // largest step (building the WebSocket, ~0.4 KB inline), and a connection served in
            // it would hold that for its whole life.
            tokio::spawn(handle(state, socket, client, permit).instrument(span));
            std::future::ready(())
        })
}

/// Set the connection up and return its future. Not `async`: the setup's values (the socket
/// itself, ~370 bytes) would otherwise stay in the future for the connection's whole life.
fn handle(
    state: AppState,
    socket: WebSocket,
    client: IpAddr,
    permit: RealtimePermit,
) -> impl Future<Output = ()> + Send {
    let (sink, source) = socket.split();
    let outbound = Outbound::multiplexed();
    let liveness = Arc::new(Liveness::default());
    let budget = InboundBudget::default();
    let (control, control_inbound) = StreamIo::new(outbound.open(CONTROL_STREAM), &budget);
    let (streams_tx, streams_rx) = new_streams();
    let demux = Demux {
        streams: vec![(CONTROL_STREAM, control_inbound)],
        highest: CONTROL_STREAM,
        new_streams: streams_tx,
        outbound: outbound.clone(),
        budget,
        liveness: liveness.clone(),
        max_streams: state.limits.max_streams_per_connection,
    };
    let io = ConnIo {
        control,
        streams: streams_rx,
        client,
        transport: "websocket",
        liveness,
        admission: permit.clone(),
    };
    Connection {
        serve: Some(Box::pin(connection::serve(state, io))),
        writer: Writer::Idle(sink),
        reader: Reader::Reading(demux, source),
        outbound,
        closing: None,
        permit: Some(permit),
    }
}

/// The socket's two halves.
type Sink = SplitSink<WebSocket, Message>;
type Source = SplitStream<WebSocket>;

/// A connection's task: serve it while reading and writing the socket; then close: the writer
/// sends what is queued and the close frame (for at most [`CLOSE_WAIT`]) while the reader goes
/// on reading, and the reader lingers up to [`CLOSE_LINGER`] more (see the module's doc).
///
/// All of it runs in the connection's one task (a task per part would cost an allocation with
/// a header each, rounded up to 128 bytes), as a plain state polled in place rather than an
/// `async fn` (whose future would hold its arguments and its locals side by side). The engine
/// is boxed (its future is large until `Welcome`); the writer and the reader keep their rare
/// steps (a batch being written, a frame being handed over) in a box of their own that owns
/// what the step needs while it runs, so that waiting costs only what waiting needs.
struct Connection<S> {
    /// The engine, `connection::serve`; `None` once it has ended.
    serve: Option<Pin<Box<S>>>,
    writer: Writer,
    reader: Reader,
    outbound: Outbound,
    /// Once the engine has ended: the close (boxed: its timers would otherwise be part of the
    /// task for its whole life).
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// The connection's admission, given back once it is closed.
    permit: Option<RealtimePermit>,
}

impl<S> Future for Connection<S>
where
    S: Future<Output = CloseReason>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(serve) = this.serve.as_mut() {
            let Poll::Ready(reason) = serve.as_mut().poll(cx) else {
                let _ = this.writer.poll(&this.outbound, cx);
                let _ = this.reader.poll(cx);
                return Poll::Pending;
            };
            this.serve = None;
            let writer = std::mem::replace(&mut this.writer, Writer::Done);
            let reader = std::mem::replace(&mut this.reader, Reader::Done);
            this.closing = Some(Box::pin(close(
                writer,
                reader,
                this.outbound.clone(),
                reason,
            )));
        }
        if let Some(closing) = this.closing.as_mut() {
            if closing.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.closing = None;
            this.permit = None;
        }
        Poll::Ready(())
    }
}

/// The end of a [`Connection`]: the close, as the module's doc describes it.
async fn close(mut writer: Writer, mut reader: Reader, outbound: Outbound, reason: CloseReason) {
    // The first reason given stays: a fault the reader found (an oversized or malformed
    // message), or moderation's, may have closed the queue before the engine ended. The
    // engine counted the reason it returned; one it did not see is counted here.
    let closing = outbound.close(reason.clone());
    if closing != reason
        && let Some(code) = closing.code
    {
        crate::metrics::connection_error(code);
    }
    let drained = sleep_until(Instant::now() + CLOSE_WAIT);
    tokio::pin!(drained);
    poll_fn(|cx| {
        if writer.poll(&outbound, cx).is_ready() {
            return Poll::Ready(());
        }
        let _ = reader.poll(cx);
        drained.as_mut().poll(cx)
    })
    .await;
    let _ = timeout(CLOSE_LINGER, poll_fn(|cx| reader.poll(cx))).await;
}

/// The socket's one writer: writes what the queue holds, everything taken at once before one
/// flush; stops after the close frame, or when the peer takes nothing for [`WRITE_STALL`].
enum Writer {
    /// Waiting for the queue to give it something.
    Idle(Sink),
    /// Writing a batch (true once written), the write owning the sink until it is done; then
    /// the batch's bytes are released.
    Writing(Writing<(Sink, bool)>, usize),
    /// Sending the close frame.
    Closing(Writing<()>),
    /// Stopped.
    Done,
}

/// A boxed step of the writer.
type Writing<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Writer {
    /// Ready once the writer has stopped.
    fn poll(&mut self, outbound: &Outbound, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self {
                Writer::Idle(_) => {
                    let Poll::Ready(batch) = outbound.poll_batch(cx, WRITE_BATCH) else {
                        return Poll::Pending;
                    };
                    if let Writer::Idle(sink) = std::mem::replace(self, Writer::Done) {
                        *self = Writer::start(sink, batch);
                    }
                }
                Writer::Writing(writing, bytes) => {
                    let Poll::Ready((sink, written)) = writing.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    outbound.release(*bytes);
                    if written {
                        *self = Writer::Idle(sink);
                    } else {
                        outbound.fail();
                        *self = Writer::Done;
                    }
                }
                Writer::Closing(closing) => {
                    if closing.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *self = Writer::Done;
                }
                Writer::Done => return Poll::Ready(()),
            }
        }
    }

    /// What the writer does with what the queue gave it.
    fn start(mut sink: Sink, batch: Batch) -> Writer {
        match batch {
            Batch::Items { items, bytes } => Writer::Writing(
                Box::pin(async move {
                    let written = timeout(WRITE_STALL, write_batch(&mut sink, items)).await;
                    (sink, matches!(written, Ok(Ok(()))))
                }),
                bytes,
            ),
            Batch::Close(reason) => {
                let code = reason.code.map_or(1000, ErrorCode::ws_close_code);
                let close = CloseFrame {
                    code,
                    reason: Utf8Bytes::from(truncate(&reason.reason, 120)),
                };
                Writer::Closing(Box::pin(async move {
                    let _ = timeout(WRITE_STALL, async {
                        if sink.send(Message::Close(Some(close))).await.is_err() {
                            answer_close(&mut sink).await;
                        }
                    })
                    .await;
                }))
            }
            Batch::Failed => Writer::Done,
        }
    }
}

/// The socket's reader: reads and routes until the peer leaves; after a connection-level
/// fault (which it closes the queue with) it reads and discards until the peer is gone, then
/// holds the socket until the connection is torn down.
enum Reader {
    /// Reading the next message.
    Reading(Demux, Source),
    /// Handing a frame to its stream (which may wait for the budget, or for the stream's
    /// handler): the hand-off owns the reader's state until it is done.
    Routing(Pin<Box<dyn Future<Output = (Demux, Source)> + Send>>),
    /// After a fault: reading and discarding.
    Discarding(Source),
    /// The library stops at an oversized message: the socket is held until torn down.
    Holding { _socket: Source },
    /// The peer is gone.
    Done,
}

impl Reader {
    /// Ready once the peer is gone (never after a fault: the socket is held).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self {
                Reader::Reading(demux, source) => {
                    let Poll::Ready(message) = source.poll_next_unpin(cx) else {
                        return Poll::Pending;
                    };
                    match demux.take(message) {
                        Step::Next => {}
                        Step::End => *self = Reader::Done,
                        step => {
                            if let Reader::Reading(demux, source) =
                                std::mem::replace(self, Reader::Done)
                            {
                                *self = Reader::after(demux, source, step);
                            }
                        }
                    }
                }
                Reader::Routing(routing) => {
                    let Poll::Ready((demux, source)) = routing.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    *self = Reader::Reading(demux, source);
                }
                Reader::Discarding(source) => match source.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(_) => {
                        if let Reader::Discarding(source) = std::mem::replace(self, Reader::Done) {
                            *self = Reader::Holding { _socket: source };
                        }
                    }
                },
                Reader::Holding { .. } => return Poll::Pending,
                Reader::Done => return Poll::Ready(()),
            }
        }
    }

    /// The reader after a message to route, or a fault.
    fn after(mut demux: Demux, source: Source, step: Step) -> Reader {
        match step {
            Step::Route(id, inbound, wire_len) => Reader::Routing(Box::pin(async move {
                demux.route(id, inbound, wire_len).await;
                (demux, source)
            })),
            Step::Fault(reason) => {
                demux.outbound.close(reason);
                Reader::Discarding(source)
            }
            Step::Next => Reader::Reading(demux, source),
            Step::End => Reader::Done,
        }
    }
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
    /// Open streams (the control stream included), searched in order: a connection has a few
    /// (at most `max_streams`), and a vector grown by one costs less than a hash map.
    streams: Vec<(u64, InboundTx)>,
    /// The highest stream id opened so far.
    highest: u64,
    new_streams: NewStreamTx,
    outbound: Outbound,
    budget: InboundBudget,
    liveness: Arc<Liveness>,
    max_streams: usize,
}

impl Demux {
    /// What to do with the next message read (`None`: the peer is gone).
    fn take(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        let Some(message) = message else {
            return Step::End;
        };
        self.liveness.touch();
        let data = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(_)) => {
                return Step::Fault(CloseReason::error(
                    ErrorCode::BadFrame,
                    "text messages are not part of the protocol",
                ));
            }
            Ok(Message::Close(_)) => return Step::End,
            Ok(Message::Ping(_) | Message::Pong(_)) => return Step::Next,
            Err(e) => {
                return too_large(&e).map_or(Step::End, Step::Fault);
            }
        };
        let (id, frame) = match mux::split(&data) {
            Ok(parts) => parts,
            Err(e) => return Step::Fault(CloseReason::error(ErrorCode::BadFrame, e.to_string())),
        };
        if frame.is_empty() {
            // The peer finished this stream: its handler sees the end of input.
            self.forget(id);
            return Step::Next;
        }
        let inbound = match codec::decode_exact::<ClientFrame>(frame, MAX_FRAME_LEN) {
            Ok(frame) => Inbound::Frame(frame),
            Err(e) => Inbound::Invalid(e),
        };
        Step::Route(id, inbound, data.len())
    }

    async fn route(&mut self, id: u64, inbound: Inbound, wire_len: usize) {
        if let Some((_, tx)) = self.streams.iter_mut().find(|(open, _)| *open == id) {
            // Its handler ended the stream: the stream is over.
            if let Err(inbound) = tx.send(inbound, wire_len).await {
                self.forget(id);
                self.over(id, inbound);
            }
            return;
        }
        if id <= self.highest {
            self.over(id, inbound);
            return;
        }
        self.highest = id;
        if let Inbound::Invalid(e) = &inbound {
            self.refuse(id, decode_error_code(e), &e.to_string());
            return;
        }
        if self.open_streams() >= self.max_streams {
            // Streams whose handlers ended are over; only open ones count.
            self.streams.retain(|(_, tx)| !tx.is_closed());
            if self.open_streams() >= self.max_streams {
                self.refuse(id, ErrorCode::RateLimited, "too many open streams");
                return;
            }
        }
        let (io, mut tx) = StreamIo::new(self.outbound.open(id), &self.budget);
        if self.new_streams.send(io).await.is_err() || tx.send(inbound, wire_len).await.is_err() {
            return;
        }
        self.streams.reserve_exact(1);
        self.streams.push((id, tx));
    }

    /// Forget stream `id` (its input is over).
    fn forget(&mut self, id: u64) {
        self.streams.retain(|(open, _)| *open != id);
        if self.streams.len() * 2 < self.streams.capacity() {
            self.streams.shrink_to_fit();
        }
    }

    /// Open conversation streams.
    fn open_streams(&self) -> usize {
        let control = self.streams.iter().any(|(id, _)| *id == CONTROL_STREAM);
        self.streams.len() - usize::from(control)
    }

    /// A frame for a stream that is over: refuse a `Join`, drop anything else (it was in
    /// flight when the stream ended).
    fn over(&self, id: u64, inbound: Inbound) {
        if id != CONTROL_STREAM && matches!(inbound, Inbound::Frame(ClientFrame::Join { .. })) {
            self.refuse(
                id,
                ErrorCode::ProtocolViolation,
                &format!("stream id {id} is closed; open a new id"),
            );
        }
    }

    /// Answer a stream with an error and end it.
    fn refuse(&self, id: u64, code: ErrorCode, reason: &str) {
        let error = encode_frame(&ServerFrame::Error {
            code,
            reason: reason.to_owned(),
        });
        self.outbound.open(id).send_last(error);
    }
}

/// What the reader does with a message ([`Demux::take`]).
enum Step {
    /// Hand the frame (its stream id, the frame, its wire size) to its stream.
    Route(u64, Inbound, usize),
    /// Nothing to route: read the next message.
    Next,
    /// A connection-level fault: close with it.
    Fault(CloseReason),
    /// The peer is gone.
    End,
}

/// The close reason for a read error: a message over the size limit; `None` for the peer
/// going away.
fn too_large(e: &axum::Error) -> Option<CloseReason> {
    use std::error::Error as _;
    match e.source()?.downcast_ref::<tungstenite::Error>()? {
        tungstenite::Error::Capacity(capacity) => Some(CloseReason::error(
            ErrorCode::FrameTooLarge,
            capacity.to_string(),
        )),
        _ => None,
    }
}

/// The WebSocket messages for a batch of items, built in one buffer (one allocation per
/// batch, not one per frame) and handed out as slices of it, in order.
fn envelopes(items: Vec<(u64, Item)>) -> impl Iterator<Item = Bytes> {
    let size = items
        .iter()
        .map(|(_, item)| match item {
            Item::Frame(frame) => frame.len() + ENVELOPE_SLACK,
            Item::Finish => ENVELOPE_SLACK,
        })
        .sum();
    let mut buffer = Vec::with_capacity(size);
    let lens: Vec<usize> = items
        .into_iter()
        .map(|(id, item)| match item {
            Item::Frame(frame) => mux::wrap_into(id, &frame, &mut buffer),
            Item::Finish => mux::wrap_into(id, &[], &mut buffer),
        })
        .collect();
    let mut buffer = Bytes::from(buffer);
    lens.into_iter().map(move |len| buffer.split_to(len))
}

/// Write a batch's messages and flush them.
async fn write_batch(sink: &mut Sink, items: Vec<(u64, Item)>) -> Result<(), axum::Error> {
    let mut written = Ok(());
    for message in envelopes(items) {
        written = sink.feed(Message::Binary(message)).await;
        if written.is_err() {
            break;
        }
    }
    if written.is_ok() {
        written = sink.flush().await;
    }
    if written.is_err() {
        answer_close(sink).await;
    }
    written
}

/// After the peer's close frame the library refuses anything more of ours (what the engine
/// still had queued, our own close) but has queued its answer (RFC 6455 §5.5.1): a flush sends
/// it, so the peer sees a clean close rather than an abrupt end. Harmless on a broken socket.
async fn answer_close(sink: &mut Sink) {
    let _ = sink.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection holds its writer and reader in its task: they stay a few words (no
    /// future of their own; a step in progress is boxed).
    #[test]
    fn an_idle_writer_and_reader_are_only_their_state() {
        let writer = std::mem::size_of::<Writer>();
        let reader = std::mem::size_of::<Reader>();
        assert!(writer <= 64, "the writer takes {writer} bytes");
        assert!(reader <= 96, "the reader takes {reader} bytes");
    }

    #[test]
    fn a_batch_becomes_one_message_per_item_in_order() {
        let items = vec![
            (0, Item::Frame(Bytes::from_static(b"\x02ab"))),
            (7, Item::Frame(Bytes::from_static(b"\x01c"))),
            (7, Item::Finish),
            (200, Item::Frame(Bytes::from_static(b"\x01d"))),
        ];
        let got: Vec<Bytes> = envelopes(items).collect();
        let want = [
            mux::wrap(0, b"\x02ab"),
            mux::wrap(7, b"\x01c"),
            mux::finish(7),
            mux::wrap(200, b"\x01d"),
        ];
        assert_eq!(got.len(), want.len());
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(&got[..], &want[..]);
        }
    }
}
