//! The user-keyed hub: per-user events on the control stream, the way [`crate::chat::hub`]
//! carries messages on conversation streams. For each user with at least one connection it
//! holds their connections' control-stream senders, the conversations they are in and their
//! friends; an index from conversation to its online members routes conversation events.
//! Entries exist only while a user has a connection (the last one leaving frees them), so
//! memory follows the online users, each bounded by the per-user caps on memberships and
//! friends. Besides, the last-seen time and name of users seen offline (gone since the server
//! started, or read from the store for a friend's list): one small entry per account at most.
//! The store keeps last-seen times durably (`connection` records them).
//!
//! Blocks: each online user's blocked set is loaded when their first connection comes
//! ([`Users::track`]; unblocks made while it was being read win over it) and changed live
//! ([`Users::set_blocked`]), and an index from a blocked user to their online
//! blockers filters what reaches the blockers: activity of the blocked user's messages,
//! their typing, receipts and presence are not sent to them (`crate::access::sees`); the
//! conversation hub asks [`Users::hidden_from`] to send hidden markers instead of messages.
//! While nobody online blocks anyone, an atomic count lets that question skip the lock.
//!
//! Events: conversation activity (one shared encoding per message for every online member),
//! list changes (joined, left, own cursors moved), other members' receipts, friend changes,
//! presence (online while any connection is live; seen by online friends and members of the
//! user's rooms — not through a DM, which outlives the friendship) and typing; a deleted last message refreshes its members' entries. Frames are pushed without waiting into each connection's
//! byte-bounded control queue; a control stream whose queue is full is ended with
//! `SlowConsumer` (its connection then closes) and dropped from the hub.
//!
//! The hub is also the registry of live connections that moderation acts on
//! ([`Users::close_where`]): each entry keeps its connection's session-token hash, client
//! address and protocol version, so a revoked session, a banned user or a banned address is
//! cut at once on either transport (56 bytes more per connection than the events need).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use quibble_protocol::{
    ChatMessage, ConversationId, ConversationSummary, EVENTS_VERSION, ErrorCode, FriendStatus,
    LastMessage, ServerFrame, UserId,
};

use crate::access;
use crate::auth::TokenHash;
use crate::chat::hub::Delivered;
use crate::chat::keyed_vec::KeyedVec;
use crate::chat::outbound::{LiveTx, SendError};
use crate::chat::remote_presence::RemotePresence;
use crate::chat::stream::{CloseReason, encode_frame};
use crate::enforce::code_for_version;
use crate::store::{ConversationKind, Cursors, FriendState, Store, Summary};
use crate::tls::unix_ms;

#[derive(Clone, Default)]
pub struct Users {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// How many users have an online blocker (`Inner::blockers`' length), read without the
    /// lock.
    blocked_online: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    online: HashMap<UserId, Online>,
    /// Conversation → its members that are online.
    members: HashMap<ConversationId, HashSet<UserId>>,
    /// When each user who went offline since the start was last online (ms), and their name.
    last_seen: HashMap<UserId, (u64, String)>,
    /// A blocked user → their online blockers (only users who have some).
    blockers: HashMap<UserId, HashSet<UserId>>,
    next_key: u64,
    /// Users online on other nodes of a fleet.
    remote: RemotePresence,
}

struct Online {
    username: String,
    connections: KeyedVec<Connection>,
    conversations: HashSet<ConversationId>,
    /// Those of `conversations` whose members see each other's presence (rooms, see
    /// [`access::shares_presence`]).
    rooms: HashSet<ConversationId>,
    friends: HashSet<UserId>,
    /// The users this user blocks.
    blocked: HashSet<UserId>,
    /// Users unblocked live before the first connection's [`Users::track`]: the list it brings
    /// from the store may have been read before that, so they are not taken from it.
    unblocked_early: Vec<UserId>,
    /// Whether the user's coming online was announced (after the first connection loaded
    /// who may see it).
    announced: bool,
}

/// Most bytes of events held for a connection while it sends its snapshot; past it the
/// connection is ended with `SlowConsumer` (the client reconnects and gets a fresh snapshot).
pub const HELD_BYTES: usize = 256 * 1024;

struct Connection {
    /// The control stream: events (from [`EVENTS_VERSION`] on) and the closing error.
    tx: LiveTx,
    /// Until [`Users::go_live`]: events held back (and their bytes) so that they follow the
    /// snapshot the connection is sending.
    held: Option<(Vec<Bytes>, usize)>,
    /// Who is on the other end, for [`Users::close_where`].
    peer: Peer,
}

/// What moderation knows of a live connection: the session it authenticated with, where it
/// comes from, and the protocol version it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub token: TokenHash,
    /// The client's address (see [`crate::client_addr`]).
    pub addr: IpAddr,
    pub version: u16,
}

impl Peer {
    /// Whether the connection's protocol version has per-user events (an older one is in the
    /// hub only to count as online).
    fn events(&self) -> bool {
        self.version >= EVENTS_VERSION
    }
}

/// A connection's place in the hub; [`Registration::leave`] (or dropping it) takes the
/// connection out, and the user offline if it was their last.
pub struct Registration {
    users: Users,
    user: UserId,
    key: u64,
    left: bool,
}

