//! The client session state machine (sans-IO, in the manner of `quinn-proto`): it decides what
//! to send, which cursor to resume each conversation from, which messages are new, when to
//! ping, when the connection is dead and when to reconnect. Drivers (`quibble-client`,
//! `quibble-client-wasm`) only move bytes and time into it and carry out what it asks.
//!
//! Driving loop, for a driver:
//! 1. When [`Session::poll_action`] yields [`Action::Connect`], open a transport; when it is
//!    up call [`Session::on_connected`]; if it fails or later drops call
//!    [`Session::on_disconnected`].
//! 2. Send every [`Session::poll_transmit`] on its logical stream, opening the stream for a
//!    conversation the first time one is addressed to it (WebTransport: a new bidirectional
//!    stream; WebSocket: a new stream id). Feed every received frame to
//!    [`Session::on_frame`]; when the server ends a conversation stream call
//!    [`Session::on_stream_closed`].
//! 3. Call [`Session::handle_timeout`] when [`Session::poll_timeout`] comes due.
//! 4. Hand [`Session::poll_event`] results to the application.
//!
//! Pipelining: on a transport whose streams share one order ([`StreamOrder::Shared`]:
//! WebSocket), a conversation wanted before `Welcome` is joined right behind `Hello`, on the
//! same flight (one round trip less per connect), unless it waits for the store's epoch
//! ([`Session::join_from`] before any `Welcome`). Over WebTransport the server could take a
//! conversation's stream for the control stream, so joins wait for `Welcome` there.
//! Conversation-stream frames that come before `Welcome` are held until it arrives (see
//! `early`).
//!
//! Streams: a `Join` transmit always starts a new stream for its conversation (a driver that
//! still has one for it retires it), and after transmitting `Leave` the driver retires that
//! stream. The end of a retired stream is not reported to [`Session::on_stream_closed`], so
//! the session only ever hears about the conversation's current stream.
//!
//! Policies worth knowing:
//! - Pending sends survive reconnects and stream errors; only [`Session::leave`] discards the
//!   pending sends of a conversation. A conversation stream `Error` with `Forbidden` or
//!   `UnknownConversation` ends the session's interest in the conversation and forgets its
//!   cursor (as `leave` does) but keeps its pending sends: the application decides, by
//!   joining again or calling `leave`.
//! - A conversation stream that the server ends after `Lagged` is rejoined at once from the
//!   cursor; one ended after an `Error` (or for no stated reason) is rejoined after
//!   `min(cap, base * 2^(failures - 1))` ms, so a refusing server is not hammered.
//! - A send refused with `RateLimited` stays pending and is resent after the server's hint,
//!   once the conversation's sends in flight are answered; its conversation then pipelines
//!   again within a window that widens per ack and halves per refusal, oldest first, until its
//!   outbox is empty (see the `throttle` module). Sends refused with any other code are
//!   dropped and reported as [`Event::Rejected`].
//! - Gaps are filled with `History` requests upward from the cursor; see the `conversation`
//!   module for how holes and a full out-of-order buffer are handled.
//! - The user's conversation list (snapshot after every `Welcome`, then live changes) is kept
//!   here and surfaced as events; see `conversation_list`. A fresh client resumes exactly the
//!   unread messages with [`Session::join_from`] and the entry's read cursor; a running one
//!   resumes every joined conversation from its own cursor after each reconnect.
//! - Receipts: messages reaching the application are reported delivered, and read while their
//!   conversation is on screen ([`Session::set_viewing`]) or when [`Session::mark_read`] says
//!   so; debounced ([`RECEIPT_DELAY_MS`], see `receipts`). Typing frames are rate-limited
//!   ([`TYPING_REFRESH_MS`], see `typing`). Both only ever name conversations the user has
//!   (the server ends a connection that names another user's DM).

use std::collections::{BTreeMap, VecDeque};

use crate::error_code::ErrorCode;
use crate::wire::{
    ClientFrame, ConversationId, ConversationKind, ConversationSummary, Cursor, PROTOCOL_VERSION,
    ServerFrame, UserId,
};

mod backoff;
mod connection;
mod conversation;
mod conversation_list;
mod early;
mod events;
mod outbox;
mod receipts;
mod throttle;
mod typing;

pub use events::{Action, Event, State, StreamKey, StreamOrder, Transmit};
pub use outbox::PendingSend;
pub use typing::TYPING_REFRESH_MS;

