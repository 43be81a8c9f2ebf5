//! The JavaScript side of the boundary: the TypeScript shapes of everything the page sees,
//! session events converted to plain objects, and small browser helpers (clock, randomness,
//! timers, object building).

use js_sys::{Array, Math, Object, Reflect};
use quibble_protocol::session::{Event, State, StreamKey};
use quibble_protocol::{ChatMessage, ConversationKind, ConversationSummary, FriendStatus};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
export interface User { id: number; username: string; role: "user" | "admin"; created_at_ms: number }
export interface Auth { user: User; token: string; expires_at_ms: number }
export interface Room { id: number; name: string; created_at_ms: number; head_seq: number }
export interface RoomPage { rooms: Room[]; next: number | null }
export type Transport = "webtransport" | "websocket";
export interface ChatMessage {
  conversation: number; seq: number; author: number; authorName: string;
  /** The id the author's client chose (a decimal string: it may exceed 2^53). */
  clientId: string; sentAtMs: number; body: string;
  /** A deleted message's tombstone: seq, author and time kept, body "" ("message deleted"). */
  deleted: boolean;
  /** In place of a message from a user this user blocks: no author (0), no name, no body. */
  hidden: boolean;
}
export type ClientEvent =
  | { type: "state"; state: "connecting" | "handshaking" | "ready" | "reconnecting" | "failed";
      transport: Transport | null; retryAtMs?: number; attempt?: number; code?: string }
  | { type: "transportFailed"; transport: Transport; reason: string }
  | { type: "transportClosed"; transport: Transport; reason: string }
  | { type: "connected"; user: number; username: string }
  | { type: "joined"; conversation: number; headSeq: number }
  | { type: "reset"; conversation: number }
  | { type: "message"; message: ChatMessage }
  | { type: "history"; conversation: number; messages: ChatMessage[]; hasMore: boolean }
  | { type: "sent"; conversation: number; clientId: string; seq: number; sentAtMs: number }
  | { type: "throttled"; conversation: number; clientId: string; retryInMs: number }
  | { type: "rejected"; conversation: number; clientId: string; code: string; reason: string }
  | { type: "error"; conversation: number | null; code: string; reason: string }
  | { type: "goaway"; reconnectAfterMs: number }
  | { type: "disconnected" }
  /** The whole conversation list, newest activity first: after every connect (replace yours). */
  | { type: "conversations"; conversations: ConversationSummary[] }
  /** One entry as it is now: added (room joined, new DM), own cursors moved, or a new message. */
  | { type: "conversationUpdated"; summary: ConversationSummary }
  /** The user left the room; drop it from the list. */
  | { type: "conversationRemoved"; conversation: number }
  /** Another member's cursors moved (ticks, "seen by"). */
  | { type: "receipt"; conversation: number; user: number; delivered: number; read: number }
  /** How the user stands with `user` changed; `dm` is the pair's DM once they have one. */
  | { type: "friend"; user: number; username: string;
      status: "none" | "friends" | "outgoing" | "incoming"; dm: number | null }
  /** A friend's or room co-member's presence; `lastSeenMs` is 0 while online. */
  | { type: "presence"; user: number; username: string; online: boolean; lastSeenMs: number }
  /** `user` started or stopped typing (the server says when it ran out); void after "disconnected". */
  | { type: "typing"; conversation: number; user: number; username: string; typing: boolean }
  /** A message delivered before was deleted: show it as "message deleted" (its tombstone). */
  | { type: "deleted"; conversation: number; seq: number };