/// A summary as the protocol carries it to `viewer`.
pub fn summary_frame(viewer: UserId, summary: &Summary) -> ConversationSummary {
    ConversationSummary {
        conversation: summary.conversation,
        kind: match summary.kind {
            ConversationKind::Room => quibble_protocol::ConversationKind::Room,
            ConversationKind::Dm(a, b) => quibble_protocol::ConversationKind::Dm {
                peer: if a == viewer { b } else { a },
            },
        },
        title: summary.title.clone(),
        head_seq: summary.head_seq,
        delivered_seq: summary.cursors.delivered,
        read_seq: summary.cursors.read,
        peer_delivered_seq: summary.peer_cursors.map(|c| c.delivered),
        peer_read_seq: summary.peer_cursors.map(|c| c.read),
        unread: summary.unread,
        last: summary.last.as_ref().map(|last| LastMessage {
            seq: last.seq,
            author: last.author,
            author_name: last.author_name.clone(),
            preview: last.preview.clone(),
            sent_at_ms: last.sent_at_ms,
        }),
        activity_ms: summary.activity_ms(),
    }
}

impl Users {
    /// Adds a connection of `user`, whose control stream `tx` will receive their events (if its
    /// version has them; else it only counts towards being online) and, should moderation end
    /// it, the closing error. Call
    /// [`Users::track`] next, with what the user is in (read after this call, so nothing
    /// changed in between is missed), send the snapshot, then [`Users::go_live`]: events until
    /// then are held and follow the snapshot.
    pub fn connect(&self, user: UserId, username: &str, tx: LiveTx, peer: Peer) -> Registration {
        let mut inner = self.lock();
        inner.next_key += 1;
        let key = inner.next_key;
        inner
            .online
            .entry(user)
            .or_insert_with(|| Online {
                username: username.to_owned(),
                connections: KeyedVec::default(),
                conversations: HashSet::new(),
                rooms: HashSet::new(),
                friends: HashSet::new(),
                blocked: HashSet::new(),
                unblocked_early: Vec::new(),
                announced: false,
            })
            .connections
            .insert(
                key,
                Connection {
                    tx,
                    held: Some((Vec::new(), 0)),
                    peer,
                },
            );
        set_gauge(&inner);
        Registration {
            users: self.clone(),
            user,
            key,
            left: false,
        }
    }

    /// Records the conversations, friends and blocks of a connected user (read after
    /// [`Users::connect`], so later changes are not missed), announces them online if this is
    /// their first connection, and returns the presence of everyone they may see, as frames.
    /// `seen` is when (some of) the friends were last online, from the store: it fills in
    /// users not seen since the server started.
    pub fn track(
        &self,
        user: UserId,
        conversations: &[(ConversationId, ConversationKind)],
        friends: &[UserId],
        seen: Vec<(UserId, String, u64)>,
        blocked: &[UserId],
    ) -> Vec<Bytes> {
        let mut inner = self.lock();
        // The first connection brings the blocked list; from then on the entry is kept up to
        // date live (`set_blocked`), and later connections' lists add nothing.
        if let Some(online) = inner.online.get_mut(&user)
            && !online.announced
        {
            let early = std::mem::take(&mut online.unblocked_early);
            for &other in blocked.iter().filter(|b| !early.contains(b)) {
                inner.index_block(user, other, true);
            }
            self.count_blocked(&inner);
        }
        for (other, name, ms) in seen {
            inner.last_seen.entry(other).or_insert((ms, name));
        }
        let Some(online) = inner.online.get_mut(&user) else {
            return Vec::new();
        };
        for &(conversation, kind) in conversations {
            online.conversations.insert(conversation);
            if access::shares_presence(kind) {
                online.rooms.insert(conversation);
            }
        }
        online.friends.extend(friends.iter().copied());
        let announce = !online.announced;
        online.announced = true;
        for (conversation, _) in conversations {
            inner.members.entry(*conversation).or_default().insert(user);
        }
        if announce && let Some(frame) = inner.presence_of(user) {
            let watchers = inner.watchers(user);
            inner.push_all(watchers, &frame);
        }
        // What this user sees: friends (online or with a known last-seen) and online
        // co-members, here or on other nodes of a fleet.
        let mut seen: HashSet<UserId> = inner.watchers(user);
        seen.extend(friends.iter().copied());
        if let Some(online) = inner.online.get(&user) {
            seen.extend(inner.remote.in_rooms(&online.rooms));
        }
        seen.remove(&user);
        let blocked = inner
            .online
            .get(&user)
            .map(|online| &online.blocked)
            .filter(|blocked| !blocked.is_empty());
        seen.into_iter()
            .filter(|&other| blocked.is_none_or(|blocked| access::sees(blocked, other)))
            .filter_map(|other| inner.presence_of(other))
            .collect()
    }

    /// `blocker` now blocks (`on`) or no longer blocks `blocked`: every connection of theirs
    /// sees it from now on.
    pub fn set_blocked(&self, blocker: UserId, blocked: UserId, on: bool) {
        let mut inner = self.lock();
        inner.index_block(blocker, blocked, on);
        self.count_blocked(&inner);
    }

    /// The online users who block `author` (who get hidden markers instead of their messages);
    /// `None`, without taking the lock, while nobody online blocks anyone.
    pub fn hidden_from(&self, author: UserId) -> Option<HashSet<UserId>> {
        if self.inner.blocked_online.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.lock().blockers.get(&author).cloned()
    }

    /// The users `viewer` blocks now (empty, without allocating or locking, while nobody
    /// online blocks anyone).
    pub fn blocked_by(&self, viewer: UserId) -> HashSet<UserId> {
        if self.inner.blocked_online.load(Ordering::Acquire) == 0 {
            return HashSet::new();
        }
        self.lock()
            .online
            .get(&viewer)
            .map(|online| online.blocked.clone())
            .unwrap_or_default()
    }

