//! The driver task: it owns the `protocol::session::Session` and does only I/O and time for
//! it — opens and drops transports when the session asks, carries its transmits onto the
//! connection, feeds it received frames, stream ends and disconnects, wakes it at its
//! `poll_timeout`, and forwards its events to the application. Framing, resume, heartbeats and
//! backoff are all the session's.
//!
//! Until the first `Welcome` the driver also answers `Client::connect`: a failed first
//! connection attempt or a refusal ends the driver with an error instead of retrying.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use quibble_protocol::session::{
    Action, Event, Session, SessionConfig, State, StreamKey, StreamOrder,
};
use quibble_protocol::{ConversationId, ErrorCode, UserId};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::client::ClientEvent;
use crate::error::{ClientError, TransportError};
use crate::transport::dial::{DialConfig, dial};
use crate::transport::{CloseInfo, Connection, CurrentTransport, TransportEvent, TransportKind};

/// What the client handle asks of the driver.
#[derive(Debug)]
pub(crate) enum Command {
    Join(ConversationId),
    /// Join starting after a seq (see `Session::join_from`).
    JoinFrom(ConversationId, u64),
    Leave(ConversationId),
    MarkRead(ConversationId),
    SetViewing(Option<ConversationId>),
    Typing(ConversationId),
    /// `client_id` is the id the handle already returned (see [`crate::Client::send`]).
    Send {
        conversation: ConversationId,
        body: String,
        client_id: u64,
    },
    LoadOlder {
        conversation: ConversationId,
        limit: u16,
        reply: oneshot::Sender<bool>,
    },
    Close,
}

/// The server's `Welcome`, as `Client::connect` returns it.
#[derive(Debug, Clone)]
pub(crate) struct Welcome {
    pub user: UserId,
    pub username: String,
}

type Dialing = Pin<Box<dyn Future<Output = Result<Connection, TransportError>> + Send>>;

/// Milliseconds since the driver started: the session's clock.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.start
            .checked_add(Duration::from_millis(ms))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }
}

/// The channels that connect a driver to its client handle.
pub(crate) struct DriverPorts {
    pub commands: mpsc::UnboundedReceiver<Command>,
    pub events: mpsc::UnboundedSender<ClientEvent>,
    pub ready: oneshot::Sender<Result<Welcome, ClientError>>,
    pub transport: Arc<CurrentTransport>,
}

pub(crate) struct Driver {
    session: Session,
    clock: Clock,
    dial_config: Arc<DialConfig>,
    connection: Option<Connection>,
    dialing: Option<Dialing>,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Answers `Client::connect`; `None` once the first `Welcome` arrived (or it failed).
    ready: Option<oneshot::Sender<Result<Welcome, ClientError>>>,
    /// The reason of the last control-stream error before the first `Welcome`.
    refusal: Option<String>,
    transport: Arc<CurrentTransport>,
    done: bool,
}

impl Driver {
    /// A driver whose session wants `joins` from its first connection on.
    pub(crate) fn new(
        config: SessionConfig,
        joins: &[ConversationId],
        dial_config: DialConfig,
        ports: DriverPorts,
    ) -> Self {
        let mut session = Session::new(config);
        for &conversation in joins {
            session.join(conversation);
        }
        Driver {
            session,
            clock: Clock {
                start: Instant::now(),
            },
            dial_config: Arc::new(dial_config),
            connection: None,
            dialing: None,
            commands: ports.commands,
            events: ports.events,
            ready: Some(ports.ready),
            refusal: None,
            transport: ports.transport,
            done: false,
        }
    }

