//! One realtime connection, whatever its transport: authenticate the `Hello` on the control
//! stream, send the user's conversation list and the presence of those they see, then answer
//! pings, take receipts and typing, run the conversation streams, be watched for silence by
//! the heartbeat sweep (anything received counts as a sign of life, see [`Liveness`] and
//! [`crate::chat::heartbeat`]), and say `GoAway` when the
//! server shuts down (the user hub closes every connection in it with [`go_away`], see
//! [`crate::chat::users::Users::go_away_all`]; one that enters the hub after that checks the
//! flag itself). The connection is in the user hub ([`crate::chat::users`]) from `Welcome`
//! to its end, which is what makes its user online, and what moderation ends it through (a
//! ban, a revoked session: [`crate::enforce`]). A control stream whose queue is full (the
//! peer pings but does not read) ends the connection with `SlowConsumer`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{CatchUnwind, Either, Map};
use quibble_protocol::limits::MAX_TOKEN_LEN;
use quibble_protocol::{
    ClientFrame, ConversationId, EVENTS_VERSION, ErrorCode, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    ServerFrame, UserId,
};
use rand::Rng;
use tokio::time::{Instant, timeout};

use crate::access::{self, Refusal};
use crate::admission::RealtimePermit;
use crate::auth::{TokenHash, hash_token};
use crate::chat::conversation::{self, ConnCtx, ConversationStream};
use crate::chat::liveness::Liveness;
use crate::chat::outbound::SendError;
use crate::chat::stream::{
    CloseReason, Inbound, NewStreamRx, StreamIo, decode_error_code, encode_frame,
};
use crate::chat::stream_set::StreamSet;
use crate::chat::users::{Peer, Registration, summary_frame};
use crate::fleet::control::Control;
use crate::handshake::{self, HandshakeTransport, Outcome};
use crate::state::AppState;
use crate::store::{ConversationKind, StoreError, User, WelcomeView};
use crate::tls::unix_ms;

/// What a transport hands the engine for one connection.
pub struct ConnIo {
    pub control: StreamIo,
    /// Conversation streams as the peer opens them.
    pub streams: NewStreamRx,
    /// The client's address ([`crate::client_addr`]).
    pub client: IpAddr,
    /// `webtransport` or `websocket`, for metrics.
    pub transport: &'static str,
    /// Touched by the transport for everything it receives.
    pub liveness: Arc<Liveness>,
    /// The connection's admission; it leaves the unauthenticated pool once `Hello` is accepted.
    pub admission: RealtimePermit,
}

/// The span a connection's tasks run in, so that every line logged about it carries `conn`
/// (an id unique in the process), `transport`, `peer` (the client's address) and, once its
/// `Hello` is accepted, `user`. Made by the transport when the peer arrives.
pub fn span(transport: &'static str, peer: IpAddr) -> tracing::Span {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let conn = NEXT.fetch_add(1, Ordering::Relaxed);
    tracing::info_span!(
        "conn",
        conn,
        transport,
        %peer,
        user = tracing::field::Empty
    )
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
        // The gauge is looked up again at the end rather than its handle kept: a handle is an
        // allocation of its own, held for the connection's whole life.
        metrics::gauge!(crate::metrics::CONNECTIONS_OPEN, "transport" => transport).increment(1.0);
        // One expression: neither the handshake's result nor its parts are kept beside the
        // serving future (a binding of each would stay in this future for its whole life).
        let reason = welcomed(handshake.await).await;
        metrics::gauge!(crate::metrics::CONNECTIONS_OPEN, "transport" => transport).decrement(1.0);
        if let Some(code) = reason.code {
            crate::metrics::connection_error(code);
        }
        reason
    }
}

