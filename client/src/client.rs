//! The public handle of a realtime connection: [`Client::connect`] starts the driver task and
//! waits for the server's `Welcome`; the methods pass commands to the driver over a channel
//! and [`Client::next_event`] hands out what the session reports.
//!
//! Client message ids: [`Client::send`] answers at once with the id of the message. The
//! session numbers sends consecutively from its `client_id_seed`, so the handle draws the same
//! numbers from its own counter started at the same seed, under a lock that also queues the
//! command, which keeps both sequences in step (the driver logs an error should they ever
//! differ).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use quibble_protocol::session::{Event, SessionConfig};
use quibble_protocol::{ConversationId, UserId};
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::driver::{Command, Driver, DriverPorts};
use crate::endpoints::ServerUrl;
use crate::error::{ClientError, TransportError};
use crate::tls::TlsRoots;
use crate::transport::dial::DialConfig;
use crate::transport::wt::Trust;
use crate::transport::wt_endpoints::WtEndpoints;
use crate::transport::{CurrentTransport, TransportChoice, TransportKind};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's base URL, `http://host:port`.
    pub server: String,
    /// A session token from [`Api::login`] or [`Api::signup`].
    pub token: String,
    pub transport: TransportChoice,
    /// A PEM file of CA certificates trusted besides the system's roots (read at connect;
    /// [`ClientOptions::tls`] takes precedence).
    pub ca_cert: Option<PathBuf>,
    /// The certificates to trust, loaded once (see [`TlsRoots`]). Without it (and without
    /// `ca_cert`) the `api`'s are used, else the system's roots.
    ///
    /// An `https://` server is verified with them on every transport: WSS and WebTransport.
    /// For an `http://` server with no CA file, WebTransport pins the certificate hash that
    /// `/api/cert` publishes (the server's self-signed certificate) instead.
    pub tls: Option<TlsRoots>,
    /// The REST client that fetches `/api/cert` for pinning, shared (with its pooled HTTP
    /// connections) by every client given it; used only if it is for `server`. Without one,
    /// each client makes its own.
    pub api: Option<Api>,
    /// WebTransport endpoints (UDP sockets) shared with other clients given the same pool;
    /// without one, the client has an endpoint of its own.
    pub wt_endpoints: Option<WtEndpoints>,
    /// Conversations joined from the start: their `Join` goes out with `Hello`, without
    /// waiting for `Welcome` (see [`ClientOptions::join`]).
    pub joins: Vec<ConversationId>,
}

impl ClientOptions {
    /// Options with the automatic transport choice and certificate pinning.
    pub fn new(server: impl Into<String>, token: impl Into<String>) -> Self {
        ClientOptions {
            server: server.into(),
            token: token.into(),
            transport: TransportChoice::Auto,
            ca_cert: None,
            tls: None,
            api: None,
            wt_endpoints: None,
            joins: Vec::new(),
        }
    }

    pub fn transport(mut self, transport: TransportChoice) -> Self {
        self.transport = transport;
        self
    }

    /// Trust the CA certificates in the PEM file at `path` besides the system's roots.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Trust `tls` (see [`ClientOptions::tls`]).
    pub fn tls(mut self, tls: TlsRoots) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Fetch the certificate hash with `api` (see [`ClientOptions::api`]).
    pub fn api(mut self, api: Api) -> Self {
        self.api = Some(api);
        self
    }

    /// Join `conversation` from the start, as [`Client::join`] does, but in the same flight as
    /// `Hello`: its `Joined` can follow `Welcome` without another round trip.
    pub fn join(mut self, conversation: ConversationId) -> Self {
        self.joins.push(conversation);
        self
    }

    /// Open WebTransport sessions on `endpoints` (see [`ClientOptions::wt_endpoints`]).
    pub fn wt_endpoints(mut self, endpoints: WtEndpoints) -> Self {
        self.wt_endpoints = Some(endpoints);
        self
    }
}

/// What the application hears from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// An event of the session: messages, acknowledgements, joins, errors, disconnects.
    Session(Event),
    /// A transport connection came up and is now in use (the session then greets the server
    /// on it; `Session(Event::Connected)` follows once it answers).
    TransportChanged(TransportKind),
}

/// A realtime connection to a server, reconnecting by itself until closed.
///
/// Commands (`join`, `leave`, `send`, …) are queued for the session and carried out as soon
/// as it is connected; after the client is closed they are ignored.
#[derive(Debug)]
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<ClientEvent>>,
    /// The next client message id (see the module docs).
    next_client_id: Mutex<u64>,
    transport: Arc<CurrentTransport>,
    driver: Mutex<Option<JoinHandle<()>>>,
    user: UserId,
    username: String,
}

