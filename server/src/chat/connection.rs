//! One realtime connection, whatever its transport: authenticate the `Hello` on the control
//! stream, answer pings, watch for silence (anything received counts as a sign of life, see
//! [`Liveness`]), start a task per conversation stream, and say `GoAway` when the server shuts
//! down. A control stream whose queue is full (the peer pings but does not read) ends the
//! connection with `SlowConsumer`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use quibble_protocol::limits::MAX_TOKEN_LEN;
use quibble_protocol::{ClientFrame, ErrorCode, PROTOCOL_VERSION, ServerFrame};
use rand::Rng;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

use crate::admission::RealtimePermit;
use crate::auth::hash_token;
use crate::chat::conversation::{self, ConnCtx};
use crate::chat::liveness::Liveness;
use crate::chat::outbound::SendError;
use crate::chat::stream::{
    CloseReason, Inbound, NewStreamRx, StreamIo, decode_error_code, encode_frame,
};
use crate::state::AppState;
use crate::store::User;
use crate::tls::unix_ms;

/// What a transport hands the engine for one connection.
pub struct ConnIo {
    pub control: StreamIo,
    /// Conversation streams as the peer opens them.
    pub streams: NewStreamRx,
    pub peer: SocketAddr,
    /// `webtransport` or `websocket`, for metrics.
    pub transport: &'static str,
    /// Touched by the transport for everything it receives.
    pub liveness: Arc<Liveness>,
    /// The connection's admission; it leaves the unauthenticated pool once `Hello` is accepted.
    pub admission: RealtimePermit,
}

/// Serve a connection until it ends; the transport then closes it with the returned reason.
///
/// Not `async`, and the handshake boxed: its futures are large, and an `async fn`'s arguments
/// and locals stay part of its future for the connection's whole life (see
/// `bench/README.md`, memory per idle connection). The future returned holds only the box
/// until `Welcome`, then what serving takes.
pub fn serve(state: AppState, io: ConnIo) -> impl Future<Output = CloseReason> + Send {
    let transport = io.transport;
    let handshake = Box::pin(handshake(state, io));
    async move {
        metrics::counter!(crate::metrics::CONNECTIONS, "transport" => transport).increment(1);
        let open = metrics::gauge!(crate::metrics::CONNECTIONS_OPEN, "transport" => transport);
        open.increment(1.0);
        let reason = match handshake.await {
            Ok(ready) => serve_ready(ready).await,
            Err(close) => close,
        };
        open.decrement(1.0);
        if let Some(code) = reason.code {
            crate::metrics::error(crate::metrics::CONNECTION_ERRORS, code);
        }
        reason
    }
}

/// An authenticated connection, welcomed.
struct Ready {
    ctx: Arc<ConnCtx>,
    control: StreamIo,
    streams: NewStreamRx,
    liveness: Arc<Liveness>,
}

/// `Hello` → `Welcome`.
async fn handshake(state: AppState, io: ConnIo) -> Result<Ready, CloseReason> {
    let ConnIo {
        mut control,
        streams,
        peer,
        liveness,
        admission,
        ..
    } = io;
    let user = match hello(&state, &mut control).await {
        Ok(user) => {
            admission.authenticated();
            user
        }
        Err(close) => {
            tracing::debug!(%peer, reason = %close.reason, "refused connection");
            if let Some(code) = close.code {
                send_error(&control, code, &close.reason);
            }
            return Err(close);
        }
    };
    let welcome = ServerFrame::Welcome {
        version: PROTOCOL_VERSION,
        user: user.id,
        username: user.username.clone(),
        epoch: state.store.epoch(),
        heartbeat_ms: state.limits.heartbeat.as_millis() as u32,
    };
    if control.outbound.send(encode_frame(&welcome)).await.is_err() {
        return Err(CloseReason::normal("peer left"));
    }
    tracing::debug!(%peer, user = %user.username, "connection ready");
    Ok(Ready {
        ctx: Arc::new(ConnCtx { state, user }),
        control,
        streams,
        liveness,
    })
}

