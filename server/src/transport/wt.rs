//! WebTransport (wtransport on quinn) on UDP: the accept loop, and the per-stream readers and
//! writers between client-opened bidirectional streams and the engine (the QUIC settings are
//! [`super::quic_transport`]'s, with the stream credit raised here as streams are accepted).
//! The first stream a client opens is its control stream; every later one is a conversation
//! stream.
//!
//! The handshake (QUIC, HTTP/3 SETTINGS, the session request) has `tls_handshake_timeout`:
//! besides peers that stop halfway, wtransport 0.7 now and then misreads a peer's SETTINGS
//! frame and then waits for bytes that never come (the race the client's `transport::wt`
//! describes; clients try again).
//!
//! Writing: each QUIC stream has its own flow control, so one writer for the whole session
//! would let one stalled stream block the others. Each stream therefore has its own writer
//! task, taking only its stream's frames from the session's byte-bounded queue
//! ([`Outbound::per_stream`]): the bytes queued stay capped per stream and per session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quibble_protocol::{ClientFrame, Decoder, ErrorCode};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::Instrument;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::error::ConnectionError;
use wtransport::quinn::VarInt as QuinnVarInt;
use wtransport::tls::rustls::server::ResolvesServerCert;
use wtransport::{Endpoint, RecvStream, SendStream, ServerConfig, VarInt};

use super::quic_keys::QuicKeys;
use super::quic_transport::{self, StreamCredit};
use super::{quic_tls, udp_buffers};
use crate::admission::RealtimePermit;
use crate::chat::connection::{self, ConnIo};
use crate::chat::liveness::Liveness;
use crate::chat::outbound::{Outbound, StreamRef};
use crate::chat::stream::{Inbound, InboundBudget, InboundTx, StreamIo, new_streams};
use crate::handshake::{self, HandshakeTransport, Outcome};
use crate::state::AppState;

/// This transport's handshakes.
const WT: HandshakeTransport = HandshakeTransport::WebTransport;

/// The path clients connect to.
pub const PATH: &str = "/wt";
/// A stream whose peer reads nothing for this long is reset as a slow consumer.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// The most one read takes from a stream. Reads take quinn's received chunks as they are
/// (`read_chunk`, no copy), so a stream keeps no read buffer of its own: a 16 KiB one made two
/// thirds of an idle session's cost.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes of frames a stream's writer takes from the queue at once.
const WRITE_BATCH: usize = 64 * 1024;

/// An endpoint on an already bound UDP socket presenting what `certs` resolves (the server's
/// current certificate), with keys that outlive the process (see [`super::quic_keys`]).
pub fn endpoint(
    socket: std::net::UdpSocket,
    certs: Arc<dyn ResolvesServerCert>,
    keys: &QuicKeys,
    max_streams: usize,
) -> std::io::Result<Endpoint<Server>> {
    udp_buffers::enlarge(&socket);
    let tls = quic_tls::config(certs).map_err(std::io::Error::other)?;
    let mut config = ServerConfig::builder()
        .with_bind_socket(socket)
        .with_custom_tls_and_transport(tls, quic_transport::config(max_streams))
        .build();
    keys.apply(config.quic_endpoint_config_mut());
    Endpoint::server(config)
}

/// Accept sessions until shutdown.
pub async fn accept_loop(state: AppState, endpoint: Arc<Endpoint<Server>>) {
    loop {
        tokio::select! {
            // Shutdown first: `accept` must never be polled once the endpoint is closed.
            biased;
            _ = state.shutting_down() => return,
            incoming = endpoint.accept() => {
                let span = crate::chat::connection::span(
                    "webtransport",
                    incoming.remote_address().ip().to_canonical(),
                );
                tokio::spawn(handle(state.clone(), incoming).instrument(span));
            }
        }
    }
}

/// Serve one incoming session. Not `async`, and the handshake boxed: its futures are large,
/// and would otherwise stay part of the session's task for its whole life.
fn handle(state: AppState, incoming: IncomingSession) -> impl Future<Output = ()> + Send {
    let accepting = Box::pin(accept(state, incoming));
    async move {
        if let Some(accepted) = accepting.await {
            serve(accepted).await;
        }
    }
}