    fn count_blocked(&self, inner: &Inner) {
        self.inner
            .blocked_online
            .store(inner.blockers.len(), Ordering::Release);
    }

    /// `user` joined `conversation` (a room, or a new DM): their connections get its summary
    /// and its events from now on, and they and its other online members see each other's
    /// presence.
    pub async fn joined(&self, store: &Store, user: UserId, conversation: ConversationId) {
        if !self.lock().online.contains_key(&user) {
            return;
        }
        let summary = match store.summary(user, conversation).await {
            Ok(Some(summary)) => summary,
            Ok(None) => return,
            Err(e) => {
                tracing::error!("cannot read a summary for a live update: {e}");
                return;
            }
        };
        let frame = encode_frame(&ServerFrame::ConversationUpdated(summary_frame(
            user, &summary,
        )));
        let mut inner = self.lock();
        let Some(online) = inner.online.get_mut(&user) else {
            return;
        };
        let room = access::shares_presence(summary.kind);
        if room {
            online.rooms.insert(conversation);
        }
        if !online.conversations.insert(conversation) || !room {
            inner.members.entry(conversation).or_default().insert(user);
            inner.push_all([user], &frame);
            return;
        }
        let members = inner.members.entry(conversation).or_default();
        members.insert(user);
        let others: Vec<UserId> = members.iter().copied().filter(|&u| u != user).collect();
        inner.push_all([user], &frame);
        if let Some(mine) = inner.presence_of(user) {
            let watchers = inner.unblocked(user, others.iter().copied());
            inner.push_all(watchers, &mine);
        }
        for other in others {
            if inner.unblocked(other, [user]).is_empty() {
                continue;
            }
            if let Some(theirs) = inner.presence_of(other) {
                inner.push_all([user], &theirs);
            }
        }
    }

    /// `user` left the room `conversation`.
    pub fn left(&self, user: UserId, conversation: ConversationId) {
        let mut inner = self.lock();
        let Some(online) = inner.online.get_mut(&user) else {
            return;
        };
        online.conversations.remove(&conversation);
        online.rooms.remove(&conversation);
        inner.unindex(user, conversation);
        let frame = encode_frame(&ServerFrame::ConversationRemoved { conversation });
        inner.push_all([user], &frame);
    }