use backoff::Backoff;
use connection::{Connection, heartbeat_interval};
use conversation::{Conversation, Link};
use conversation_list::ConversationList;
use early::{Early, EarlyFrames};
use outbox::Outbox;
use receipts::Receipts;
use throttle::Throttles;
use typing::Typing;

/// Default debounce of the user's receipts: half a second coalesces a replayed backlog or a
/// busy room into one `Receipt` per conversation, yet a sender sees "delivered"/"read" well
/// within a second, which reads as immediate.
pub const RECEIPT_DELAY_MS: u64 = 500;

/// Settings a driver chooses when creating a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Bearer token from the REST login.
    pub token: String,
    /// First reconnect delay ceiling; doubles per failed attempt (full jitter).
    pub backoff_base_ms: u64,
    /// Largest reconnect delay.
    pub backoff_cap_ms: u64,
    /// Ping interval until the server's `Welcome` says otherwise.
    pub heartbeat_ms: u64,
    /// A random number from the driver; client message ids start from it so that ids from
    /// different runs of a client do not collide.
    pub client_id_seed: u64,
    /// Messages the session keeps out of order while it fills a gap, at most.
    pub max_gap_buffer: usize,
    /// Debounce of the user's receipts (see [`RECEIPT_DELAY_MS`]).
    pub receipt_delay_ms: u64,
}

impl SessionConfig {
    pub fn new(token: impl Into<String>, client_id_seed: u64) -> Self {
        SessionConfig {
            token: token.into(),
            backoff_base_ms: 250,
            backoff_cap_ms: 30_000,
            heartbeat_ms: 10_000,
            client_id_seed,
            max_gap_buffer: 1024,
            receipt_delay_ms: RECEIPT_DELAY_MS,
        }
    }
}

/// What the session has for its driver and application, in order.
#[derive(Debug, Default)]
struct Queues {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    actions: VecDeque<Action>,
}

impl Queues {
    fn transmit(&mut self, stream: StreamKey, frame: ClientFrame) {
        self.transmits.push_back(Transmit { stream, frame });
    }
}

/// The session. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    backoff: Backoff,
    /// Current ping interval: from the config, then from the latest `Welcome`.
    heartbeat_ms: u64,
    /// The transport connection, from `on_connected` to `on_disconnected`.
    connection: Option<Connection>,
    /// Conversations the application wants joined.
    conversations: BTreeMap<ConversationId, Conversation>,
    outbox: Outbox,
    /// Conversations whose sends are paced after a `RateLimited` refusal.
    throttles: Throttles,
    /// Client ids handed out so far.
    sends: u64,
    /// The user and the store's epoch, from the latest `Welcome`.
    user: Option<UserId>,
    epoch: Option<u64>,
    /// The user's conversation list, as the server last reported it.
    list: ConversationList,
    receipts: Receipts,
    typing: Typing,
    /// The conversation the application has on screen: what arrives there counts as read.
    viewing: Option<ConversationId>,
    /// Conversation-stream frames that arrived before `Welcome` on this connection.
    early: EarlyFrames,
    /// Whether this connection's joins go out behind `Hello` ([`StreamOrder::Shared`]).
    pipelined: bool,
    queues: Queues,
}

impl Session {
    pub fn new(config: SessionConfig) -> Self {
        let mut queues = Queues::default();
        queues.actions.push_back(Action::Connect);
        Session {
            backoff: Backoff::new(config.backoff_base_ms, config.backoff_cap_ms),
            receipts: Receipts::new(config.receipt_delay_ms),
            heartbeat_ms: heartbeat_interval(config.heartbeat_ms),
            config,
            state: State::Connecting,
            connection: None,
            conversations: BTreeMap::new(),
            outbox: Outbox::default(),
            throttles: Throttles::default(),
            sends: 0,
            user: None,
            epoch: None,
            list: ConversationList::default(),
            typing: Typing::default(),
            viewing: None,
            early: EarlyFrames::default(),
            pipelined: false,
            queues,
        }
    }

    /// Current connection state.
    pub fn state(&self) -> State {
        self.state
    }

    // ---- driver notifications ----