/// A session accepted, with its control stream.
struct Accepted {
    state: AppState,
    conn: wtransport::Connection,
    peer: SocketAddr,
    permit: RealtimePermit,
    control: (SendStream, RecvStream),
}

/// The handshake, admission and the control stream; `None` if the session did not get that
/// far (it was answered or closed).
async fn accept(state: AppState, incoming: IncomingSession) -> Option<Accepted> {
    let deadline = state.limits.tls_handshake_timeout;
    let peer = incoming.remote_address().ip().to_canonical();
    let Ok(session) = timeout(deadline, session(&state, incoming)).await else {
        handshake::failed(
            WT,
            Outcome::TimedOut,
            &peer,
            &format_args!("QUIC handshake and session request not done within {deadline:?}"),
        );
        return None;
    };
    let (conn, peer, permit) = session?;
    let control = match timeout(state.limits.hello_timeout, conn.accept_bi()).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            handshake::failed(WT, Outcome::PeerLeft, &peer, &e);
            return None;
        }
        Err(_) => {
            handshake::failed(WT, Outcome::TimedOut, &peer, &"no control stream in time");
            close(
                &conn,
                Some(ErrorCode::ProtocolViolation),
                "no control stream in time",
            );
            return None;
        }
    };
    Some(Accepted {
        state,
        conn,
        peer,
        permit,
        control,
    })
}

/// The QUIC and HTTP/3 handshake and the session request, admitted and accepted. Bounded by
/// the caller: a peer that stops halfway (or whose SETTINGS wtransport misread, see the
/// client's `transport::wt`) would otherwise hold it until its keep-alives stop.
async fn session(
    state: &AppState,
    incoming: IncomingSession,
) -> Option<(wtransport::Connection, SocketAddr, RealtimePermit)> {
    let addr = incoming.remote_address();
    let request = match incoming.await {
        Ok(request) => request,
        Err(e) => {
            let outcome = match e {
                // The peer or its network gave up: not a fault of the handshake.
                ConnectionError::ApplicationClosed(_)
                | ConnectionError::TimedOut
                | ConnectionError::LocallyClosed => Outcome::PeerLeft,
                _ => Outcome::TlsFailed,
            };
            handshake::failed(WT, outcome, &addr.ip(), &format_args!("QUIC: {e}"));
            return None;
        }
    };
    let peer = request.remote_address();
    if request.path() != PATH {
        handshake::failed(
            WT,
            Outcome::BadRequest,
            &peer.ip(),
            &format_args!(
                "no session at {:?} (sessions are at {PATH})",
                request.path()
            ),
        );
        request.not_found().await;
        return None;
    }
    // QUIC comes to the server directly: the UDP peer is the client (`client_addr`).
    if let Some(message) = state.address_ban(peer.ip()) {
        handshake::failed(WT, Outcome::Banned, &peer.ip(), &message);
        request.forbidden().await;
        return None;
    }
    let permit = match state.admission.admit_realtime(peer.ip(), "webtransport") {
        Ok(permit) => permit,
        Err(refusal) => {
            handshake::failed(WT, Outcome::Refused, &peer.ip(), &refusal);
            request.too_many_requests().await;
            return None;
        }
    };
    match request.accept().await {
        Ok(conn) => Some((conn, peer, permit)),
        Err(e) => {
            handshake::failed(WT, Outcome::PeerLeft, &peer.ip(), &e);
            None
        }
    }
}