/// What follows the handshake: serving, if it succeeded. Not `async`, so that nothing of the
/// handshake's result stays in the future beyond what serving keeps.
fn welcomed(
    handshaken: Result<(Ready, Registration), CloseReason>,
) -> Either<std::future::Ready<CloseReason>, Served> {
    match handshaken {
        Ok((ready, registration)) => {
            ready
                .ctx
                .state
                .heartbeats
                .watch(&ready.liveness, ready.control.outbound.closer());
            Either::Right(Served {
                ready,
                registration: Some(registration),
                streams: None,
                request: None,
                streams_done: false,
                leaving: None,
            })
        }
        Err(close) => Either::Left(std::future::ready(close)),
    }
}

/// An authenticated connection, welcomed.
struct Ready {
    ctx: Arc<ConnCtx>,
    control: StreamIo,
    streams: NewStreamRx,
    /// Held so that the heartbeat sweep watches the connection as long as it is served.
    liveness: Arc<Liveness>,
}

/// `Hello` → `Welcome`, then (protocol version 2) the user's conversations and the presence
/// of those they see. The connection is in the user hub from then on, until its
/// [`Registration`] leaves.
async fn handshake(state: AppState, io: ConnIo) -> Result<(Ready, Registration), CloseReason> {
    let ConnIo {
        mut control,
        streams,
        client,
        liveness,
        admission,
        transport,
    } = io;
    let transport = HandshakeTransport::realtime(transport);
    let revocations = state.enforcement.revocations();
    let (user, version, token) = match hello(&state, &mut control).await {
        Ok(hello) => {
            admission.authenticated();
            hello
        }
        Err((outcome, close)) => {
            handshake::failed(transport, outcome, &client, &close.reason);
            if let Some(code) = close.code {
                send_error(&control, code, &close.reason);
            }
            return Err(close);
        }
    };
    // Every line logged about the connection from now on names its user.
    tracing::Span::current().record("user", user.username.as_str());
    let welcome = ServerFrame::Welcome {
        version,
        user: user.id,
        username: user.username.clone(),
        epoch: state.store.epoch(),
        heartbeat_ms: state.limits.heartbeat.as_millis() as u32,
    };
    if control.outbound.send(encode_frame(&welcome)).await.is_err() {
        return Err(CloseReason::normal("peer left"));
    }
    // In the user hub before the snapshot is read, so nothing after it is missed. An older
    // client is there only to count as online: it could not decode the events.
    let events = version >= EVENTS_VERSION;
    let peer = Peer {
        token,
        addr: client,
        version,
    };
    let registration = state
        .users
        .connect(user.id, &user.username, control.outbound.live(), peer);
    // A shutdown from now on finds the connection in the hub; one before is seen here.
    if *state.shutdown.borrow() {
        let (frame, reason) = go_away();
        handshake::failed(transport, Outcome::ShuttingDown, &client, &reason.reason);
        control.outbound.send_last(frame);
        return Err(reason);
    }
    // Bans and revocations from now on find the connection in the hub; those made while it
    // signed in are checked here.
    if let Err(close) = state.recheck(&peer, revocations).await {
        let outcome = match close.code {
            Some(ErrorCode::Banned | ErrorCode::Forbidden) => Outcome::Banned,
            Some(ErrorCode::Internal) => Outcome::Internal,
            _ => Outcome::Unauthorized,
        };
        handshake::failed(transport, outcome, &client, &close.reason);
        send_error(
            &control,
            close.code.unwrap_or(ErrorCode::Internal),
            &close.reason,
        );
        return Err(close);
    }
    introduce(&state, &control, &user, events).await?;
    state.users.go_live(&registration);
    handshake::succeeded(transport);
    tracing::debug!(%client, user = %user.username, "connection ready");
    // The password's hash is not needed past the token check: ~100 bytes per connection less.
    let user = User {
        password_phc: String::new(),
        ..user
    };
    let ready = Ready {
        ctx: Arc::new(ConnCtx {
            state,
            user,
            version,
        }),
        control,
        streams,
        liveness,
    };
    Ok((ready, registration))
}

