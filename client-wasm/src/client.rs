//! The exported `Client` and the driver behind it: one `protocol::session::Session` and the
//! I/O around it, in the manner of quinn around quinn-proto.
//!
//! The driver carries out the session's actions (connect, disconnect), sends its transmits on
//! the current link, feeds it received frames, stream ends and the clock, and forwards its
//! events to the page. A connect is a race: WebTransport starts at once, a WebSocket
//! `raceDelayMs` later (or as soon as WebTransport fails); the first link to be ready wins,
//! the other is closed, and every reconnect races again from WebTransport.
//!
//! Every browser callback holds a weak reference to the driver and the generation of the
//! connect attempt it belongs to, so a late callback from a lost or losing link is ignored.
//! Events are handed to JavaScript only after the driver is released, so the page may call
//! back into the client from its event handler.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use js_sys::Function;
use quibble_protocol::limits::{MAX_BODY_LEN, MAX_HISTORY_PAGE};
use quibble_protocol::session::{Action, Session, SessionConfig, State, StreamKey, StreamOrder};
use quibble_protocol::{ConversationId, ErrorCode, ServerFrame};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{WebTransport, WritableStreamDefaultWriter};

use crate::js::{self, ClientOptions, Timeout};
use crate::ws::{Received, WsLink};
use crate::wt::{self, WtLink};

/// Default head start of WebTransport over the WebSocket fallback.
const DEFAULT_RACE_DELAY_MS: u64 = 300;
/// Longest head start the options may ask for.
const MAX_RACE_DELAY_MS: u64 = 10_000;
/// A connect attempt with neither leg ready by then has failed (a black-holed TCP connect
/// would otherwise wait for the browser's own, much longer, timeout).
const CONNECT_TIMEOUT_MS: u64 = 15_000;

pub(crate) type DriverRef = Weak<RefCell<Driver>>;

/// A realtime session with the server this page came from.
#[wasm_bindgen]
pub struct Client {
    driver: Rc<RefCell<Driver>>,
}