/// Serve an accepted session until the engine ends it, then close it.
async fn serve(accepted: Accepted) {
    let Accepted {
        state,
        conn,
        peer,
        permit,
        control: (send, recv),
    } = accepted;
    let outbound = Outbound::per_stream();
    let budget = InboundBudget::default();
    let liveness = Arc::new(Liveness::default());
    let mut next_id = 0;
    let session = Session {
        outbound: outbound.clone(),
        budget,
        liveness: liveness.clone(),
    };
    let (control, control_writer) = session.pump(send, recv, next_id);
    let (mut streams_tx, streams_rx) = new_streams();
    let acceptor_conn = conn.clone();
    let mut credit = StreamCredit::new(state.limits.max_streams_per_connection);
    // The control stream is the first.
    credit.accepted();
    let acceptor = tokio::spawn(async move {
        while let Ok((send, recv)) = acceptor_conn.accept_bi().await {
            next_id += 1;
            if let Some(limit) = credit.accepted() {
                acceptor_conn
                    .quic_connection()
                    .set_max_concurrent_bi_streams(QuinnVarInt::from_u32(limit));
            }
            let (io, _) = session.pump(send, recv, next_id);
            if streams_tx.send(io).await.is_err() {
                return;
            }
        }
    });
    let reason = connection::serve(
        state,
        ConnIo {
            control,
            streams: streams_rx,
            client: peer.ip().to_canonical(),
            transport: "webtransport",
            liveness,
            admission: permit.clone(),
        },
    )
    .await;
    acceptor.abort();
    let reason = outbound.close(reason);
    // Let the last control frames (an error, GoAway) reach the peer before closing: the
    // writer finishes the stream once the peer's QUIC stack acknowledged them; then the peer
    // gets a moment to read them and end the session itself, since closing the connection
    // at once makes a browser drop what its page has not read yet (a ban's `Error` was lost
    // that way, and the page reconnected instead of showing why).
    let _ = timeout(Duration::from_secs(1), control_writer).await;
    let _ = timeout(CLOSE_GRACE, conn.closed()).await;
    close(&conn, reason.code, &reason.reason);
    drop(permit);
}

/// How long a session whose last control frames were delivered stays open for the peer to
/// read them and close it (see [`serve_session`]'s end).
const CLOSE_GRACE: Duration = Duration::from_millis(400);

fn close(conn: &wtransport::Connection, code: Option<ErrorCode>, reason: &str) {
    let code = code.map_or(0, ErrorCode::as_u32);
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// What every stream of a session shares.
struct Session {
    outbound: Outbound,
    budget: InboundBudget,
    liveness: Arc<Liveness>,
}

impl Session {
    /// Open stream `id` in the session's queue and start its reader and writer tasks;
    /// returns the engine's end and the writer's handle.
    fn pump(&self, send: SendStream, recv: RecvStream, id: u64) -> (StreamIo, JoinHandle<()>) {
        let tx = self.outbound.open(id);
        let stream = tx.stream();
        let (io, inbound) = StreamIo::new(tx, &self.budget);
        tokio::spawn(read_frames(recv, inbound, self.liveness.clone()));
        let writer = tokio::spawn(write_frames(send, self.outbound.clone(), stream));
        (io, writer)
    }
}

async fn read_frames(mut recv: RecvStream, mut inbound: InboundTx, liveness: Arc<Liveness>) {
    let mut decoder = Decoder::new();
    loop {
        let chunk = match recv.quic_stream_mut().read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) | Err(_) => return,
        };
        liveness.touch();
        decoder.push(&chunk);
        loop {
            let buffered = decoder.buffered();
            match decoder.next_frame::<ClientFrame>() {
                Ok(Some(frame)) => {
                    let wire_len = buffered - decoder.buffered();
                    if inbound.send(Inbound::Frame(frame), wire_len).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = inbound.send(Inbound::Invalid(e), 1).await;
                    recv.stop(VarInt::from_u32(ErrorCode::BadFrame.as_u32()));
                    return;
                }
            }
        }
    }
}

/// Write the stream's queued frames until it is finished, then finish the QUIC stream. A
/// peer that takes nothing for [`WRITE_STALL`] gets the stream reset with `SlowConsumer`.
///
/// Each batch goes to quinn as the queued `Bytes` themselves (`write_all_chunks`): a
/// fanned-out frame is not copied per recipient, and the connection's lock is taken once per
/// batch rather than once per frame.
async fn write_frames(mut send: SendStream, outbound: Outbound, stream: StreamRef) {
    while let Some((mut frames, bytes)) = outbound.next_for(&stream, WRITE_BATCH).await {
        let written = timeout(
            WRITE_STALL,
            send.quic_stream_mut().write_all_chunks(&mut frames),
        )
        .await;
        outbound.release(bytes);
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return outbound.end_stream(&stream),
            Err(_) => {
                crate::metrics::slow_stream();
                let _ = send.reset(VarInt::from_u32(ErrorCode::SlowConsumer.as_u32()));
                return outbound.end_stream(&stream);
            }
        }
    }
    let _ = timeout(WRITE_STALL, send.finish()).await;
}