    /// The transport is up: queues `Hello` on the control stream, and, when its streams share
    /// one `order`, right behind it `Join` for every wanted conversation that need not wait
    /// for `Welcome`.
    pub fn on_connected(&mut self, now_ms: u64, order: StreamOrder) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        self.reset_connection();
        self.connection = Some(Connection::new(now_ms, self.heartbeat_ms));
        self.state = State::Handshaking;
        self.list.expect_snapshot();
        self.receipts.reconnected(now_ms);
        self.typing.reconnected();
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: self.config.token.clone(),
        };
        self.queues.transmit(StreamKey::Control, hello);
        self.pipelined = order == StreamOrder::Shared;
        for conv in self.conversations.values_mut() {
            if joins_now(self.state, self.pipelined, conv) {
                conv.join(&mut self.queues);
            }
        }
    }

    /// The transport failed or dropped. `random` is a fresh random number for backoff jitter.
    /// Schedules the next [`Action::Connect`] (unless the failure is final).
    pub fn on_disconnected(&mut self, now_ms: u64, random: u64) {
        let connection = self.connection.take();
        self.reset_connection();
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        if connection.is_some() {
            self.queues.events.push_back(Event::Disconnected);
        }
        let delay = match connection.and_then(|c| c.go_away_after_ms) {
            Some(hint) => hint,
            None => self.backoff.next_delay(random),
        };
        self.state = State::Reconnecting {
            retry_at_ms: now_ms.saturating_add(delay),
            attempt: self.backoff.attempt(),
        };
    }

    /// A frame arrived on a logical stream.
    pub fn on_frame(&mut self, stream: StreamKey, frame: ServerFrame, now_ms: u64) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        connection.received(now_ms);
        match (stream, frame) {
            (
                StreamKey::Control,
                ServerFrame::Welcome {
                    user,
                    username,
                    epoch,
                    heartbeat_ms,
                    ..
                },
            ) => self.on_welcome(user, username, epoch, heartbeat_ms, now_ms),
            (
                _,
                ServerFrame::GoAway {
                    reconnect_after_ms,
                    reason,
                },
            ) => self.on_go_away(reconnect_after_ms, reason),
            (StreamKey::Control, ServerFrame::Error { code, reason }) => {
                self.on_connection_error(code, reason)
            }
            (StreamKey::Conversation(c), frame) if self.state == State::Handshaking => {
                self.hold_early(Early::Frame(c, frame));
            }
            (StreamKey::Conversation(c), frame) => self.on_conversation_frame(c, frame, now_ms),
            (StreamKey::Control, frame) => self.on_user_event(frame),
        }
    }

    /// The server ended a conversation stream (after `Lagged`, an `Error`, or our `Leave`).
    /// If the conversation is still wanted it is rejoined from its cursor.
    pub fn on_stream_closed(&mut self, stream: StreamKey, now_ms: u64) {
        match stream {
            StreamKey::Control => {
                if matches!(self.state, State::Handshaking | State::Ready) {
                    self.request_disconnect("the server closed the control stream".into());
                }
            }
            StreamKey::Conversation(c) if self.state == State::Handshaking => {
                self.hold_early(Early::Closed(c));
            }
            StreamKey::Conversation(c) => {
                self.outbox.landed(Some(c));
                if self.state != State::Ready {
                    return;
                }
                let Some(conv) = self.conversations.get_mut(&c) else {
                    return;
                };
                if !conv.stream_closed() {
                    return;
                }
                match conv.failures() {
                    0 => conv.join(&mut self.queues),
                    n => conv.schedule_rejoin(now_ms.saturating_add(self.backoff.ceiling(n - 1))),
                }
            }
        }
    }

    /// Time has passed: send pings, declare a silent connection dead, reconnect after backoff.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        match self.state {
            State::Reconnecting { retry_at_ms, .. } if now_ms >= retry_at_ms => {
                self.state = State::Connecting;
                self.queues.actions.push_back(Action::Connect);
            }
            State::Handshaking | State::Ready => self.connection_timers(now_ms),
            _ => {}
        }
        if self.state == State::Ready {
            for frame in self.receipts.flush(now_ms) {
                self.queues.transmit(StreamKey::Control, frame);
            }
        }
    }

    /// The next time (ms) at which [`Session::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Reconnecting { retry_at_ms, .. } => Some(retry_at_ms),
            State::Handshaking | State::Ready => {
                let connection = self.connection.as_ref().filter(|c| !c.closing)?;
                let welcomed = self.state == State::Ready;
                let rejoins = self
                    .conversations
                    .values()
                    .filter_map(Conversation::rejoin_at)
                    .filter(|_| welcomed);
                let resends = self
                    .throttles
                    .paused()
                    .filter(|&(c, _)| welcomed && self.may_resume(c))
                    .map(|(_, at)| at);
                let receipts = self.receipts.due_at().filter(|_| welcomed);
                [connection.next_ping_at(), connection.dead_at(welcomed)]
                    .into_iter()
                    .chain(rejoins)
                    .chain(resends)
                    .chain(receipts)
                    .min()
            }
            State::Connecting | State::Failed(_) => None,
        }
    }

    /// Next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queues.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.queues.events.pop_front()
    }

    /// Next thing the driver must do with the transport.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.queues.actions.pop_front()
    }

    // ---- application commands ----

    /// Join a conversation (now if connected, else on connect). Joining twice is a no-op.
    pub fn join(&mut self, conversation: ConversationId) {
        if self.conversations.contains_key(&conversation) {
            return;
        }
        let conv = self
            .conversations
            .entry(conversation)
            .or_insert_with(|| Conversation::new(conversation));
        if joins_now(self.state, self.pipelined, conv) {
            conv.join(&mut self.queues);
        }
    }

    /// Join a conversation starting after `seq` instead of with the recent page, when the
    /// session has no cursor of its own for it: typically the read cursor from the
    /// conversation list, so that a fresh client receives exactly what the user has not read
    /// (then `load_older` pages back from there). Otherwise as [`Session::join`].
    pub fn join_from(&mut self, conversation: ConversationId, seq: u64) {
        if self.conversations.contains_key(&conversation) {
            return;
        }
        let mut conv = Conversation::new(conversation);
        conv.start_after(seq);
        if let Some(epoch) = self.epoch {
            conv.adopt_epoch(epoch);
        }
        let conv = self.conversations.entry(conversation).or_insert(conv);
        if joins_now(self.state, self.pipelined, conv) {
            conv.join(&mut self.queues);
        }
    }

    /// Leave a conversation: sends `Leave` and forgets its cursor. Its pending sends are
    /// discarded (the only way a pending send is dropped without an answer from the server).
    pub fn leave(&mut self, conversation: ConversationId) {
        // What the user read before leaving still counts: report it now.
        if let Some(receipt) = self.receipts.forget(conversation)
            && self.state == State::Ready
        {
            self.queues.transmit(StreamKey::Control, receipt);
        }
        if self.viewing == Some(conversation) {
            self.viewing = None;
        }
        self.outbox.discard(conversation);
        self.throttles.release(conversation);
        // A `Join` pipelined before `Welcome` is left too, and what its stream sent before
        // `Welcome` is forgotten (a later join of the conversation gets a stream of its own).
        self.early.forget(conversation);
        if let Some(conv) = self.conversations.remove(&conversation)
            && matches!(self.state, State::Ready | State::Handshaking)
        {
            conv.leave(&mut self.queues);
        }
    }

    /// Queue a message; returns its client id. It is sent when the conversation is joined and
    /// resent after every reconnect until the server acknowledges it (or refuses it with a
    /// code other than `RateLimited`). While the conversation is throttled it waits its turn.
    pub fn send(&mut self, conversation: ConversationId, body: String) -> u64 {
        let client_id = self.config.client_id_seed.wrapping_add(self.sends);
        self.sends = self.sends.wrapping_add(1);
        self.typing.sent_message(conversation);
        self.enqueue(conversation, client_id, body);
        client_id
    }

    /// Queue again a message an earlier run of the application sent but never saw
    /// acknowledged, under its original client id, so that the server stores it at most once
    /// however many runs send it. It then behaves as [`Session::send`]'s messages do. Returns
    /// false, and queues nothing, when that client id is already pending in `conversation`.
    pub fn restore(&mut self, conversation: ConversationId, client_id: u64, body: String) -> bool {
        if self.outbox.contains(conversation, client_id) {
            return false;
        }
        self.enqueue(conversation, client_id, body);
        true
    }

    /// Ask for up to `limit` messages older than the oldest one this session has seen.
    /// Returns false when there is nothing older (or the conversation is not joined). While a
    /// page is already on its way this returns true without asking again.
    pub fn load_older(&mut self, conversation: ConversationId, limit: u16) -> bool {
        if self.state != State::Ready {
            return false;
        }
        self.conversations
            .get_mut(&conversation)
            .is_some_and(|c| c.load_older(limit, &mut self.queues))
    }

    /// The resume point of a conversation (store epoch and last contiguous seq).
    pub fn cursor(&self, conversation: ConversationId) -> Option<Cursor> {
        self.conversations.get(&conversation)?.cursor()
    }

    /// Messages sent but not yet acknowledged, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &PendingSend> + '_ {
        self.outbox.iter()
    }

    /// The user has seen everything the session delivered of a joined conversation: report
    /// it read (debounced). Returns false when the conversation is not joined with a cursor.
    pub fn mark_read(&mut self, conversation: ConversationId, now_ms: u64) -> bool {
        let Some(seq) = self.cursor(conversation).map(|c| c.seq) else {
            return false;
        };
        let lazy = self.is_room(conversation);
        self.receipts.reached(conversation, seq, seq, lazy, now_ms);
        true
    }

    /// The conversation now on screen (`None`: none, e.g. the page is hidden). It is marked
    /// read now and whenever a message arrives in it while it stays on screen.
    pub fn set_viewing(&mut self, conversation: Option<ConversationId>, now_ms: u64) {
        self.viewing = conversation;
        if let Some(c) = conversation {
            self.mark_read(c, now_ms);
        }
    }

    /// The user is typing in `conversation`; call it on every keystroke. A `Typing` frame goes
    /// out at most every [`TYPING_REFRESH_MS`] per conversation, and only for a conversation
    /// of the user's list or joined here (the server ends the connection over a conversation
    /// the user may not read). Returns whether one did.
    pub fn typing(&mut self, conversation: ConversationId, now_ms: u64) -> bool {
        let known = self.list.get(conversation).is_some() || self.is_joined(conversation);
        if !known || self.state != State::Ready || !self.typing.should_send(conversation, now_ms) {
            return false;
        }
        self.queues
            .transmit(StreamKey::Control, ClientFrame::Typing { conversation });
        true
    }

    /// The user's conversation list as last reported, by conversation id (sort by
    /// `activity_ms` for display); empty before the first snapshot.
    pub fn conversations(&self) -> impl Iterator<Item = &ConversationSummary> + '_ {
        self.list.iter()
    }

    /// One entry of the conversation list.
    pub fn conversation(&self, conversation: ConversationId) -> Option<&ConversationSummary> {
        self.list.get(conversation)
    }

    /// The signed-in user, from the latest `Welcome`.
    pub fn user(&self) -> Option<UserId> {
        self.user
    }

    // ---- internals ----

    /// Put a send in the outbox, transmitting it at once when its conversation is joined and
    /// not throttled, or when its throttle's window has room.
    fn enqueue(&mut self, conversation: ConversationId, client_id: u64, body: String) {
        let throttled = self.throttles.contains(conversation);
        let transmit = self.is_joined(conversation) && !throttled;
        if transmit {
            let frame = ClientFrame::Send {
                client_id,
                body: body.clone(),
            };
            self.queues
                .transmit(StreamKey::Conversation(conversation), frame);
        }
        let send = PendingSend {
            conversation,
            client_id,
            body,
        };
        self.outbox.push(send, transmit);
        if throttled && self.throttles.paused_until(conversation).is_none() {
            self.fill_window(conversation);
        }
    }

    /// Whether the session is ready and `conversation`'s stream is live.
    fn is_joined(&self, conversation: ConversationId) -> bool {
        self.state == State::Ready
            && self
                .conversations
                .get(&conversation)
                .is_some_and(|c| c.link() == Link::Joined)
    }

    /// Whether a paused conversation could send again once its time comes: joined, something
    /// pending, and every send in flight answered (so the refused one goes first).
    fn may_resume(&self, conversation: ConversationId) -> bool {
        self.is_joined(conversation)
            && self.outbox.has(conversation)
            && self.outbox.in_flight(conversation) == 0
    }

    /// Move a throttled conversation on: released when nothing is pending; a pause ends when
    /// it is due and nothing is in flight; then its window is filled.
    fn pace(&mut self, conversation: ConversationId, now_ms: u64) {
        if !self.throttles.contains(conversation) {
            return;
        }
        if !self.outbox.has(conversation) {
            self.throttles.release(conversation);
            return;
        }
        if let Some(until) = self.throttles.paused_until(conversation) {
            if now_ms < until || !self.may_resume(conversation) {
                return;
            }
            self.throttles.resume(conversation);
        }
        self.fill_window(conversation);
    }

    /// Transmit the oldest waiting sends of a throttled conversation that is not paused, up to
    /// its window.
    fn fill_window(&mut self, conversation: ConversationId) {
        if !self.is_joined(conversation) {
            return;
        }
        let room = self
            .throttles
            .window(conversation)
            .saturating_sub(self.outbox.in_flight(conversation));
        for p in self.outbox.send_waiting(conversation, room) {
            let frame = ClientFrame::Send {
                client_id: p.client_id,
                body: p.body,
            };
            self.queues
                .transmit(StreamKey::Conversation(conversation), frame);
        }
    }

    /// Forget everything tied to the current transport: queued frames and actions, streams.
    fn reset_connection(&mut self) {
        self.early.clear();
        self.queues.transmits.clear();
        self.queues.actions.clear();
        self.outbox.landed(None);
        for conv in self.conversations.values_mut() {
            conv.disconnected();
        }
    }

    /// Ask the driver to close the connection (once per connection).
    fn request_disconnect(&mut self, reason: String) {
        if let Some(connection) = self.connection.as_mut()
            && !connection.closing
        {
            connection.closing = true;
            self.queues.actions.push_back(Action::Disconnect { reason });
        }
    }

    fn connection_timers(&mut self, now_ms: u64) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if connection.closing {
            return;
        }
        let welcomed = self.state == State::Ready;
        if now_ms >= connection.dead_at(welcomed) {
            let limit = connection.silence_limit_ms();
            let reason = if welcomed {
                format!("nothing received from the server for {limit} ms")
            } else {
                format!("no Welcome from the server within {limit} ms")
            };
            self.request_disconnect(reason);
            return;
        }
        if let Some(nonce) = connection.ping_due(now_ms) {
            self.queues
                .transmit(StreamKey::Control, ClientFrame::Ping { nonce });
        }
        if welcomed {
            for conv in self.conversations.values_mut() {
                if conv.rejoin_at().is_some_and(|at| now_ms >= at) {
                    conv.join(&mut self.queues);
                }
            }
            let paused: Vec<ConversationId> = self.throttles.paused().map(|(c, _)| c).collect();
            for c in paused {
                self.pace(c, now_ms);
            }
        }
    }

    fn on_welcome(
        &mut self,
        user: UserId,
        username: String,
        epoch: u64,
        heartbeat_ms: u32,
        now_ms: u64,
    ) {
        if self.state != State::Handshaking {
            return;
        }
        self.state = State::Ready;
        self.backoff.reset();
        self.heartbeat_ms = heartbeat_interval(u64::from(heartbeat_ms));
        if let Some(connection) = self.connection.as_mut() {
            connection.set_heartbeat(self.heartbeat_ms);
        }
        self.user = Some(user);
        self.epoch = Some(epoch);
        self.queues
            .events
            .push_back(Event::Connected { user, username });
        for (&id, conv) in &mut self.conversations {
            if conv.forget_other_epoch(epoch) {
                self.queues
                    .events
                    .push_back(Event::Reset { conversation: id });
            }
            conv.adopt_epoch(epoch);
        }
        // Those joined behind `Hello` are on their way; the rest are joined now.
        for conv in self.conversations.values_mut() {
            if conv.link() == Link::Idle {
                conv.join(&mut self.queues);
            }
        }
        for early in self.early.take() {
            match early {
                Early::Frame(c, frame) => self.on_conversation_frame(c, frame, now_ms),
                Early::Closed(c) => self.on_stream_closed(StreamKey::Conversation(c), now_ms),
            }
        }
    }

    /// Hold a conversation-stream event that came before `Welcome`; give the connection up if
    /// too many have.
    fn hold_early(&mut self, event: Early) {
        if !self.early.hold(event) {
            self.request_disconnect(format!(
                "more than {} conversation frames or {} bytes of messages before Welcome",
                early::MAX_EARLY,
                early::MAX_EARLY_BYTES
            ));
        }
    }

    fn on_go_away(&mut self, reconnect_after_ms: u32, reason: String) {
        let reconnect_after_ms = u64::from(reconnect_after_ms);
        self.queues
            .events
            .push_back(Event::GoAway { reconnect_after_ms });
        if let Some(connection) = self.connection.as_mut() {
            connection.go_away_after_ms = Some(reconnect_after_ms);
        }
        self.request_disconnect(format!("the server is going away: {reason}"));
    }

    fn on_connection_error(&mut self, code: ErrorCode, reason: String) {
        let disconnect_reason = format!("server error {code}: {reason}");
        self.queues.events.push_back(Event::Error {
            stream: StreamKey::Control,
            code,
            reason,
        });
        if matches!(
            code,
            ErrorCode::Unauthorized
                | ErrorCode::UnsupportedVersion
                | ErrorCode::Forbidden
                | ErrorCode::Banned
        ) {
            self.state = State::Failed(code);
        }
        self.request_disconnect(disconnect_reason);
    }

    /// A control-stream frame about the user's world: the conversation list and its changes,
    /// other members' receipts, friends, presence, typing.
    fn on_user_event(&mut self, frame: ServerFrame) {
        if self.state != State::Ready {
            return;
        }
        let event = match frame {
            ServerFrame::Conversations {
                conversations,
                done,
            } => {
                let Some(all) = self.list.chunk(conversations, done, self.user) else {
                    return;
                };
                for s in &all {
                    self.receipts
                        .server_has(s.conversation, s.delivered_seq, s.read_seq);
                }
                Event::ConversationList(all)
            }
            ServerFrame::ConversationUpdated(summary) => {
                self.receipts.server_has(
                    summary.conversation,
                    summary.delivered_seq,
                    summary.read_seq,
                );
                self.list.update(summary.clone());
                Event::ConversationUpdated(summary)
            }
            ServerFrame::ConversationRemoved { conversation } => {
                if !self.list.remove(conversation) {
                    return;
                }
                Event::ConversationRemoved { conversation }
            }
            ServerFrame::ConversationActivity { conversation, last } => {
                match self.list.activity(conversation, last, self.user) {
                    Some(summary) => Event::ConversationUpdated(summary.clone()),
                    None => return,
                }
            }
            ServerFrame::Receipt {
                conversation,
                user,
                delivered,
                read,
            } => Event::Receipt {
                conversation,
                user,
                delivered,
                read,
            },
            ServerFrame::Friend {
                user,
                username,
                status,
                dm,
            } => Event::Friend {
                user,
                username,
                status,
                dm,
            },
            ServerFrame::Presence {
                user,
                username,
                online,
                last_seen_ms,
            } => Event::Presence {
                user,
                username,
                online,
                last_seen_ms,
            },
            ServerFrame::Typing {
                conversation,
                user,
                username,
                typing,
            } => Event::Typing {
                conversation,
                user,
                username,
                typing,
            },
            _ => return,
        };
        self.queues.events.push_back(event);
    }

    /// Messages of `c` reached the application: report them delivered (and read if `c` is on
    /// screen).
    fn delivered(&mut self, c: ConversationId, now_ms: u64) {
        let Some(seq) = self.cursor(c).map(|cursor| cursor.seq) else {
            return;
        };
        let read = if self.viewing == Some(c) { seq } else { 0 };
        let lazy = self.is_room(c);
        self.receipts.reached(c, seq, read, lazy, now_ms);
    }

    /// Whether the conversation list says `c` is a room.
    fn is_room(&self, c: ConversationId) -> bool {
        self.list
            .get(c)
            .is_some_and(|s| s.kind == ConversationKind::Room)
    }

    fn on_conversation_frame(&mut self, c: ConversationId, frame: ServerFrame, now_ms: u64) {
        if self.state != State::Ready {
            return;
        }
        let Some(conv) = self.conversations.get_mut(&c) else {
            return;
        };
        let max_buffer = self.config.max_gap_buffer;
        let stream = StreamKey::Conversation(c);
        match frame {
            ServerFrame::Joined {
                conversation,
                epoch,
                head_seq,
                from_seq,
            } => {
                if conversation != c || conv.link() != Link::Joining {
                    return;
                }
                if conv.joined(epoch, from_seq, &mut self.queues) {
                    self.queues
                        .events
                        .push_back(Event::Reset { conversation: c });
                }
                self.queues.events.push_back(Event::Joined {
                    conversation: c,
                    head_seq,
                });
                // A new stream: nothing sent on an earlier one is in flight any more (a stream
                // ended by an error may be re-joined before its end is reported). Its sends go
                // again, in order; the server de-duplicates any it had already stored.
                self.outbox.landed(Some(c));
                if self.throttles.contains(c) {
                    self.pace(c, now_ms);
                } else {
                    for p in self.outbox.send_all(c) {
                        let frame = ClientFrame::Send {
                            client_id: p.client_id,
                            body: p.body,
                        };
                        self.queues.transmit(stream, frame);
                    }
                }
            }
            ServerFrame::Message(message) => {
                // The conversation's activity (the server sends none for it, version 4).
                let activity = (!message.is_hidden()).then(|| message.last_message());
                conv.on_message(message, max_buffer, &mut self.queues);
                self.delivered(c, now_ms);
                if let Some(last) = activity
                    && let Some(summary) = self.list.activity(c, last, self.user)
                {
                    self.queues
                        .events
                        .push_back(Event::ConversationUpdated(summary.clone()));
                }
            }
            ServerFrame::HistoryPage {
                before_seq,
                messages,
                has_more,
            } => {
                conv.on_history_page(before_seq, messages, has_more, max_buffer, &mut self.queues);
                self.delivered(c, now_ms);
            }
            ServerFrame::Sent {
                client_id,
                seq,
                sent_at_ms,
            } => {
                if self.outbox.take(c, client_id).is_some() {
                    self.queues.events.push_back(Event::Sent {
                        conversation: c,
                        client_id,
                        seq,
                        sent_at_ms,
                    });
                    self.throttles.acknowledged(c);
                    self.pace(c, now_ms);
                }
            }
            ServerFrame::Rejected {
                client_id,
                code: ErrorCode::RateLimited,
                reason,
            } => {
                let in_flight = self.outbox.in_flight(c);
                if self.outbox.refused(c, client_id) {
                    let backoff = &self.backoff;
                    let retry_in_ms = self.throttles.refused(
                        c,
                        &reason,
                        now_ms,
                        self.config.backoff_cap_ms,
                        in_flight,
                        |refusals| backoff.ceiling(refusals),
                    );
                    self.queues.events.push_back(Event::Throttled {
                        conversation: c,
                        client_id,
                        retry_in_ms,
                    });
                }
            }
            ServerFrame::Rejected {
                client_id,
                code,
                reason,
            } => {
                if self.outbox.take(c, client_id).is_some() {
                    self.queues.events.push_back(Event::Rejected {
                        conversation: c,
                        client_id,
                        code,
                        reason,
                    });
                    self.pace(c, now_ms);
                }
            }
            ServerFrame::Error { code, reason } => {
                if conv.link() == Link::Idle {
                    return;
                }
                self.queues.events.push_back(Event::Error {
                    stream,
                    code,
                    reason,
                });
                if matches!(code, ErrorCode::UnknownConversation | ErrorCode::Forbidden) {
                    self.conversations.remove(&c);
                    // Nothing may be reported about a conversation the server refuses.
                    let _ = self.receipts.forget(c);
                } else {
                    conv.failed();
                }
            }
            ServerFrame::Lagged { .. } => conv.lagged(),
            ServerFrame::Deleted { conversation, seq } if conversation == c => {
                conv.on_deleted(seq, &mut self.queues);
            }
            ServerFrame::Deleted { .. } => {}
            // Control-stream frames never come on a conversation stream.
            ServerFrame::Welcome { .. }
            | ServerFrame::Pong { .. }
            | ServerFrame::GoAway { .. }
            | ServerFrame::Conversations { .. }
            | ServerFrame::ConversationUpdated(_)
            | ServerFrame::ConversationRemoved { .. }
            | ServerFrame::ConversationActivity { .. }
            | ServerFrame::Receipt { .. }
            | ServerFrame::Friend { .. }
            | ServerFrame::Presence { .. }
            | ServerFrame::Typing { .. } => {}
        }
    }
}

/// Whether a conversation the application asks for in `state` is joined at once: when ready,
/// and before `Welcome` too (`pipelined` behind `Hello`) unless it waits for the store's epoch.
fn joins_now(state: State, pipelined: bool, conv: &Conversation) -> bool {
    match state {
        State::Ready => true,
        State::Handshaking => pipelined && !conv.waits_for_epoch(),
        State::Connecting | State::Reconnecting { .. } | State::Failed(_) => false,
    }
}