#[wasm_bindgen]
impl Client {
    /// Start a session: connects at once and reconnects by itself until `close`.
    pub fn connect(options: ClientOptions) -> Result<Client, JsError> {
        let options: JsValue = options.into();
        let token = js::get(&options, "token")
            .as_string()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| JsError::new("options.token must be a non-empty string"))?;
        let on_event: Function = js::get(&options, "onEvent")
            .dyn_into()
            .map_err(|_| JsError::new("options.onEvent must be a function"))?;
        let wt_port = match js::get(&options, "webTransportPort").as_f64() {
            None => None,
            Some(port) => Some(
                u16::try_from(js::id_from_js(port)?)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| JsError::new("options.webTransportPort must be 1-65535"))?,
            ),
        };
        let race_delay_ms = match js::get(&options, "raceDelayMs").as_f64() {
            None => DEFAULT_RACE_DELAY_MS,
            Some(ms) => js::id_from_js(ms)?.min(MAX_RACE_DELAY_MS),
        };
        let session = Session::new(SessionConfig::new(token, js::random_u64()));
        let driver = Rc::new_cyclic(|me| {
            RefCell::new(Driver {
                me: me.clone(),
                session,
                on_event,
                wt_port,
                race_delay_ms,
                generation: 0,
                race: None,
                link: None,
                timer: None,
                events: VecDeque::new(),
                shown: None,
                closed: false,
            })
        });
        run(&driver, |_| ());
        Ok(Client { driver })
    }

    /// Join a conversation (a room id); its recent history and live messages follow as events.
    pub fn join(&self, conversation: f64) -> Result<(), JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        run(&self.driver, |d| d.session.join(conversation));
        Ok(())
    }

    /// Leave a conversation.
    pub fn leave(&self, conversation: f64) -> Result<(), JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        run(&self.driver, |d| d.session.leave(conversation));
        Ok(())
    }

    /// Queue a message; returns its client id (a decimal string), which the `sent` event and
    /// the echoed `message` carry. Sent as soon as the conversation is joined, and resent
    /// after reconnects until the server has it.
    pub fn send(&self, conversation: f64, body: String) -> Result<String, JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        check_body(&body)?;
        let id = run(&self.driver, |d| d.session.send(conversation, body));
        Ok(id.to_string())
    }

    /// Queue again a message that an earlier page sent (`send`) but never saw `sent` or
    /// `rejected` for, under its original client id (`BigInt` of the decimal string `send`
    /// returned): the server stores a client id once per author and conversation, so the
    /// message is stored at most once however often it is restored. False when that id is
    /// already pending.
    pub fn restore(
        &self,
        conversation: f64,
        #[wasm_bindgen(js_name = clientId)] client_id: u64,
        body: String,
    ) -> Result<bool, JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        check_body(&body)?;
        Ok(run(&self.driver, |d| {
            d.session.restore(conversation, client_id, body)
        }))
    }

    /// Ask for up to `limit` (default and at most 50) messages older than the oldest one seen;
    /// they arrive as a `history` event. False when there is nothing older.
    #[wasm_bindgen(js_name = loadOlder)]
    pub fn load_older(&self, conversation: f64, limit: Option<u16>) -> Result<bool, JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        let limit = limit.unwrap_or(MAX_HISTORY_PAGE).clamp(1, MAX_HISTORY_PAGE);
        Ok(run(&self.driver, |d| {
            d.session.load_older(conversation, limit)
        }))
    }

    /// Join a conversation starting after `seq` (typically the `readSeq` of its list entry)
    /// instead of with the recent page: exactly the unread messages follow, then live ones;
    /// `loadOlder` pages back from there. Like `join` if the client already has a cursor.
    #[wasm_bindgen(js_name = joinFrom)]
    pub fn join_from(&self, conversation: f64, seq: f64) -> Result<(), JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        let seq = js::id_from_js(seq)?;
        run(&self.driver, |d| d.session.join_from(conversation, seq));
        Ok(())
    }

    /// The user has seen what arrived so far in a joined conversation: report it read
    /// (debounced, 500 ms). False when the conversation is not joined yet. Messages arriving
    /// are reported delivered by themselves.
    #[wasm_bindgen(js_name = markRead)]
    pub fn mark_read(&self, conversation: f64) -> Result<bool, JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        Ok(run(&self.driver, |d| {
            d.session.mark_read(conversation, js::now_ms())
        }))
    }

    /// The conversation on screen (page visible and focused), or `null` when none is: it is
    /// marked read now and as messages arrive while it stays on screen.
    #[wasm_bindgen(js_name = setViewing)]
    pub fn set_viewing(&self, conversation: Option<f64>) -> Result<(), JsError> {
        let conversation = conversation
            .map(|c| js::id_from_js(c).map(ConversationId))
            .transpose()?;
        run(&self.driver, |d| {
            d.session.set_viewing(conversation, js::now_ms())
        });
        Ok(())
    }

    /// The user is typing in a conversation: call it on every input event; a `Typing` frame
    /// goes out at most every 3 s (the indicator lasts 5 s). Returns whether one went out.
    pub fn typing(&self, conversation: f64) -> Result<bool, JsError> {
        let conversation = ConversationId(js::id_from_js(conversation)?);
        Ok(run(&self.driver, |d| {
            d.session.typing(conversation, js::now_ms())
        }))
    }

    /// The conversation list as the server last reported it, by conversation id (the same
    /// entries as the `conversations` / `conversationUpdated` events; sort by `activityMs`).
    #[wasm_bindgen(unchecked_return_type = "ConversationSummary[]")]
    pub fn conversations(&self) -> js_sys::Array {
        let d = self.driver.borrow();
        d.session
            .conversations()
            .map(|s| js::summary(s.clone()))
            .collect()
    }

    /// Close the connection for good; the client does nothing more.
    pub fn close(&self) {
        run(&self.driver, Driver::close);
    }
}

/// A message body the server would refuse for its length is refused here already.
fn check_body(body: &str) -> Result<(), JsError> {
    if body.len() > MAX_BODY_LEN {
        return Err(JsError::new(&format!(
            "a message is at most {MAX_BODY_LEN} bytes of UTF-8"
        )));
    }
    Ok(())
}