    /// Run until the handle closes the client (or is dropped), the first connection fails, or
    /// the server refuses the session for good.
    pub(crate) async fn run(mut self) {
        loop {
            self.pump();
            if self.done {
                break;
            }
            let deadline = self.session.poll_timeout().map(|ms| self.clock.instant(ms));
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if !self.command(command) {
                            break;
                        }
                    }
                    // The handle is gone.
                    None => break,
                },
                event = next_transport_event(&mut self.connection) => self.transport_event(event),
                dialed = dial_result(&mut self.dialing) => {
                    self.dialing = None;
                    self.dialed(dialed);
                }
                () = sleep_until_some(deadline) => {
                    self.session.handle_timeout(self.clock.now_ms());
                }
            }
        }
        self.drop_connection();
    }

    /// Carry out everything the session has queued.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some(action) = self.session.poll_action() {
                busy = true;
                self.action(action);
            }
            while let Some(transmit) = self.session.poll_transmit() {
                busy = true;
                match &mut self.connection {
                    Some(connection) => connection.send(transmit),
                    None => tracing::debug!(?transmit, "no connection; dropping a transmit"),
                }
            }
            while let Some(event) = self.session.poll_event() {
                busy = true;
                self.event(event);
            }
            if !busy {
                break;
            }
        }
        if let State::Failed(code) = self.session.state() {
            let reason = self
                .refusal
                .take()
                .unwrap_or_else(|| format!("the server refused the session ({code})"));
            tracing::debug!(%code, %reason, "session failed for good");
            self.fail(ClientError::refused(Some(code), reason));
        }
    }

    fn action(&mut self, action: Action) {
        match action {
            Action::Connect => {
                self.drop_connection();
                self.dialing = Some(Box::pin(dial(self.dial_config.clone())));
            }
            Action::Disconnect { reason } => {
                tracing::debug!(%reason, "session closes the connection");
                self.drop_connection();
                self.dialing = None;
                self.lost(CloseInfo { code: None, reason });
            }
        }
    }

    /// Carry out a command; false to stop.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Join(conversation) => self.session.join(conversation),
            Command::JoinFrom(conversation, seq) => self.session.join_from(conversation, seq),
            Command::Leave(conversation) => self.session.leave(conversation),
            Command::MarkRead(conversation) => {
                self.session.mark_read(conversation, self.clock.now_ms());
            }
            Command::SetViewing(conversation) => {
                self.session.set_viewing(conversation, self.clock.now_ms());
            }
            Command::Typing(conversation) => {
                self.session.typing(conversation, self.clock.now_ms());
            }
            Command::Send {
                conversation,
                body,
                client_id,
            } => {
                let assigned = self.session.send(conversation, body);
                if assigned != client_id {
                    tracing::error!(
                        assigned,
                        promised = client_id,
                        "the session numbered a send differently from the client handle"
                    );
                }
            }
            Command::LoadOlder {
                conversation,
                limit,
                reply,
            } => {
                let _ = reply.send(self.session.load_older(conversation, limit));
            }
            Command::Close => return false,
        }
        true
    }

    fn transport_event(&mut self, event: TransportEvent) {
        let now = self.clock.now_ms();
        match event {
            TransportEvent::Frame(stream, frame) => self.session.on_frame(stream, frame, now),
            TransportEvent::StreamClosed(stream) => self.session.on_stream_closed(stream, now),
            TransportEvent::Closed(info) => {
                tracing::debug!(%info, "connection closed");
                self.drop_connection();
                self.lost(info);
            }
        }
    }

    fn dialed(&mut self, result: Result<Connection, TransportError>) {
        match result {
            Ok(connection) => {
                let kind = connection.kind();
                tracing::debug!(%kind, "transport up");
                self.transport.set(Some(kind));
                self.connection = Some(connection);
                let _ = self.events.send(ClientEvent::TransportChanged(kind));
                let order = match kind {
                    TransportKind::WebSocket => StreamOrder::Shared,
                    TransportKind::WebTransport => StreamOrder::PerStream,
                };
                self.session.on_connected(self.clock.now_ms(), order);
            }
            Err(e) if self.ready.is_some() => self.fail(ClientError::Connect(e)),
            Err(e) => {
                tracing::debug!("reconnect failed: {e}");
                self.session
                    .on_disconnected(self.clock.now_ms(), rand::rng().random());
            }
        }
    }

    /// The connection is gone (the session is told; before the first `Welcome` it also ends
    /// the driver with an error).
    fn lost(&mut self, info: CloseInfo) {
        if self.ready.is_some() && !matches!(self.session.state(), State::Failed(_)) {
            self.fail(ClientError::refused(info.code, info.to_string()));
            return;
        }
        self.session
            .on_disconnected(self.clock.now_ms(), rand::rng().random());
    }

    fn event(&mut self, event: Event) {
        match &event {
            Event::Connected { user, username } => {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(Welcome {
                        user: *user,
                        username: username.clone(),
                    }));
                }
            }
            Event::Error {
                stream: StreamKey::Control,
                code,
                reason,
            } if self.ready.is_some() => {
                self.refusal = Some(refusal_reason(*code, reason));
            }
            _ => {}
        }
        let _ = self.events.send(ClientEvent::Session(event));
    }

    /// Stop the driver; `error` answers `Client::connect` if it still waits.
    fn fail(&mut self, error: ClientError) {
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error));
        }
        self.done = true;
    }

    fn drop_connection(&mut self) {
        if self.connection.take().is_some() {
            self.transport.set(None);
        }
    }
}

fn refusal_reason(code: ErrorCode, reason: &str) -> String {
    if reason.is_empty() {
        code.to_string()
    } else {
        reason.to_owned()
    }
}

async fn next_transport_event(connection: &mut Option<Connection>) -> TransportEvent {
    match connection {
        Some(connection) => connection.recv().await,
        None => pending().await,
    }
}

async fn dial_result(dialing: &mut Option<Dialing>) -> Result<Connection, TransportError> {
    match dialing {
        Some(dialing) => dialing.as_mut().await,
        None => pending().await,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => pending().await,
    }
}