impl Client {
    /// Connect and wait for the server's `Welcome`. Fails if the first connection cannot be
    /// made, or the server refuses it ([`ClientError::Unauthorized`] for a bad token).
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        let server = ServerUrl::parse(&options.server)?;
        let api = options.api.filter(|api| api.server() == &server);
        let tls = match (options.tls, &options.ca_cert, &api) {
            (Some(tls), _, _) => tls,
            (None, Some(path), _) => TlsRoots::with_ca_cert(path)?,
            (None, None, Some(api)) => api.tls().clone(),
            (None, None, None) => TlsRoots::system()?,
        };
        let trust = if server.is_https() || tls.ca_file().is_some() {
            Trust::Roots(tls.clone())
        } else {
            let api = match api {
                Some(api) => api,
                None => Api::for_server(server.clone(), tls.clone())
                    .map_err(|e| ClientError::Connect(TransportError::CertFetch(e)))?,
            };
            Trust::PinnedHash(api)
        };
        let seed: u64 = rand::rng().random();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (ready_tx, ready) = oneshot::channel();
        let transport = Arc::new(CurrentTransport::default());
        let driver = Driver::new(
            SessionConfig::new(options.token, seed),
            &options.joins,
            DialConfig {
                server,
                trust,
                tls,
                choice: options.transport,
                wt_endpoints: options.wt_endpoints.unwrap_or_else(WtEndpoints::private),
            },
            DriverPorts {
                commands: commands_rx,
                events: events_tx,
                ready: ready_tx,
                transport: transport.clone(),
            },
        );
        let driver = tokio::spawn(driver.run());
        let welcome = ready.await.map_err(|_| ClientError::Closed)??;
        Ok(Client {
            commands,
            events: tokio::sync::Mutex::new(events),
            next_client_id: Mutex::new(seed),
            transport,
            driver: Mutex::new(Some(driver)),
            user: welcome.user,
            username: welcome.username,
        })
    }

    /// The account this client is logged in as.
    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Join a conversation (and rejoin it after every reconnect). Its recent messages, then
    /// live ones, arrive as `Event::Message`.
    pub fn join(&self, conversation: ConversationId) {
        self.command(Command::Join(conversation));
    }

    /// Join a conversation starting after `seq` rather than with the recent page, unless the
    /// client already has a cursor for it: with the read cursor of its list entry
    /// (`Event::ConversationList`), exactly the unread messages arrive, in order, once.
    pub fn join_from(&self, conversation: ConversationId, seq: u64) {
        self.command(Command::JoinFrom(conversation, seq));
    }

    /// Leave a conversation.
    pub fn leave(&self, conversation: ConversationId) {
        self.command(Command::Leave(conversation));
    }

    /// The user has read what arrived so far in a joined conversation: reported to the
    /// server (debounced). What arrives is reported delivered by itself.
    pub fn mark_read(&self, conversation: ConversationId) {
        self.command(Command::MarkRead(conversation));
    }

    /// The conversation on screen (`None`: none): marked read now and as messages arrive.
    pub fn set_viewing(&self, conversation: Option<ConversationId>) {
        self.command(Command::SetViewing(conversation));
    }

    /// The user is typing in a conversation; call it freely (at most one `Typing` frame goes
    /// out every few seconds per conversation).
    pub fn typing(&self, conversation: ConversationId) {
        self.command(Command::Typing(conversation));
    }

    /// Send a message; returns its client id, which `Event::Sent` (durable) or
    /// `Event::Rejected` carry back. It is resent after reconnects until acknowledged, and
    /// after the server's hint when it was refused with `RateLimited` (`Event::Throttled`).
    pub fn send(&self, conversation: ConversationId, body: impl Into<String>) -> u64 {
        let mut next = self
            .next_client_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let client_id = take_id(&mut next);
        self.command(Command::Send {
            conversation,
            body: body.into(),
            client_id,
        });
        client_id
    }

    /// Ask for up to `limit` messages older than the oldest one seen; they arrive as
    /// `Event::History`. Returns false when nothing older exists or the conversation is not
    /// joined (then no event follows).
    pub async fn load_older(
        &self,
        conversation: ConversationId,
        limit: u16,
    ) -> Result<bool, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::LoadOlder {
                conversation,
                limit,
                reply,
            })
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }

    /// The next event; `None` once the client is closed or the server refused the session for
    /// good (the last `Session(Event::Error)` says why). Events queue up until taken.
    pub async fn next_event(&self) -> Option<ClientEvent> {
        self.events.lock().await.recv().await
    }

    /// The transport in use, `None` while disconnected.
    pub fn transport(&self) -> Option<TransportKind> {
        self.transport.get()
    }

    /// Close the connection and stop the driver.
    pub async fn close(&self) {
        self.command(Command::Close);
        let driver = self
            .driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(driver) = driver {
            let _ = driver.await;
        }
    }

    fn command(&self, command: Command) {
        // After close the driver is gone and commands are ignored, as documented.
        let _ = self.commands.send(command);
    }
}

/// The next client id of the sequence the session uses: the seed, then one more per send.
fn take_id(next: &mut u64) -> u64 {
    let id = *next;
    *next = id.wrapping_add(1);
    id
}

#[cfg(test)]
mod tests {
    use quibble_protocol::session::Session;

    use super::*;

    #[test]
    fn the_handle_numbers_sends_as_the_session_does() {
        let seed = u64::MAX - 1;
        let mut session = Session::new(SessionConfig::new("token", seed));
        let mut next = seed;
        for _ in 0..4 {
            let promised = take_id(&mut next);
            assert_eq!(session.send(ConversationId(1), "hi".into()), promised);
        }
    }
}