    /// `a` and `b`'s friendship changed (`dm` set when it was just accepted): both hear how
    /// they now stand, and a DM made by the acceptance joins both lists.
    pub async fn friends_changed(
        &self,
        store: &Store,
        a: UserId,
        b: UserId,
        dm: Option<ConversationId>,
    ) {
        for (me, other) in [(a, b), (b, a)] {
            let state = match store.friend_state(me, other).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!("cannot read a friendship for a live update: {e}");
                    return;
                }
            };
            let username = match store.user(other).await {
                Ok(Some(user)) => user.username,
                _ => return,
            };
            let dm_now = match store.dm_between(me, other).await {
                Ok(dm) => dm,
                Err(_) => return,
            };
            let status = match state {
                None => FriendStatus::None,
                Some(FriendState::Friends) => FriendStatus::Friends,
                Some(FriendState::Outgoing) => FriendStatus::Outgoing,
                Some(FriendState::Incoming) => FriendStatus::Incoming,
            };
            let frame = encode_frame(&ServerFrame::Friend {
                user: other,
                username,
                status,
                dm: dm_now,
            });
            let presence = {
                let mut inner = self.lock();
                let Some(online) = inner.online.get_mut(&me) else {
                    continue;
                };
                if status == FriendStatus::Friends {
                    online.friends.insert(other);
                } else {
                    online.friends.remove(&other);
                }
                inner.push_all([me], &frame);
                // A new friend's presence, at once.
                (status == FriendStatus::Friends)
                    .then(|| inner.presence_of(other))
                    .flatten()
            };
            if let Some(presence) = presence {
                self.lock().push_all([me], &presence);
            }
            if let Some(dm) = dm {
                self.joined(store, me, dm).await;
            }
        }
    }

    /// A message was made durable: its conversation's online members hear of it, but for the
    /// live connections the conversation hub `delivered` it on: their clients take the
    /// activity from the message (protocol version 4). The activity frame is encoded only
    /// when a first connection needs it (an older client, or one still sending its snapshot),
    /// and then shared by all: when every member's client is current and has the stream open,
    /// as under load, nothing is encoded and nothing allocated. The walk reads the members in
    /// place, under the lock every connection shares.
    pub fn on_message(&self, message: &ChatMessage, delivered: &Delivered) {
        let mut inner = self.lock();
        let Inner {
            online,
            members,
            blockers,
            ..
        } = &mut *inner;
        let Some(members) = members.get(&message.conversation) else {
            return;
        };
        let blockers = blockers.get(&message.author);
        let mut frame: Option<Bytes> = None;
        for user in members {
            if blockers.is_some_and(|blockers| blockers.contains(user)) {
                continue;
            }
            let Some(online) = online.get_mut(user) else {
                continue;
            };
            online.connections.retain(|_, connection| {
                if connection.held.is_none() && delivered.contains(connection.tx.connection()) {
                    return true;
                }
                if !connection.peer.events() {
                    return true;
                }
                let frame = frame.get_or_insert_with(|| {
                    encode_frame(&ServerFrame::ConversationActivity {
                        conversation: message.conversation,
                        last: message.last_message(),
                    })
                });
                push_to(connection, frame)
            });
        }
    }

    /// `user`'s cursors in `conversation` moved: their own connections get the fresh summary,
    /// the conversation's other online members the receipt.
    pub fn receipt(&self, user: UserId, summary: &Summary) {
        let conversation = summary.conversation;
        let Cursors { delivered, read } = summary.cursors;
        let own = encode_frame(&ServerFrame::ConversationUpdated(summary_frame(
            user, summary,
        )));
        let receipt = encode_frame(&ServerFrame::Receipt {
            conversation,
            user,
            delivered,
            read,
        });
        let mut inner = self.lock();
        inner.push_all([user], &own);
        let others: Vec<UserId> = inner
            .members
            .get(&conversation)
            .map(|m| m.iter().copied().filter(|&u| u != user).collect())
            .unwrap_or_default();
        let others = inner.unblocked(user, others);
        inner.push_all(others, &receipt);
    }

    /// `user` started (`typing`) or stopped typing in `conversation`: the other online members
    /// hear it.
    pub fn typing(&self, conversation: ConversationId, user: UserId, typing: bool) {
        if let Some(username) = self.name_of(user) {
            self.typing_as(conversation, user, &username, typing);
        }
    }

    /// The name of `user`, if they are online here or on another node of a fleet, or were
    /// since the start (the typing of someone who just left may run out after they are gone).
    pub fn name_of(&self, user: UserId) -> Option<String> {
        let inner = self.lock();
        match (inner.online.get(&user), inner.remote.get(user)) {
            (Some(online), _) => Some(online.username.clone()),
            (None, Some(remote)) => Some(remote.username.clone()),
            (None, None) => inner.last_seen.get(&user).map(|(_, name)| name.clone()),
        }
    }

    /// [`Users::typing`] of a user known by name (one online on another node of a fleet).
    pub fn typing_as(
        &self,
        conversation: ConversationId,
        user: UserId,
        username: &str,
        typing: bool,
    ) {
        let mut inner = self.lock();
        let frame = encode_frame(&ServerFrame::Typing {
            conversation,
            user,
            username: username.to_owned(),
            typing,
        });
        let others: Vec<UserId> = inner
            .members
            .get(&conversation)
            .map(|m| m.iter().copied().filter(|&u| u != user).collect())
            .unwrap_or_default();
        let others = inner.unblocked(user, others);
        inner.push_all(others, &frame);
    }

    /// The connection has sent its snapshot: queue the events held for it, then push the
    /// next ones directly.
    pub fn go_live(&self, registration: &Registration) {
        let mut inner = self.lock();
        let Some(online) = inner.online.get_mut(&registration.user) else {
            return;
        };
        let Some(connection) = online.connections.get_mut(&registration.key) else {
            return;
        };
        let Some((held, _)) = connection.held.take() else {
            return;
        };
        for frame in held {
            if !deliver(&connection.tx, &frame) {
                online.connections.remove(&registration.key);
                return;
            }
        }
    }

    /// The last message of `conversation` was deleted: each online member gets the entry
    /// afresh (`ConversationUpdated`), whose last message is now the tombstone, so no list
    /// keeps the text as its preview.
    pub async fn last_message_deleted(&self, store: &Store, conversation: ConversationId) {
        let members: Vec<UserId> = match self.lock().members.get(&conversation) {
            Some(members) => members.iter().copied().collect(),
            None => return,
        };
        for member in members {
            let summary = match store.summary(member, conversation).await {
                Ok(Some(summary)) => summary,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!("cannot read a summary for a live update: {e}");
                    return;
                }
            };
            let frame = encode_frame(&ServerFrame::ConversationUpdated(summary_frame(
                member, &summary,
            )));
            self.lock().push_all([member], &frame);
        }
    }

    /// Node `node` of the fleet says `user` (in `rooms`) is online there: if that is news,
    /// who sees their presence here hears it.
    pub fn remote_online(
        &self,
        node: u64,
        user: UserId,
        username: String,
        rooms: Vec<ConversationId>,
    ) {
        let mut inner = self.lock();
        let now = std::time::Instant::now();
        if inner
            .remote
            .online(node, user, username, rooms.clone(), now)
        {
            inner.remote_changed(user, &rooms);
        }
    }

    /// Node `node` of the fleet says `user` went offline there at `at_ms`: if they are online
    /// nowhere now, who sees their presence here hears it.
    pub fn remote_offline(&self, node: u64, user: UserId, at_ms: u64) {
        let mut inner = self.lock();
        if let Some(gone) = inner.remote.offline(node, user) {
            inner.last_seen.insert(user, (at_ms, gone.username));
            inner.remote_changed(user, &gone.rooms);
        }
    }

    /// Forget the other nodes' word that was not repeated since `cutoff` (see
    /// [`crate::chat::remote_presence`]), telling who sees it of the users now online nowhere.
    pub fn expire_remote(&self, cutoff: std::time::Instant) {
        let mut inner = self.lock();
        let now = unix_ms(SystemTime::now());
        for (user, gone) in inner.remote.expire(cutoff) {
            inner.last_seen.insert(user, (now, gone.username));
            inner.remote_changed(user, &gone.rooms);
        }
    }

    /// `user`'s name and the rooms whose members see their presence, if they are online here.
    pub fn presence_here(&self, user: UserId) -> Option<(String, Vec<ConversationId>)> {
        let inner = self.lock();
        let online = inner.online.get(&user).filter(|o| o.announced)?;
        Some((
            online.username.clone(),
            online.rooms.iter().copied().collect(),
        ))
    }

    /// Every user online here, with their name and rooms (for the other nodes of a fleet).
    pub fn online_list(&self) -> Vec<(UserId, String, Vec<ConversationId>)> {
        let inner = self.lock();
        inner
            .online
            .iter()
            .filter(|(_, online)| online.announced)
            .map(|(&user, online)| {
                (
                    user,
                    online.username.clone(),
                    online.rooms.iter().copied().collect(),
                )
            })
            .collect()
    }

    /// Whether `user` has a connection here.
    pub fn is_online(&self, user: UserId) -> bool {
        self.lock().online.contains_key(&user)
    }

    /// Whether a receipt of `user` in `conversation` concerns anyone here: the user (their own
    /// connections) or another online member.
    pub fn cares(&self, user: UserId, conversation: ConversationId) -> bool {
        let inner = self.lock();
        inner.online.contains_key(&user) || inner.members.contains_key(&conversation)
    }

    /// The sessions of every live connection, each once.
    pub fn sessions(&self) -> Vec<TokenHash> {
        let inner = self.lock();
        let sessions: HashSet<TokenHash> = inner
            .online
            .values()
            .flat_map(|online| online.connections.values().map(|c| c.peer.token))
            .collect();
        sessions.into_iter().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends at once every connection (of `user` only, when given) for whose [`Peer`]
    /// `reason_for` gives a reason: its control stream gets `Error { code, reason }` as its
    /// last frame (`Banned` is `Unauthorized` for a connection too old to decode it, see
    /// [`code_for_version`]), then the connection closes with that code; it gets no more
    /// events from here. Returns how many were ended. Without `user` every connection is
    /// looked at, under the hub's lock (a comparison each: tens of microseconds per 10,000
    /// connections).
    pub fn close_where<'r>(
        &self,
        user: Option<UserId>,
        code: ErrorCode,
        reason_for: impl Fn(&Peer) -> Option<&'r str>,
    ) -> usize {
        let mut inner = self.lock();
        let mut ended = 0;
        let mut end = |online: &mut Online| {
            online.connections.retain(|_, connection| {
                let Some(reason) = reason_for(&connection.peer) else {
                    return true;
                };
                let code = code_for_version(code, connection.peer.version);
                let frame = encode_frame(&ServerFrame::Error {
                    code,
                    reason: reason.to_owned(),
                });
                connection
                    .tx
                    .close_connection(frame, CloseReason::error(code, reason));
                ended += 1;
                false
            });
        };
        match user {
            Some(user) => {
                if let Some(online) = inner.online.get_mut(&user) {
                    end(online);
                }
            }
            None => inner.online.values_mut().for_each(end),
        }
        ended
    }

    /// Server shutdown: every connection in the hub gets `GoAway` (each with its own
    /// jittered reconnect delay) as its control stream's last frame, then closes with
    /// `ShuttingDown`. A connection that enters the hub after this sees the shutdown flag
    /// itself (`chat::connection`), so none is missed, and none waits for the signal with a
    /// future of its own.
    pub fn go_away_all(&self) {
        let inner = self.lock();
        for online in inner.online.values() {
            for connection in online.connections.values() {
                let (frame, reason) = crate::chat::connection::go_away();
                connection.tx.close_connection(frame, reason);
            }
        }
    }
}