export interface LastMessage { seq: number; author: number; authorName: string; preview: string; sentAtMs: number }
export interface ConversationSummary {
  conversation: number; kind: "room" | "dm"; /** The DM's other member. */ peer: number | null;
  /** The room's name or the friend's username. */ title: string;
  headSeq: number; deliveredSeq: number; readSeq: number;
  /** DMs: how far the friend has received and read. */
  peerDeliveredSeq: number | null; peerReadSeq: number | null;
  unread: number; last: LastMessage | null; activityMs: number;
}
export interface Friend { id: number; username: string; dm: number | null }
export interface Friends { friends: Friend[]; incoming: Friend[]; outgoing: Friend[] }
export interface FriendChange { status: string; user: Friend }
export interface Dm { conversation: number; user: Friend; can_send: boolean }
export interface Membership { room: number; member: boolean; changed: boolean }
export interface MemberReceipt { user_id: number; username: string; delivered_seq: number; read_seq: number }
export interface UserRef { id: number; username: string }
export interface Deletion { conversation: number; seq: number; deleted: true }
export interface Blocked { id: number; username: string; since_ms: number }
export interface BlockChange { user: UserRef; blocked: boolean; changed: boolean }
/** `until_ms` null: for good; `by`: the admin's username, or "operator". */
export interface Ban { user: UserRef; reason: string; created_at_ms: number; until_ms: number | null; by: string }
export interface IpBan { network: string; reason: string; created_at_ms: number; until_ms: number | null; by: string }
export interface AuditEntry {
  id: number; at_ms: number; actor: string;
  action: "promote" | "demote" | "ban" | "unban" | "ip_ban_add" | "ip_ban_remove" | "delete_message";
  target: string; reason: string | null;
}
export interface AuditPage { entries: AuditEntry[]; next: number | null }
export interface ClientOptions {
  /** Bearer token from `login` or `signup`. */
  token: string;
  /** Called with every event, in order. */
  onEvent: (event: ClientEvent) => void;
  /** UDP port for WebTransport instead of the one `/api/cert` announces. */
  webTransportPort?: number;
  /** How long WebTransport gets before a WebSocket is raced against it (default 300 ms). */
  raceDelayMs?: number;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// The options of `Client.connect` (see the TypeScript interface).
    #[wasm_bindgen(typescript_type = "ClientOptions")]
    pub type ClientOptions;
}

/// Largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Wall-clock milliseconds.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// 64 random bits (two draws of `Math.random`, 32 bits each).
pub fn random_u64() -> u64 {
    let draw = || (Math::random() * 4_294_967_296.0) as u64;
    (draw() << 32) | draw()
}

/// A non-negative integer id from a JS number.
pub fn id_from_js(value: f64) -> Result<u64, JsError> {
    if value.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(&value) {
        Ok(value as u64)
    } else {
        Err(JsError::new("ids are non-negative integers"))
    }
}

/// A property of a JS object, `undefined` if absent or unreadable.
pub fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A plain JS object under construction.
pub struct Obj(Object);

impl Obj {
    pub fn new() -> Self {
        Obj(Object::new())
    }

    pub fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        // Setting a fresh property on a plain object cannot throw.
        let _ = Reflect::set(&self.0, &JsValue::from_str(key), &value.into());
        self
    }

    pub fn build(self) -> JsValue {
        self.0.into()
    }
}

/// A JS `Error` with a stable `code` (and an HTTP `status` when there is one).
pub fn error(code: &str, message: &str, status: Option<u16>) -> JsValue {
    let error: JsValue = js_sys::Error::new(message).into();
    let _ = Reflect::set(&error, &"code".into(), &code.into());
    if let Some(status) = status {
        let _ = Reflect::set(&error, &"status".into(), &status.into());
    }
    error
}

/// The `state` event for a session state and the transport carrying it.
pub fn state_event(state: State, transport: Option<&str>) -> JsValue {
    let obj = Obj::new().set("type", "state").set(
        "transport",
        transport.map_or(JsValue::NULL, JsValue::from_str),
    );
    match state {
        State::Connecting => obj.set("state", "connecting"),
        State::Handshaking => obj.set("state", "handshaking"),
        State::Ready => obj.set("state", "ready"),
        State::Reconnecting {
            retry_at_ms,
            attempt,
        } => obj
            .set("state", "reconnecting")
            .set("retryAtMs", retry_at_ms as f64)
            .set("attempt", attempt),
        State::Failed(code) => obj.set("state", "failed").set("code", code.as_str()),
    }
    .build()
}