/// Run `f` on the driver, let the session act on what changed, then deliver the queued
/// events one at a time with the driver released. A call the page makes from its handler
/// runs this again and drains the same queue, so events still arrive in order.
fn run<R>(driver: &Rc<RefCell<Driver>>, f: impl FnOnce(&mut Driver) -> R) -> R {
    let result = {
        let mut d = driver.borrow_mut();
        let result = f(&mut d);
        d.drive();
        result
    };
    loop {
        let next = {
            let mut d = driver.borrow_mut();
            let callback = d.on_event.clone();
            d.events.pop_front().map(|event| (event, callback))
        };
        let Some((event, callback)) = next else {
            return result;
        };
        // An exception in the page's handler is the page's business; keep going.
        let _ = callback.call1(&JsValue::NULL, &event);
    }
}

/// [`run`] from a browser callback; nothing if the client is gone.
pub(crate) fn with_driver<R>(driver: &DriverRef, f: impl FnOnce(&mut Driver) -> R) -> Option<R> {
    driver.upgrade().map(|driver| run(&driver, f))
}

/// The transport a link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    WebTransport,
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::WebTransport => "webtransport",
            Transport::WebSocket => "websocket",
        }
    }
}

/// A connected transport.
pub(crate) enum Link {
    Wt(WtLink),
    Ws(WsLink),
}

impl Link {
    fn transport(&self) -> Transport {
        match self {
            Link::Wt(_) => Transport::WebTransport,
            Link::Ws(_) => Transport::WebSocket,
        }
    }
}

/// A connect attempt in progress.
struct Race {
    generation: u64,
    /// The WebTransport leg's transport once created, to close it if it loses.
    wt: Option<WebTransport>,
    wt_failed: bool,
    /// The WebSocket leg, once started.
    ws: Option<WsLink>,
    ws_failed: bool,
    /// Starts the WebSocket leg when WebTransport has had its head start.
    ws_start: Option<Timeout>,
    /// Gives up on the attempt after [`CONNECT_TIMEOUT_MS`].
    _give_up: Option<Timeout>,
}

impl Race {
    fn ws_started(&self) -> bool {
        self.ws.is_some() || self.ws_failed
    }
}

impl Drop for Race {
    fn drop(&mut self) {
        if let Some(wt) = &self.wt {
            wt.close();
        }
    }
}

pub(crate) struct Driver {
    me: DriverRef,
    session: Session,
    on_event: Function,
    wt_port: Option<u16>,
    race_delay_ms: u64,
    /// Bumped for every connect attempt; links and callbacks carry theirs.
    generation: u64,
    race: Option<Race>,
    link: Option<Link>,
    /// The session's next timeout and the timer armed for it.
    timer: Option<(u64, Timeout)>,
    /// Events for the page, delivered once the driver is released.
    events: VecDeque<JsValue>,
    /// The state last reported to the page.
    shown: Option<(State, Option<Transport>)>,
    closed: bool,
}

impl Driver {
    /// Let the session act until it has nothing more to do, then report and re-arm.
    fn drive(&mut self) {
        if self.closed {
            return;
        }
        loop {
            let mut busy = false;
            while let Some(action) = self.session.poll_action() {
                busy = true;
                match action {
                    Action::Connect => self.start_race(),
                    Action::Disconnect { reason } => self.lose(&reason),
                }
            }
            while let Some(transmit) = self.session.poll_transmit() {
                busy = true;
                // Without a link the frame is dropped: the session resends what matters after
                // the next connect.
                match &mut self.link {
                    Some(Link::Wt(link)) => link.send(transmit),
                    Some(Link::Ws(link)) => link.send(transmit),
                    None => {}
                }
            }
            while let Some(event) = self.session.poll_event() {
                busy = true;
                self.events.push_back(js::event(event));
            }
            if !busy {
                break;
            }
        }
        self.report_state();
        self.arm_timer();
    }

    fn report_state(&mut self) {
        let shown = (
            self.session.state(),
            self.link.as_ref().map(Link::transport),
        );
        if self.shown != Some(shown) {
            self.shown = Some(shown);
            self.events
                .push_back(js::state_event(shown.0, shown.1.map(Transport::name)));
        }
    }