/// The connection's life after `Welcome`: pings, new streams, silence, shutdown.
async fn serve_ready(mut ready: Ready) -> CloseReason {
    let state = &ready.ctx.state;
    let heartbeat = state.limits.heartbeat;
    let mut tasks = JoinSet::new();
    let silence = heartbeat * 3;
    let mut deadline = ready.liveness.last_seen().max(Instant::now()) + silence;
    loop {
        tokio::select! {
            frame = ready.control.inbound.recv() => match frame {
                None => return CloseReason::normal("peer closed the control stream"),
                Some(Inbound::Frame(ClientFrame::Ping { nonce })) => {
                    match ready.control.outbound.try_send(encode_frame(&ServerFrame::Pong { nonce })) {
                        Ok(()) => {}
                        Err(SendError::Full) => {
                            return CloseReason::error(
                                ErrorCode::SlowConsumer,
                                "the control stream is not read fast enough",
                            );
                        }
                        Err(SendError::Closed) => return CloseReason::normal("peer left"),
                    }
                }
                Some(Inbound::Frame(other)) => {
                    let reason = format!("{} is not allowed on the control stream", frame_name(&other));
                    send_error(&ready.control, ErrorCode::ProtocolViolation, &reason);
                    return CloseReason::error(ErrorCode::ProtocolViolation, reason);
                }
                Some(Inbound::Invalid(e)) => {
                    let code = decode_error_code(&e);
                    send_error(&ready.control, code, &e.to_string());
                    return CloseReason::error(code, e.to_string());
                }
            },
            stream = ready.streams.recv() => match stream {
                Some(stream) => {
                    tasks.spawn(conversation::serve(ready.ctx.clone(), stream));
                }
                None => return CloseReason::normal("transport closed"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            // The writer gave up: the peer took nothing for too long, or is gone.
            () = ready.control.outbound.closed() => {
                return CloseReason::error(ErrorCode::SlowConsumer, "the peer does not read");
            }
            _ = sleep_until(deadline) => {
                let heard = ready.liveness.last_seen() + silence;
                if heard <= Instant::now() {
                    return CloseReason::normal("no heartbeat");
                }
                deadline = heard;
            }
            _ = state.shutting_down() => {
                let go_away = ServerFrame::GoAway {
                    reconnect_after_ms: rand::rng().random_range(500..5_000),
                    reason: "server shutting down".into(),
                };
                ready.control.outbound.send_last(encode_frame(&go_away));
                return CloseReason::error(ErrorCode::ShuttingDown, "server shutting down");
            }
        }
    }
}

/// Wait for `Hello` and check its version and token.
async fn hello(state: &AppState, control: &mut StreamIo) -> Result<User, CloseReason> {
    let first = timeout(state.limits.hello_timeout, control.inbound.recv())
        .await
        .map_err(|_| CloseReason::error(ErrorCode::ProtocolViolation, "no Hello in time"))?;
    let (version, token) = match first {
        None => return Err(CloseReason::normal("peer left before Hello")),
        Some(Inbound::Invalid(e)) => {
            return Err(CloseReason::error(decode_error_code(&e), e.to_string()));
        }
        Some(Inbound::Frame(ClientFrame::Hello { version, token })) => (version, token),
        Some(Inbound::Frame(other)) => {
            return Err(CloseReason::error(
                ErrorCode::ProtocolViolation,
                format!("expected Hello, got {}", frame_name(&other)),
            ));
        }
    };
    if version != PROTOCOL_VERSION {
        return Err(CloseReason::error(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported (this server speaks {PROTOCOL_VERSION})"
            ),
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(CloseReason::error(ErrorCode::Unauthorized, "invalid token"));
    }
    let store = state.store.clone();
    let hash = hash_token(&token);
    let now = unix_ms(SystemTime::now());
    match store.session_user(&hash, now).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(CloseReason::error(
            ErrorCode::Unauthorized,
            "invalid or expired token",
        )),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            Err(CloseReason::error(
                ErrorCode::Internal,
                "cannot check the token now",
            ))
        }
    }
}

fn send_error(stream: &StreamIo, code: ErrorCode, reason: &str) {
    let frame = ServerFrame::Error {
        code,
        reason: reason.to_owned(),
    };
    stream.outbound.send_last(encode_frame(&frame));
}

/// A frame's name, for error messages.
pub fn frame_name(frame: &ClientFrame) -> &'static str {
    match frame {
        ClientFrame::Hello { .. } => "Hello",
        ClientFrame::Ping { .. } => "Ping",
        ClientFrame::Join { .. } => "Join",
        ClientFrame::Send { .. } => "Send",
        ClientFrame::History { .. } => "History",
        ClientFrame::Leave => "Leave",
    }
}