/// The `transportFailed` event: one leg of a connection race failed.
pub fn transport_failed(transport: &str, reason: &str) -> JsValue {
    Obj::new()
        .set("type", "transportFailed")
        .set("transport", transport)
        .set("reason", reason)
        .build()
}

/// The `transportClosed` event: the connected link dropped (the session reconnects).
pub fn transport_closed(transport: &str, reason: &str) -> JsValue {
    Obj::new()
        .set("type", "transportClosed")
        .set("transport", transport)
        .set("reason", reason)
        .build()
}

/// A readable description of a JS exception.
pub fn describe(error: &JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => error
            .as_string()
            .unwrap_or_else(|| "unknown error".to_owned()),
    }
}

/// A session event as the page sees it.
pub fn event(event: Event) -> JsValue {
    let obj = Obj::new();
    match event {
        Event::Connected { user, username } => obj
            .set("type", "connected")
            .set("user", user.0 as f64)
            .set("username", username),
        Event::Joined {
            conversation,
            head_seq,
        } => obj
            .set("type", "joined")
            .set("conversation", conversation.0 as f64)
            .set("headSeq", head_seq as f64),
        Event::Reset { conversation } => obj
            .set("type", "reset")
            .set("conversation", conversation.0 as f64),
        Event::Message(message) => obj.set("type", "message").set("message", chat(message)),
        Event::History {
            conversation,
            messages,
            has_more,
        } => obj
            .set("type", "history")
            .set("conversation", conversation.0 as f64)
            .set(
                "messages",
                messages.into_iter().map(chat).collect::<Array>(),
            )
            .set("hasMore", has_more),
        Event::Sent {
            conversation,
            client_id,
            seq,
            sent_at_ms,
        } => obj
            .set("type", "sent")
            .set("conversation", conversation.0 as f64)
            .set("clientId", client_id.to_string())
            .set("seq", seq as f64)
            .set("sentAtMs", sent_at_ms as f64),
        Event::Throttled {
            conversation,
            client_id,
            retry_in_ms,
        } => obj
            .set("type", "throttled")
            .set("conversation", conversation.0 as f64)
            .set("clientId", client_id.to_string())
            .set("retryInMs", retry_in_ms as f64),
        Event::Rejected {
            conversation,
            client_id,
            code,
            reason,
        } => obj
            .set("type", "rejected")
            .set("conversation", conversation.0 as f64)
            .set("clientId", client_id.to_string())
            .set("code", code.as_str())
            .set("reason", reason),
        Event::Error {
            stream,
            code,
            reason,
        } => obj
            .set("type", "error")
            .set(
                "conversation",
                match stream {
                    StreamKey::Control => JsValue::NULL,
                    StreamKey::Conversation(c) => JsValue::from(c.0 as f64),
                },
            )
            .set("code", code.as_str())
            .set("reason", reason),
        Event::GoAway { reconnect_after_ms } => obj
            .set("type", "goaway")
            .set("reconnectAfterMs", reconnect_after_ms as f64),
        Event::Disconnected => obj.set("type", "disconnected"),
        Event::ConversationList(all) => obj.set("type", "conversations").set(
            "conversations",
            all.into_iter().map(summary).collect::<Array>(),
        ),
        Event::ConversationUpdated(s) => obj
            .set("type", "conversationUpdated")
            .set("summary", summary(s)),
        Event::ConversationRemoved { conversation } => obj
            .set("type", "conversationRemoved")
            .set("conversation", conversation.0 as f64),
        Event::Receipt {
            conversation,
            user,
            delivered,
            read,
        } => obj
            .set("type", "receipt")
            .set("conversation", conversation.0 as f64)
            .set("user", user.0 as f64)
            .set("delivered", delivered as f64)
            .set("read", read as f64),
        Event::Friend {
            user,
            username,
            status,
            dm,
        } => obj
            .set("type", "friend")
            .set("user", user.0 as f64)
            .set("username", username)
            .set(
                "status",
                match status {
                    FriendStatus::None => "none",
                    FriendStatus::Friends => "friends",
                    FriendStatus::Outgoing => "outgoing",
                    FriendStatus::Incoming => "incoming",
                },
            )
            .set("dm", opt(dm.map(|c| c.0))),
        Event::Presence {
            user,
            username,
            online,
            last_seen_ms,
        } => obj
            .set("type", "presence")
            .set("user", user.0 as f64)
            .set("username", username)
            .set("online", online)
            .set("lastSeenMs", last_seen_ms as f64),
        Event::Typing {
            conversation,
            user,
            username,
            typing,
        } => obj
            .set("type", "typing")
            .set("conversation", conversation.0 as f64)
            .set("user", user.0 as f64)
            .set("username", username)
            .set("typing", typing),
        Event::Deleted { conversation, seq } => obj
            .set("type", "deleted")
            .set("conversation", conversation.0 as f64)
            .set("seq", seq as f64),
    }
    .build()
}