/// A control-stream request being handled (a receipt, typing); the control stream's next
/// frame is read once it is done, so requests stay in order.
type Request = Pin<Box<dyn Future<Output = Result<(), CloseReason>> + Send>>;

/// What wakes a served connection.
enum Event {
    /// The queue closed: moderation, the shutdown or the heartbeat sweep ended the connection
    /// (its reason), or the writer gave up (the peer took nothing for too long, or is gone).
    Closed,
    /// A conversation stream ended.
    StreamEnded,
    /// The peer opened a stream (`None`: the transport is gone).
    Opened(Option<StreamIo>),
    /// The control request was handled.
    Handled(Result<(), CloseReason>),
    /// A control frame (`None`: the peer closed the control stream).
    Control(Option<Inbound>),
}

/// The connection's life after `Welcome`: pings, requests, conversation streams, until the
/// peer leaves, the queue closes (moderation, shutdown, a peer that does not read) or the
/// heartbeat sweep finds the peer silent ([`crate::chat::heartbeat`]); then, if it was the
/// user's last connection, when they were last seen is recorded.
///
/// Conversation streams run inside this task, each its own boxed future in a [`StreamSet`]
/// (made for the first stream, dropped with the last), polled only when one of them was
/// woken: a task each would cost a task's header and a join-set entry more. Each stream keeps
/// its own inbound channel and its own slot in the byte-bounded queue, so flow control and
/// order per stream are as with a task each; a control request is handled beside them, not
/// in their way. Everything is waited on by polling it in place ([`next_event`]), and the
/// connection itself is a plain state polled in place, not an `async fn`, whose future would
/// hold its locals and its awaits' futures for the connection's whole life.
struct Served {
    ready: Ready,
    /// The connection's place in the user hub; taken when serving ends.
    registration: Option<Registration>,
    streams: Option<StreamSet<ConversationTask>>,
    /// The control request being handled.
    request: Option<Request>,
    /// Set once the transport opens no more streams: what the control stream still holds (a
    /// receipt sent right before closing) is handled before the connection ends.
    streams_done: bool,
    /// Once serving ended: recording when the user was last seen, then the close reason.
    leaving: Option<Pin<Box<dyn Future<Output = CloseReason> + Send>>>,
}

/// A conversation stream as the connection runs it: a panic in it ends it alone, as when each
/// ran in a task of its own ([`stream_ended`]).
type ConversationTask =
    Map<CatchUnwind<AssertUnwindSafe<ConversationStream>>, fn(std::thread::Result<()>)>;

/// Counts a conversation stream that panicked.
fn stream_ended(ended: std::thread::Result<()>) {
    if ended.is_err() {
        tracing::error!("a conversation stream panicked");
        crate::metrics::stream_error(ErrorCode::Internal);
    }
}