    fn arm_timer(&mut self) {
        let next = self.session.poll_timeout();
        if self.timer.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        self.timer = next.and_then(|at| {
            let me = self.me.clone();
            let delay = at.saturating_sub(js::now_ms());
            let timeout = Timeout::new(delay, move || {
                with_driver(&me, |d| {
                    d.timer = None;
                    d.session.handle_timeout(js::now_ms());
                });
            })?;
            Some((at, timeout))
        });
    }

    fn close(&mut self) {
        self.closed = true;
        self.race = None;
        self.link = None;
        self.timer = None;
    }

    /// The link (or the connect attempt) is gone: tell the session, which schedules a reconnect.
    fn lose(&mut self, reason: &str) {
        let link = self.link.take();
        if let Some(link) = &link {
            self.events
                .push_back(js::transport_closed(link.transport().name(), reason));
        }
        if link.is_some() | self.race.take().is_some() {
            self.session.on_disconnected(js::now_ms(), js::random_u64());
        }
    }

    // ---- the connect race ----

    fn start_race(&mut self) {
        self.link = None;
        self.generation += 1;
        let generation = self.generation;
        let me = self.me.clone();
        let ws_start = Timeout::new(self.race_delay_ms, move || {
            with_driver(&me, |d| d.start_ws(generation));
        });
        let me = self.me.clone();
        let give_up = Timeout::new(CONNECT_TIMEOUT_MS, move || {
            with_driver(&me, |d| {
                if d.race_mut(generation).is_some() {
                    d.lose("no transport was ready in time");
                }
            });
        });
        self.race = Some(Race {
            generation,
            wt: None,
            wt_failed: false,
            ws: None,
            ws_failed: false,
            ws_start,
            _give_up: give_up,
        });
        js_sys::futures::spawn_local(wt::connect(self.me.clone(), generation, self.wt_port));
    }

    fn race_mut(&mut self, generation: u64) -> Option<&mut Race> {
        self.race.as_mut().filter(|r| r.generation == generation)
    }

    fn start_ws(&mut self, generation: u64) {
        let me = self.me.clone();
        let Some(race) = self.race_mut(generation) else {
            return;
        };
        race.ws_start = None;
        if race.ws_started() {
            return;
        }
        match WsLink::open(me, generation) {
            Ok(link) => race.ws = Some(link),
            Err(reason) => self.leg_failed(generation, Transport::WebSocket, &reason),
        }
    }

    /// The WebTransport leg created its transport (not ready yet).
    pub(crate) fn wt_created(&mut self, generation: u64, transport: &WebTransport) -> bool {
        match self.race_mut(generation) {
            Some(race) => {
                race.wt = Some(transport.clone());
                true
            }
            None => false,
        }
    }

    /// A leg is ready: it wins if its race is still on.
    pub(crate) fn leg_ready(&mut self, generation: u64, link: Link) {
        let Some(mut race) = self.race.take_if(|r| r.generation == generation) else {
            return; // Dropping the late link closes it.
        };
        if matches!(link, Link::Wt(_)) {
            race.wt = None; // the winner: not to be closed with the race
        }
        drop(race);
        let mut link = link;
        let order = match &mut link {
            Link::Wt(wt) => {
                wt.start();
                StreamOrder::PerStream
            }
            Link::Ws(_) => StreamOrder::Shared,
        };
        self.link = Some(link);
        self.session.on_connected(js::now_ms(), order);
    }

    /// A leg failed; the race is lost when both have.
    pub(crate) fn leg_failed(&mut self, generation: u64, transport: Transport, reason: &str) {
        let Some(race) = self.race_mut(generation) else {
            return;
        };
        let already = match transport {
            Transport::WebTransport => std::mem::replace(&mut race.wt_failed, true),
            Transport::WebSocket => {
                race.ws = None;
                std::mem::replace(&mut race.ws_failed, true)
            }
        };
        if already {
            return;
        }
        let both = race.wt_failed && race.ws_failed;
        let start_ws = transport == Transport::WebTransport && !race.ws_started();
        self.events
            .push_back(js::transport_failed(transport.name(), reason));
        if start_ws {
            self.start_ws(generation);
        } else if both {
            self.lose(reason);
        }
    }