/// A number, or `null`.
fn opt(value: Option<u64>) -> JsValue {
    value.map_or(JsValue::NULL, |v| JsValue::from(v as f64))
}

/// A conversation list entry as the page sees it.
pub fn summary(s: ConversationSummary) -> JsValue {
    let (kind, peer) = match s.kind {
        ConversationKind::Room => ("room", None),
        ConversationKind::Dm { peer } => ("dm", Some(peer.0)),
    };
    let last = s.last.map_or(JsValue::NULL, |l| {
        Obj::new()
            .set("seq", l.seq as f64)
            .set("author", l.author.0 as f64)
            .set("authorName", l.author_name)
            .set("preview", l.preview)
            .set("sentAtMs", l.sent_at_ms as f64)
            .build()
    });
    Obj::new()
        .set("conversation", s.conversation.0 as f64)
        .set("kind", kind)
        .set("peer", opt(peer))
        .set("title", s.title)
        .set("headSeq", s.head_seq as f64)
        .set("deliveredSeq", s.delivered_seq as f64)
        .set("readSeq", s.read_seq as f64)
        .set("peerDeliveredSeq", opt(s.peer_delivered_seq))
        .set("peerReadSeq", opt(s.peer_read_seq))
        .set("unread", s.unread as f64)
        .set("last", last)
        .set("activityMs", s.activity_ms as f64)
        .build()
}

fn chat(m: ChatMessage) -> JsValue {
    let (deleted, hidden) = (m.is_deleted(), m.is_hidden());
    Obj::new()
        .set("conversation", m.conversation.0 as f64)
        .set("seq", m.seq as f64)
        .set("author", m.author.0 as f64)
        .set("authorName", m.author_name)
        .set("clientId", m.client_id.to_string())
        .set("sentAtMs", m.sent_at_ms as f64)
        .set("deleted", deleted)
        .set("hidden", hidden)
        .set("body", m.body)
        .build()
}

/// A `setTimeout` that is cleared when dropped.
pub struct Timeout {
    handle: i32,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    /// Run `f` after `delay_ms` (None without a window to schedule on).
    pub fn new(delay_ms: u64, f: impl FnOnce() + 'static) -> Option<Timeout> {
        let callback = Closure::once(f);
        let delay = i32::try_from(delay_ms).unwrap_or(i32::MAX);
        let handle = web_sys::window()?
            .set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                delay,
            )
            .ok()?;
        Some(Timeout {
            handle,
            _callback: callback,
        })
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            window.clear_timeout_with_handle(self.handle);
        }
    }
}