impl Future for Served {
    type Output = CloseReason;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let this = self.get_mut();
        if this.leaving.is_none() {
            let Poll::Ready(reason) = this.poll_serving(cx) else {
                return Poll::Pending;
            };
            this.streams = None;
            this.request = None;
            let Some((user, at_ms)) = this.registration.take().and_then(Registration::leave) else {
                return Poll::Ready(reason);
            };
            let state = this.ready.ctx.state.clone();
            state.tell_fleet(Control::Offline { user, at_ms });
            this.leaving = Some(Box::pin(async move {
                record_last_seen(&state, user, at_ms).await;
                reason
            }));
        }
        match this.leaving.as_mut() {
            Some(leaving) => leaving.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Served {
    /// Serve until the connection ends; the reason it ends with.
    fn poll_serving(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        loop {
            let event = match next_event(
                cx,
                &mut self.ready,
                &mut self.streams,
                &mut self.request,
                self.streams_done,
            ) {
                Poll::Ready(event) => event,
                Poll::Pending => return Poll::Pending,
            };
            let ready = &self.ready;
            match event {
                Event::Closed => {
                    return Poll::Ready(ready.control.outbound.closing().unwrap_or_else(|| {
                        CloseReason::error(ErrorCode::SlowConsumer, "the peer does not read")
                    }));
                }
                Event::StreamEnded => {
                    if self.streams.as_ref().is_some_and(StreamSet::is_empty) {
                        self.streams = None;
                    }
                }
                Event::Opened(Some(stream)) => {
                    let stream =
                        AssertUnwindSafe(conversation::serve(Arc::clone(&ready.ctx), stream))
                            .catch_unwind()
                            .map(stream_ended as fn(_));
                    match self.streams.as_mut() {
                        Some(streams) => streams.push(stream),
                        None => self.streams = Some(StreamSet::new(stream)),
                    }
                }
                Event::Opened(None) => self.streams_done = true,
                Event::Handled(done) => {
                    self.request = None;
                    if let Err(close) = done {
                        send_error(
                            &ready.control,
                            close.code.unwrap_or(ErrorCode::Internal),
                            &close.reason,
                        );
                        return Poll::Ready(close);
                    }
                }
                Event::Control(None) => {
                    return Poll::Ready(CloseReason::normal("peer closed the control stream"));
                }
                Event::Control(Some(Inbound::Frame(frame))) => {
                    if let Err(close) =
                        control_frame(&ready.ctx, &ready.control, frame, &mut self.request)
                    {
                        return Poll::Ready(close);
                    }
                }
                Event::Control(Some(Inbound::Invalid(e))) => {
                    let code = decode_error_code(&e);
                    send_error(&ready.control, code, &e.to_string());
                    return Poll::Ready(CloseReason::error(code, e.to_string()));
                }
            }
        }
    }
}

/// Poll every source of a served connection, the rare and urgent first (so a peer flooding
/// the control stream delays nothing else).
fn next_event<F: Future<Output = ()>>(
    cx: &mut Context<'_>,
    ready: &mut Ready,
    conversations: &mut Option<StreamSet<F>>,
    request: &mut Option<Request>,
    streams_done: bool,
) -> Poll<Event> {
    if ready.control.outbound.poll_closed(cx).is_ready() {
        return Poll::Ready(Event::Closed);
    }
    if let Some(streams) = conversations
        && streams.poll_ended(cx).is_ready()
    {
        return Poll::Ready(Event::StreamEnded);
    }
    if !streams_done && let Poll::Ready(stream) = ready.streams.poll_recv(cx) {
        return Poll::Ready(Event::Opened(stream));
    }
    match request {
        Some(request) => request.as_mut().poll(cx).map(Event::Handled),
        None => ready.control.inbound.poll_recv(cx).map(Event::Control),
    }
}

/// A frame on the control stream: a ping is answered at once, a receipt or typing becomes the
/// request being handled; anything else ends the connection.
fn control_frame(
    ctx: &Arc<ConnCtx>,
    control: &StreamIo,
    frame: ClientFrame,
    request: &mut Option<Request>,
) -> Result<(), CloseReason> {
    match frame {
        ClientFrame::Ping { nonce } => {
            match control
                .outbound
                .try_send(encode_frame(&ServerFrame::Pong { nonce }))
            {
                Ok(()) => Ok(()),
                Err(SendError::Full) => Err(CloseReason::error(
                    ErrorCode::SlowConsumer,
                    "the control stream is not read fast enough",
                )),
                Err(SendError::Closed) => Err(CloseReason::normal("peer left")),
            }
        }
        ClientFrame::Receipt {
            conversation,
            delivered,
            read,
        } => {
            let ctx = Arc::clone(ctx);
            *request = Some(Box::pin(async move {
                receipt(&ctx.state, &ctx.user, conversation, delivered, read).await
            }));
            Ok(())
        }
        ClientFrame::Typing { conversation } => {
            let ctx = Arc::clone(ctx);
            *request = Some(Box::pin(async move {
                typing(&ctx.state, &ctx.user, conversation).await
            }));
            Ok(())
        }
        other => {
            let reason = format!(
                "{} is not allowed on the control stream",
                frame_name(&other)
            );
            send_error(control, ErrorCode::ProtocolViolation, &reason);
            Err(CloseReason::error(ErrorCode::ProtocolViolation, reason))
        }
    }
}

/// What a connection gets when the server shuts down: `GoAway` with a jittered reconnect
/// delay (so clients do not all come back at once), and the reason it is closed with.
pub fn go_away() -> (Bytes, CloseReason) {
    let go_away = ServerFrame::GoAway {
        reconnect_after_ms: rand::rng().random_range(500..5_000),
        reason: "server shutting down".into(),
    };
    (
        encode_frame(&go_away),
        CloseReason::error(ErrorCode::ShuttingDown, "server shutting down"),
    )
}

/// Most conversations in one `Conversations` frame (each at most a few hundred bytes).
const SNAPSHOT_CHUNK: usize = 64;

/// After `Welcome`: tells the user hub what the user is in (which brings them online), and
/// with `events` sends the user's conversations and the presence of those they see, as the
/// peer reads them.
async fn introduce(
    state: &AppState,
    control: &StreamIo,
    user: &User,
    events: bool,
) -> Result<(), CloseReason> {
    let failed = |e: StoreError| {
        tracing::error!("cannot read a conversation list: {e}");
        CloseReason::error(ErrorCode::Internal, "cannot read your conversations now")
    };
    // One store read (one hop to the blocking pool and back) for all of it.
    let WelcomeView {
        friends,
        seen,
        summaries,
        blocked,
    } = state.store.welcome_view(user.id).await.map_err(failed)?;
    let ids: Vec<UserId> = friends.iter().map(|f| f.user).collect();
    let names: HashMap<UserId, &str> = friends
        .iter()
        .map(|f| (f.user, f.username.as_str()))
        .collect();
    let seen = seen
        .into_iter()
        .filter_map(|(id, ms)| names.get(&id).map(|name| (id, (*name).to_owned(), ms)))
        .collect();
    let conversations: Vec<(ConversationId, ConversationKind)> =
        summaries.iter().map(|s| (s.conversation, s.kind)).collect();
    let presence = state
        .users
        .track(user.id, &conversations, &ids, seen, &blocked);
    if state.fleet.is_some()
        && let Some((username, rooms)) = state.users.presence_here(user.id)
    {
        state.tell_fleet(Control::Online {
            user: user.id,
            username,
            rooms,
        });
    }
    if !events {
        return Ok(());
    }
    let mut chunks = summaries.chunks(SNAPSHOT_CHUNK).peekable();
    let gone = |_| CloseReason::normal("peer left");
    if chunks.peek().is_none() {
        let empty = ServerFrame::Conversations {
            conversations: Vec::new(),
            done: true,
        };
        control
            .outbound
            .send(encode_frame(&empty))
            .await
            .map_err(gone)?;
    }
    while let Some(chunk) = chunks.next() {
        let frame = ServerFrame::Conversations {
            conversations: chunk.iter().map(|s| summary_frame(user.id, s)).collect(),
            done: chunks.peek().is_none(),
        };
        control
            .outbound
            .send(encode_frame(&frame))
            .await
            .map_err(gone)?;
    }
    for frame in presence {
        control.outbound.send(frame).await.map_err(gone)?;
    }
    Ok(())
}

/// A `Receipt`: store the cursors (forwards only) and tell the user's devices and the
/// conversation's other members.
async fn receipt(
    state: &AppState,
    user: &User,
    conversation: ConversationId,
    delivered: u64,
    read: u64,
) -> Result<(), CloseReason> {
    let result = async {
        access::may_read(&state.store, user.id, conversation).await?;
        let now = state.store.cursors(user.id, conversation).await?;
        if delivered <= now.delivered && read <= now.read {
            return Ok(());
        }
        let stored = state
            .store
            .advance_cursors(user.id, conversation, delivered, read)
            .await?;
        if stored != now
            && let Some(summary) = state.store.summary(user.id, conversation).await?
        {
            state.tell_fleet(Control::Receipt {
                user: user.id,
                conversation,
            });
            state.users.receipt(user.id, &summary);
        }
        Ok(())
    };
    result.await.map_err(refused)
}

/// A `Typing`: announce it to the conversation's other members unless it is a refresh.
async fn typing(
    state: &AppState,
    user: &User,
    conversation: ConversationId,
) -> Result<(), CloseReason> {
    access::may_read(&state.store, user.id, conversation)
        .await
        .map_err(refused)?;
    if state.typing.start(user.id, conversation, Instant::now()) {
        state.tell_fleet(Control::Typing {
            conversation,
            user: user.id,
            username: user.username.clone(),
            typing: true,
        });
        state.users.typing(conversation, user.id, true);
    }
    Ok(())
}

/// A refused control-stream request ends the connection with the refusal's code.
fn refused(refusal: Refusal) -> CloseReason {
    if let Refusal::Store(e) = &refusal {
        tracing::error!("store error on a control stream: {e}");
    }
    CloseReason::error(refusal.code(), refusal.to_string())
}

/// Records when a user went offline; a failure (the store closing at shutdown) only loses that.
async fn record_last_seen(state: &AppState, user: UserId, at_ms: u64) {
    if let Err(e) = state.store.record_last_seen(user, at_ms).await {
        tracing::debug!("cannot record when user {} was last seen: {e}", user.0);
    }
}

/// Wait for `Hello` and check its version and token; the user, the version spoken and the
/// token's hash.
async fn hello(
    state: &AppState,
    control: &mut StreamIo,
) -> Result<(User, u16, TokenHash), (Outcome, CloseReason)> {
    let first = timeout(state.limits.hello_timeout, control.inbound.recv())
        .await
        .map_err(|_| {
            (
                Outcome::TimedOut,
                CloseReason::error(ErrorCode::ProtocolViolation, "no Hello in time"),
            )
        })?;
    let (version, token) = match first {
        None => {
            return Err((
                Outcome::PeerLeft,
                CloseReason::normal("peer left before Hello"),
            ));
        }
        Some(Inbound::Invalid(e)) => {
            return Err((
                Outcome::BadHello,
                CloseReason::error(decode_error_code(&e), e.to_string()),
            ));
        }
        Some(Inbound::Frame(ClientFrame::Hello { version, token })) => (version, token),
        Some(Inbound::Frame(other)) => {
            return Err((
                Outcome::BadHello,
                CloseReason::error(
                    ErrorCode::ProtocolViolation,
                    format!("expected Hello, got {}", frame_name(&other)),
                ),
            ));
        }
    };
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err((
            Outcome::UnsupportedVersion,
            CloseReason::error(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported (this server speaks \
                     {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION})"
                ),
            ),
        ));
    }
    let unauthorized = |reason: &'static str| {
        (
            Outcome::Unauthorized,
            CloseReason::error(ErrorCode::Unauthorized, reason),
        )
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(unauthorized("invalid token"));
    }
    let hash = hash_token(&token);
    let now = unix_ms(SystemTime::now());
    // issue 9 (setup helper): the token check runs here, not on the blocking pool
    // (`Store::hello_user`, store/setup_views.rs).
    match state.store.hello_user(&hash, now).await {
        Ok(Some(user)) => Ok((user, version, hash)),
        Ok(None) => Err(unauthorized("invalid or expired token")),
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            Err((
                Outcome::Internal,
                CloseReason::error(ErrorCode::Internal, "cannot check the token now"),
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
        ClientFrame::Receipt { .. } => "Receipt",
        ClientFrame::Typing { .. } => "Typing",
    }
}
