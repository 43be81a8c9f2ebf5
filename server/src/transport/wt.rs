//! WebTransport (wtransport on quinn) on UDP: the QUIC transport tuning, the accept loop, and
//! the per-stream pumps between client-opened bidirectional streams and the engine. The first
//! stream a client opens is its control stream; every later one is a conversation stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quibble_protocol::{ClientFrame, Decoder, ErrorCode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::quinn::{TransportConfig, VarInt as QuinnVarInt};
use wtransport::{Endpoint, Identity, RecvStream, SendStream, ServerConfig, VarInt};

use crate::chat::connection::{self, ConnIo};
use crate::chat::stream::{Inbound, StreamPorts, stream_pair};
use crate::state::AppState;

/// The path clients connect to.
pub const PATH: &str = "/wt";
/// A stream whose peer reads nothing for this long is reset as a slow consumer.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Read buffer per stream, resident for the stream's life (16 KiB made two thirds of an idle
/// session's cost); a QUIC packet carries about 1.2 KB.
const READ_CHUNK: usize = 2 * 1024;

/// QUIC settings, chosen for chat: many small frames on a handful of streams per connection.
fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    // A connection silent for 30 s is dead; clients ping every 10 s anyway.
    t.max_idle_timeout(Some(QuinnVarInt::from_u32(30_000).into()));
    // Keep NAT bindings alive from our side too.
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    // quinn keeps a table entry for every stream the peer may open, from the start: the
    // limits are memory per idle session (258 bidirectional and the default 100
    // unidirectional streams cost ~22 KB). One control stream plus up to 63 joined
    // conversations at once; more wait for a stream to end.
    t.max_concurrent_bidi_streams(QuinnVarInt::from_u32(64));
    // HTTP/3 needs three from the peer (control, QPACK encoder and decoder); our clients
    // open no others.
    t.max_concurrent_uni_streams(QuinnVarInt::from_u32(8));
    // Per-stream window fits a full history page frame; the connection window bounds memory.
    t.stream_receive_window(QuinnVarInt::from_u32(512 * 1024));
    t.receive_window(QuinnVarInt::from_u32(4 * 1024 * 1024));
    t.send_window(8 * 1024 * 1024);
    t
}

/// A server config for `socket_addr` with `identity`.
pub fn server_config(addr: SocketAddr, identity: Identity) -> ServerConfig {
    ServerConfig::builder()
        .with_bind_address(addr)
        .with_custom_transport(identity, transport_config())
        .build()
}

/// An endpoint on an already bound UDP socket.
pub fn endpoint(
    socket: std::net::UdpSocket,
    identity: Identity,
) -> std::io::Result<Endpoint<Server>> {
    let config = ServerConfig::builder()
        .with_bind_socket(socket)
        .with_custom_transport(identity, transport_config())
        .build();
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
                tokio::spawn(handle(state.clone(), incoming));
            }
        }
    }
}

async fn handle(state: AppState, incoming: IncomingSession) {
    let request = match incoming.await {
        Ok(request) => request,
        Err(e) => {
            tracing::info!("WebTransport handshake failed: {e}");
            return;
        }
    };
    let peer = request.remote_address();
    if request.path() != PATH {
        request.not_found().await;
        return;
    }
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        tracing::warn!(%peer, "connection limit reached; refusing WebTransport session");
        metrics::counter!(crate::metrics::CONNECTIONS_REFUSED, "transport" => "webtransport")
            .increment(1);
        request.too_many_requests().await;
        return;
    };
    let conn = match request.accept().await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::info!(%peer, "WebTransport session failed: {e}");
            return;
        }
    };
    let (send, recv) = match timeout(state.limits.hello_timeout, conn.accept_bi()).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(_)) => return,
        Err(_) => {
            close(
                &conn,
                Some(ErrorCode::ProtocolViolation),
                "no control stream in time",
            );
            return;
        }
    };
    let (control, ports) = stream_pair();
    let control_writer = pump(send, recv, ports);
    let (streams_tx, streams_rx) = mpsc::channel(8);
    let acceptor_conn = conn.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((send, recv)) = acceptor_conn.accept_bi().await {
            let (io, ports) = stream_pair();
            pump(send, recv, ports);
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
            peer,
            transport: "webtransport",
        },
    )
    .await;
    acceptor.abort();
    // Let the last control frames (an error, GoAway) reach the peer before closing.
    let _ = timeout(Duration::from_secs(1), control_writer).await;
    close(&conn, reason.code, &reason.reason);
    drop(permit);
}

fn close(conn: &wtransport::Connection, code: Option<ErrorCode>, reason: &str) {
    let code = code.map_or(0, ErrorCode::as_u32);
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

/// Start the reader and writer tasks of one stream; returns the writer's handle.
fn pump(send: SendStream, recv: RecvStream, ports: StreamPorts) -> JoinHandle<()> {
    let StreamPorts { inbound, outbound } = ports;
    tokio::spawn(read_frames(recv, inbound));
    tokio::spawn(write_frames(send, outbound))
}

async fn read_frames(mut recv: RecvStream, inbound: mpsc::Sender<Inbound>) {
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match recv.read(&mut buf).await {
            Ok(Some(n)) => n,
            Ok(None) | Err(_) => return,
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame::<ClientFrame>() {
                Ok(Some(frame)) => {
                    if inbound.send(Inbound::Frame(frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = inbound.send(Inbound::Invalid(e)).await;
                    recv.stop(VarInt::from_u32(ErrorCode::BadFrame.as_u32()));
                    return;
                }
            }
        }
    }
}

async fn write_frames(mut send: SendStream, mut outbound: mpsc::Receiver<bytes::Bytes>) {
    while let Some(frame) = outbound.recv().await {
        match timeout(WRITE_STALL, send.write_all(&frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                let _ = send.reset(VarInt::from_u32(ErrorCode::SlowConsumer.as_u32()));
                return;
            }
        }
    }
    let _ = timeout(WRITE_STALL, send.finish()).await;
}