impl Inner {
    /// Online users who may see `user`'s presence: friends, and members of their rooms.
    fn watchers(&self, user: UserId) -> HashSet<UserId> {
        let Some(online) = self.online.get(&user) else {
            return HashSet::new();
        };
        let mut watchers: HashSet<UserId> = online
            .friends
            .iter()
            .copied()
            .filter(|f| self.online.contains_key(f))
            .collect();
        for room in &online.rooms {
            if let Some(members) = self.members.get(room) {
                watchers.extend(members.iter().copied());
            }
        }
        watchers.remove(&user);
        if let Some(blockers) = self.blockers.get(&user) {
            watchers.retain(|w| !blockers.contains(w));
        }
        watchers
    }

    /// Whether `user` is online here (announced).
    fn online_here(&self, user: UserId) -> bool {
        self.online.get(&user).is_some_and(|o| o.announced)
    }

    /// Who here sees the presence of `user`, online on another node and in `rooms`: their
    /// online friends and the online members of those rooms, but for their blockers.
    fn remote_watchers(&self, user: UserId, rooms: &[ConversationId]) -> Vec<UserId> {
        let mut watchers: HashSet<UserId> = self
            .online
            .iter()
            .filter(|(_, online)| online.friends.contains(&user))
            .map(|(&watcher, _)| watcher)
            .collect();
        for room in rooms {
            if let Some(members) = self.members.get(room) {
                watchers.extend(members.iter().copied());
            }
        }
        watchers.remove(&user);
        self.unblocked(user, watchers)
    }

    /// Those of `viewers` who do not block `author` (all of them, unchanged, when nobody
    /// online blocks `author`).
    fn unblocked(&self, author: UserId, viewers: impl IntoIterator<Item = UserId>) -> Vec<UserId> {
        let viewers = viewers.into_iter();
        match self.blockers.get(&author) {
            None => viewers.collect(),
            Some(blockers) => viewers.filter(|v| !blockers.contains(v)).collect(),
        }
    }

