//! The Quibble browser client: `protocol::session` driven over the browser's WebTransport, with
//! a WebSocket raced a moment later as the fallback, exported to the page with wasm-bindgen
//! (`Client` for the realtime session, free functions for the REST API).
//!
//! The session decides everything (framing, resume points, resends, heartbeats, backoff); this
//! crate only moves bytes, time and randomness into it and hands its events to JavaScript.
//! The browser-facing modules exist only on `wasm32`; the pure bookkeeping they share
//! ([`streams`], [`cert_hash`]) builds and is tested on the host too.
//!
//! What the page gets (TypeScript types in the generated `quibble_client_wasm.d.ts`):
//! - `Client.connect({token, onEvent})`, then `join`, `joinFrom(conversation, seq)` (start
//!   after `seq`, e.g. the list entry's `readSeq`: exactly the unread messages), `leave`,
//!   `send`, `loadOlder`, `close`; for receipts and typing: `markRead(conversation)`,
//!   `setViewing(conversation | null)` (the conversation on screen while the page is visible
//!   and focused: marked read now and as messages arrive), `typing(conversation)` (call on
//!   every input event; a frame goes out at most every 3 s), and `conversations()` (the list
//!   as last reported). Messages arriving are reported delivered by themselves (in rooms,
//!   where only "seen by" is shown, together with the next read); receipts are debounced
//!   (500 ms).
//! - Events (`onEvent`, `event.type`): `state`, `transportFailed`, `transportClosed`,
//!   `connected`, `joined`, `reset`, `message`, `history`, `sent`, `throttled`, `rejected`,
//!   `error`, `goaway`, `disconnected`, and for the social features `conversations` (the
//!   whole list after every connect), `conversationUpdated` (one entry: added, cursors moved,
//!   new message with its unread count), `conversationRemoved`, `receipt` (another member's
//!   cursors: ticks, "seen by"), `friend` (status `none|friends|outgoing|incoming`, `dm`),
//!   `presence` (`online`, `lastSeenMs`) and `typing` (`typing: false` when it stopped or ran
//!   out), and for moderation `deleted` (`conversation`, `seq`: show that message as deleted
//!   from now on). Messages carry `deleted` (a tombstone: author and time kept, no body) and
//!   `hidden` (in place of a message from a user this user blocks: no author, no body).
//!   A connection the server closes with `banned` (the account or the address was banned)
//!   ends with an `error` event (`conversation: null`, `code: "banned"`, the reason says why
//!   and until when) and the state `failed`: the client does not reconnect.
//! - REST (promises; errors carry `code` and `status`): `signup`, `login` (`banned`: the
//!   message has the reason), `logout`, `account` (the user with its `role`, `user` or
//!   `admin`), `listRooms`, `createRoom`, `joinRoom`, `leaveRoom`, `friends`, `addFriend`,
//!   `removeFriend` (decline, cancel or unfriend), `openDm`, `memberReceipts`;
//!   `deleteMessage(conversation, seq)` (own messages; any as an admin), `block(username)`,
//!   `unblock(username)`, `blocks()`; for admins `ban(username, reason, durationSecs?)`,
//!   `unban(username)`, `bans()`, `ipBans()`, `addIpBan(network, reason, durationSecs?)`,
//!   `removeIpBan(network)`, `audit(before?)` (newest first, paged), `promote(username)`,
//!   `demote(username)`. Every call takes the session token first. Any call from a banned
//!   address rejects with `address_banned` (403).

pub mod cert_hash;
pub mod streams;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
mod ws;
#[cfg(target_arch = "wasm32")]
mod wt;