    /// The current link, if it belongs to `generation`.
    fn link_mut(&mut self, generation: u64) -> Option<&mut Link> {
        self.link.as_mut().filter(|l| match l {
            Link::Wt(wt) => wt.generation() == generation,
            Link::Ws(ws) => ws.generation() == generation,
        })
    }

    /// The server closed the current link with a protocol error code: that is the `Error`
    /// the control stream carries before such a close, which a closing transport may drop.
    /// Nothing if the session already had it (it then dropped the link).
    pub(crate) fn closed_with(&mut self, generation: u64, code: ErrorCode, reason: String) {
        if self.link_mut(generation).is_some() {
            let error = ServerFrame::Error { code, reason };
            self.session
                .on_frame(StreamKey::Control, error, js::now_ms());
        }
    }

    // ---- WebSocket callbacks ----

    pub(crate) fn ws_opened(&mut self, generation: u64) {
        if let Some(link) = self.race_mut(generation).and_then(|r| r.ws.take()) {
            self.leg_ready(generation, Link::Ws(link));
        }
    }

    pub(crate) fn ws_closed(&mut self, generation: u64, reason: &str) {
        if self.race_mut(generation).is_some_and(|r| r.ws.is_some()) {
            self.leg_failed(generation, Transport::WebSocket, reason);
        } else if let Some(Link::Ws(_)) = self.link_mut(generation) {
            self.lose(reason);
        }
    }

    pub(crate) fn ws_message(&mut self, generation: u64, data: &[u8]) {
        let Some(Link::Ws(link)) = self.link_mut(generation) else {
            return;
        };
        match link.receive(data) {
            Some(Received::Frame(key, frame)) => self.session.on_frame(key, frame, js::now_ms()),
            Some(Received::Ended(key, reason)) => self.stream_ended(key, reason),
            None => {}
        }
    }

    // ---- WebTransport callbacks ----

    pub(crate) fn wt_closed(&mut self, generation: u64, reason: &str) {
        if self.race_mut(generation).is_some() {
            self.leg_failed(generation, Transport::WebTransport, reason);
        } else if let Some(Link::Wt(_)) = self.link_mut(generation) {
            self.lose(reason);
        }
    }

    /// WebTransport stream `id` is created: returns whether to read it.
    pub(crate) fn wt_stream_opened(
        &mut self,
        generation: u64,
        id: u64,
        writer: WritableStreamDefaultWriter,
    ) -> bool {
        match self.link_mut(generation) {
            Some(Link::Wt(link)) => link.opened(id, writer),
            _ => {
                let _ = writer.abort();
                false
            }
        }
    }

    /// Frames decoded from WebTransport stream `id`, and whether the decoder then hit a
    /// malformed one. Returns whether to keep reading the stream.
    pub(crate) fn wt_frames(
        &mut self,
        generation: u64,
        id: u64,
        frames: Vec<ServerFrame>,
        malformed: bool,
    ) -> bool {
        let Some(Link::Wt(link)) = self.link_mut(generation) else {
            return false;
        };
        let now = js::now_ms();
        let key = link.live(id);
        if let Some(key) = key {
            for frame in frames {
                self.session.on_frame(key, frame, now);
            }
        }
        if !malformed {
            // Keep reading a replaced stream too, until the server ends it.
            return true;
        }
        if let Some(Link::Wt(link)) = self.link_mut(generation) {
            let ended = link.end(id, true);
            self.stream_ended(ended, "malformed frame");
        }
        false
    }

    /// WebTransport stream `id` ended (the server finished or reset it, or it failed to open).
    pub(crate) fn wt_stream_end(&mut self, generation: u64, id: u64) {
        if let Some(Link::Wt(link)) = self.link_mut(generation) {
            let ended = link.end(id, false);
            self.stream_ended(ended, "the server closed the control stream");
        }
    }

    /// Tell the session a logical stream ended; a control stream ending ends the connection.
    fn stream_ended(&mut self, ended: Option<StreamKey>, reason: &str) {
        match ended {
            Some(StreamKey::Control) => self.lose(reason),
            Some(key) => self.session.on_stream_closed(key, js::now_ms()),
            None => {}
        }
    }
}