    /// Records that the online `blocker` blocks (`on`) or no longer blocks `blocked`, in their
    /// own set and in the index.
    fn index_block(&mut self, blocker: UserId, blocked: UserId, on: bool) {
        let Some(online) = self.online.get_mut(&blocker) else {
            return;
        };
        if on {
            online.unblocked_early.retain(|&u| u != blocked);
            online.blocked.insert(blocked);
            self.blockers.entry(blocked).or_default().insert(blocker);
        } else {
            if !online.announced && !online.unblocked_early.contains(&blocked) {
                online.unblocked_early.push(blocked);
            }
            online.blocked.remove(&blocked);
            self.unindex_block(blocker, blocked);
        }
    }

    fn unindex_block(&mut self, blocker: UserId, blocked: UserId) {
        if let Some(blockers) = self.blockers.get_mut(&blocked) {
            blockers.remove(&blocker);
            if blockers.is_empty() {
                self.blockers.remove(&blocked);
            }
        }
    }

    /// `user`'s presence now as a frame: online once announced, else offline with when they
    /// were last seen; `None` for a user not seen since the server started.
    fn presence_of(&self, user: UserId) -> Option<Bytes> {
        let here = self.online.get(&user).filter(|o| o.announced);
        let (username, online, last_seen_ms) = match (here, self.remote.get(user)) {
            (Some(o), _) => (o.username.clone(), true, 0),
            (None, Some(remote)) => (remote.username.clone(), true, 0),
            (None, None) => {
                let (ms, name) = self.last_seen.get(&user)?;
                (name.clone(), false, *ms)
            }
        };
        Some(encode_frame(&ServerFrame::Presence {
            user,
            username,
            online,
            last_seen_ms,
        }))
    }

    /// `user`, online elsewhere and in `rooms`, came online or went offline there: tell who
    /// sees it here, unless they are online here anyway.
    fn remote_changed(&mut self, user: UserId, rooms: &[ConversationId]) {
        if self.online_here(user) {
            return;
        }
        if let Some(frame) = self.presence_of(user) {
            let watchers = self.remote_watchers(user, rooms);
            self.push_all(watchers, &frame);
        }
    }

    /// Pushes `frame` to every connection of `users`; a connection that cannot take it is
    /// ended with `SlowConsumer` and dropped.
    fn push_all(&mut self, users: impl IntoIterator<Item = UserId>, frame: &Bytes) {
        for user in users {
            if let Some(online) = self.online.get_mut(&user) {
                online
                    .connections
                    .retain(|_, connection| push_to(connection, frame));
            }
        }
    }

    fn unindex(&mut self, user: UserId, conversation: ConversationId) {
        if let Some(members) = self.members.get_mut(&conversation) {
            members.remove(&user);
            if members.is_empty() {
                self.members.remove(&conversation);
            }
        }
    }
}

/// Gives `frame` to one connection of the hub: held while it sends its snapshot, queued once
/// live, nothing for a version without events; `false` if the connection is to be dropped (gone,
/// or ended with `SlowConsumer` for holding or queueing too much).
fn push_to(connection: &mut Connection, frame: &Bytes) -> bool {
    if !connection.peer.events() {
        return true;
    }
    match &mut connection.held {
        Some((held, bytes)) if *bytes + frame.len() <= HELD_BYTES => {
            *bytes += frame.len();
            held.push(frame.clone());
            true
        }
        Some(_) => {
            slow(&connection.tx);
            false
        }
        None => deliver(&connection.tx, frame),
    }
}

/// Queues `frame` on a control stream; `false` if the connection is gone or was ended for not
/// keeping up.
fn deliver(tx: &LiveTx, frame: &Bytes) -> bool {
    match tx.try_send(frame.clone()) {
        Ok(()) => true,
        Err(SendError::Closed) => false,
        Err(SendError::Full) => {
            slow(tx);
            false
        }
    }
}

/// Ends a control stream that does not keep up; its connection closes with `SlowConsumer`.
fn slow(tx: &LiveTx) {
    tx.send_last(encode_frame(&ServerFrame::Error {
        code: ErrorCode::SlowConsumer,
        reason: "the control stream is not read fast enough".into(),
    }));
}

impl Registration {
    /// Takes the connection out of the hub. If it was the user's last, they go offline (their
    /// watchers hear it) and this returns the user and the time, to be recorded.
    pub fn leave(mut self) -> Option<(UserId, u64)> {
        self.remove()
    }

    fn remove(&mut self) -> Option<(UserId, u64)> {
        if std::mem::replace(&mut self.left, true) {
            return None;
        }
        let mut inner = self.users.lock();
        let online = inner.online.get_mut(&self.user)?;
        online.connections.remove(&self.key);
        let mut offline = None;
        if online.connections.is_empty() {
            let watchers = inner.watchers(self.user);
            if let Some(gone) = inner.online.remove(&self.user) {
                for conversation in gone.conversations {
                    inner.unindex(self.user, conversation);
                }
                for blocked in gone.blocked {
                    inner.unindex_block(self.user, blocked);
                }
                self.users.count_blocked(&inner);
                let now = unix_ms(SystemTime::now());
                inner.last_seen.insert(self.user, (now, gone.username));
                offline = Some((self.user, now));
            }
            if let Some(frame) = inner.presence_of(self.user) {
                inner.push_all(watchers, &frame);
            }
        }
        set_gauge(&inner);
        offline
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.remove();
    }
}

fn set_gauge(inner: &Inner) {
    metrics::gauge!(crate::metrics::USERS_ONLINE).set(inner.online.len() as f64);
}

#[cfg(test)]
mod tests {
    use quibble_protocol::PROTOCOL_VERSION;

    use super::*;
    use crate::chat::outbound::{Batch, Item, Outbound};

    fn online(users: &Users) -> usize {
        users.lock().online.len()
    }

    async fn frames(out: &Outbound) -> Vec<ServerFrame> {
        let Batch::Items { items, bytes } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        out.release(bytes);
        items
            .into_iter()
            .filter_map(|(_, item)| match item {
                Item::Frame(f) => {
                    Some(quibble_protocol::codec::decode_exact(&f, usize::MAX).unwrap())
                }
                Item::Finish => None,
            })
            .collect()
    }

    /// A connection with session token `token` from 192.0.2.`token`.
    fn peer(token: u8, version: u16) -> Peer {
        Peer {
            token: TokenHash([token; 32]),
            addr: IpAddr::from([192, 0, 2, token]),
            version,
        }
    }

    fn message(conversation: u64, seq: u64) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(conversation),
            seq,
            author: UserId(9),
            author_name: "nine".into(),
            client_id: seq,
            sent_at_ms: 1,
            body: "x".repeat(1000),
        }
    }

    #[tokio::test]
    async fn events_wait_for_the_snapshot_and_the_last_connection_frees_the_entry() {
        let users = Users::default();
        let (out_a, out_b) = (Outbound::multiplexed(), Outbound::multiplexed());
        // The control streams stay open while their connections are.
        let (tx_a, tx_b) = (out_a.open(0), out_b.open(0));
        let a = users.connect(UserId(1), "one", tx_a.live(), peer(1, PROTOCOL_VERSION));
        let b = users.connect(UserId(1), "one", tx_b.live(), peer(1, PROTOCOL_VERSION));
        users.track(
            UserId(1),
            &[(ConversationId(5), ConversationKind::Room)],
            &[],
            Vec::new(),
            &[],
        );
        users.go_live(&a);
        users.on_message(&message(5, 1), &Delivered::default());
        users.on_message(&message(6, 1), &Delivered::default());
        // `a` is live: it has the activity of conversation 5 only.
        let got = frames(&out_a).await;
        assert!(matches!(
            got.as_slice(),
            [ServerFrame::ConversationActivity {
                conversation: ConversationId(5),
                ..
            }]
        ));
        // `b` was held back until its snapshot went out.
        users.go_live(&b);
        assert_eq!(frames(&out_b).await.len(), 1);
        assert_eq!(a.leave(), None, "one connection is left");
        assert_eq!(online(&users), 1);
        let (user, _) = b.leave().expect("the last one takes the user offline");
        assert_eq!((user, online(&users)), (UserId(1), 0));
        assert!(users.lock().members.is_empty(), "the index is freed too");
        assert!(users.lock().last_seen.contains_key(&UserId(1)));
        drop((tx_a, tx_b));
    }

    #[tokio::test]
    async fn a_live_control_stream_that_does_not_keep_up_is_ended_with_slow_consumer() {
        let users = Users::default();
        let out = Outbound::multiplexed();
        let tx = out.open(0);
        let reg = users.connect(UserId(1), "one", tx.live(), peer(1, PROTOCOL_VERSION));
        users.track(
            UserId(1),
            &[(ConversationId(5), ConversationKind::Room)],
            &[],
            Vec::new(),
            &[],
        );
        users.go_live(&reg);
        let mut seq = 0;
        while users.lock().online[&UserId(1)]
            .connections
            .contains_key(&reg.key)
        {
            seq += 1;
            users.on_message(&message(5, seq), &Delivered::default());
            assert!(seq < 10_000, "never ended");
        }
        let got = frames(&out).await;
        assert!(matches!(
            got.last(),
            Some(ServerFrame::Error {
                code: ErrorCode::SlowConsumer,
                ..
            })
        ));
        tokio::time::timeout(std::time::Duration::from_secs(1), tx.closed())
            .await
            .expect("the control stream is ended, so its connection closes");
    }

    #[tokio::test]
    async fn a_connection_holding_too_much_before_going_live_is_ended() {
        let users = Users::default();
        let out = Outbound::multiplexed();
        let tx = out.open(0);
        let held = users.connect(UserId(1), "one", tx.live(), peer(1, PROTOCOL_VERSION));
        users.track(
            UserId(1),
            &[(ConversationId(5), ConversationKind::Room)],
            &[],
            Vec::new(),
            &[],
        );
        let mut seq = 0;
        while users.lock().online[&UserId(1)]
            .connections
            .contains_key(&held.key)
        {
            seq += 1;
            users.on_message(&message(5, seq), &Delivered::default());
            assert!(seq < 10_000, "never ended");
        }
        // Each activity frame is ~150 bytes (a 100-character preview).
        assert!(seq as usize * 100 > HELD_BYTES / 2, "ended after {seq}");
        let got = frames(&out).await;
        assert!(matches!(
            got.last(),
            Some(ServerFrame::Error {
                code: ErrorCode::SlowConsumer,
                ..
            })
        ));
    }

    /// The last frame queued for a connection and how it closes.
    async fn ending(out: &Outbound) -> (Option<ServerFrame>, CloseReason) {
        let mut last = None;
        loop {
            match out.next_batch(usize::MAX).await {
                Batch::Items { items, bytes } => {
                    out.release(bytes);
                    for (_, item) in items {
                        if let Item::Frame(f) = item {
                            last = Some(
                                quibble_protocol::codec::decode_exact(&f, usize::MAX).unwrap(),
                            );
                        }
                    }
                }
                Batch::Close(reason) => return (last, reason),
                Batch::Failed => panic!("failed"),
            }
        }
    }

    #[tokio::test]
    async fn moderation_ends_exactly_the_picked_connections_with_a_code_each_version_reads() {
        let users = Users::default();
        let outs: Vec<Outbound> = (0..4).map(|_| Outbound::multiplexed()).collect();
        let txs: Vec<_> = outs.iter().map(|o| o.open(0)).collect();
        // User 1: sessions 1 (current protocol) and 2 (version 2); user 2: session 3, and
        // session 4 from session 1's address.
        let regs = [
            users.connect(UserId(1), "one", txs[0].live(), peer(1, PROTOCOL_VERSION)),
            users.connect(UserId(1), "one", txs[1].live(), peer(2, 2)),
            users.connect(UserId(2), "two", txs[2].live(), peer(3, PROTOCOL_VERSION)),
            users.connect(
                UserId(2),
                "two",
                txs[3].live(),
                Peer {
                    addr: peer(1, 0).addr,
                    ..peer(4, PROTOCOL_VERSION)
                },
            ),
        ];
        for reg in &regs {
            users.go_live(reg);
        }
        // A user's connections except one session: only session 2 of user 1.
        let n = users.close_where(Some(UserId(1)), ErrorCode::Banned, |p| {
            (p.token != TokenHash([1; 32])).then_some("banned: spam")
        });
        assert_eq!(n, 1);
        let (frame, close) = ending(&outs[1]).await;
        // Version 2 cannot decode `Banned`: it gets `Unauthorized`, same reason.
        assert_eq!(
            frame,
            Some(ServerFrame::Error {
                code: ErrorCode::Unauthorized,
                reason: "banned: spam".into()
            })
        );
        assert_eq!(
            close,
            CloseReason::error(ErrorCode::Unauthorized, "banned: spam")
        );
        // By address, over every user: sessions 1 and 4.
        let banned = peer(1, 0).addr;
        let n = users.close_where(None, ErrorCode::Banned, |p| {
            (p.addr == banned).then_some("gone")
        });
        assert_eq!(n, 2);
        for i in [0, 3] {
            let (frame, close) = ending(&outs[i]).await;
            assert_eq!(
                frame,
                Some(ServerFrame::Error {
                    code: ErrorCode::Banned,
                    reason: "gone".into()
                })
            );
            assert_eq!(close, CloseReason::error(ErrorCode::Banned, "gone"));
        }
        // Ended connections get nothing more; session 3 is untouched and still live.
        assert_eq!(
            users.close_where(None, ErrorCode::Banned, |p| {
                (p.addr == banned).then_some("again")
            }),
            0
        );
        assert_eq!(txs[2].closing(), None);
        assert_eq!(users.lock().online[&UserId(2)].connections.len(), 1);
        drop(regs);
        assert_eq!(
            online(&users),
            0,
            "ended connections still leave the hub cleanly"
        );
    }

    #[tokio::test]
    async fn blocks_follow_the_blockers_connections_and_are_changed_live() {
        let users = Users::default();
        let out = Outbound::multiplexed();
        let tx = out.open(0);
        let reg = users.connect(UserId(1), "one", tx.live(), peer(1, PROTOCOL_VERSION));
        users.track(UserId(1), &[], &[], Vec::new(), &[UserId(2)]);
        assert_eq!(users.hidden_from(UserId(2)), Some([UserId(1)].into()));
        assert_eq!(users.hidden_from(UserId(3)), None);
        users.set_blocked(UserId(1), UserId(3), true);
        users.set_blocked(UserId(1), UserId(2), false);
        assert_eq!(users.hidden_from(UserId(2)), None);
        assert_eq!(users.blocked_by(UserId(1)), [UserId(3)].into());
        // Someone offline is not indexed; the last connection leaving frees the entries.
        users.set_blocked(UserId(9), UserId(3), true);
        assert_eq!(users.hidden_from(UserId(3)), Some([UserId(1)].into()));
        reg.leave();
        assert_eq!(users.hidden_from(UserId(3)), None);
        assert!(users.lock().blockers.is_empty());
        assert_eq!(users.inner.blocked_online.load(Ordering::Acquire), 0);
        drop(tx);
    }

    #[tokio::test]
    async fn changes_made_while_a_connection_reads_its_list_are_not_lost() {
        let users = Users::default();
        let out = Outbound::multiplexed();
        let (tx_a, tx_b) = (out.open(0), out.open(1));
        let a = users.connect(UserId(1), "one", tx_a.live(), peer(1, PROTOCOL_VERSION));
        // While the list is read: 2 unblocked (the list may predate it), 4 blocked.
        users.set_blocked(UserId(1), UserId(2), false);
        users.set_blocked(UserId(1), UserId(4), true);
        users.track(UserId(1), &[], &[], Vec::new(), &[UserId(2), UserId(3)]);
        assert_eq!(users.blocked_by(UserId(1)), [UserId(3), UserId(4)].into());
        assert_eq!(users.hidden_from(UserId(2)), None);
        // A second connection's list, read before 3 was unblocked, changes nothing.
        let b = users.connect(UserId(1), "one", tx_b.live(), peer(1, PROTOCOL_VERSION));
        users.set_blocked(UserId(1), UserId(3), false);
        users.track(UserId(1), &[], &[], Vec::new(), &[UserId(3), UserId(4)]);
        assert_eq!(users.blocked_by(UserId(1)), [UserId(4)].into());
        assert!(users.lock().online[&UserId(1)].unblocked_early.is_empty());
        drop((a, b, tx_a, tx_b));
    }
}
