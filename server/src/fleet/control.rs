//! Fleet-wide control: what an action on one node must also do on every other node, since
//! each node knows only its own connections. A node that ends a user's connections (a ban, a
//! password change), a session's (sign-out), changes the IP bans, or changes what the user hub
//! routes (typing, blocks, friendships, room membership, receipts, a deleted last message)
//! does it here and publishes a [`Control`] on the control channel; every other node applies
//! it to its own connections ([`apply`]). The publishing side is [`Shared::tell_fleet`].
//!
//! Control events are as lossy as pub/sub: a node that was cut off from Redis re-checks what
//! matters for authorization when it subscribes again ([`resync`]): the IP-ban list, and every
//! live session against the store (banned users' and signed-out sessions are gone from it).
//! What else it missed (a typing hint, a friend's new status) its clients get on their next
//! reconnect or change. Presence is repeated instead: each node tells the others who is online
//! on it every [`PRESENCE_EVERY`] ([`repeat_presence`]), so a lost "offline" or a dead node's
//! users run out by themselves ([`crate::chat::remote_presence`]).

use quibble_protocol::{ConversationId, ErrorCode, UserId};
use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;
use crate::state::Shared;

/// One fleet-wide action, as published.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// End `user`'s connections, except those of the session `except` (its hash).
    CloseUser {
        user: UserId,
        except: Option<[u8; 32]>,
        code: ErrorCode,
        reason: String,
    },
    /// End the connections of one session (its hash).
    CloseSession {
        token: [u8; 32],
        code: ErrorCode,
        reason: String,
    },
    /// The IP bans changed: read them again (which ends connections a new rule bans).
    IpBansChanged,
    /// `user` (named `username`) started or stopped typing in `conversation`.
    Typing {
        conversation: ConversationId,
        user: UserId,
        username: String,
        typing: bool,
    },
    /// `blocker` blocked (`on`) or unblocked `blocked`.
    Blocked {
        blocker: UserId,
        blocked: UserId,
        on: bool,
    },
    /// `a` and `b`'s friendship changed (`dm`: the DM an acceptance made).
    FriendsChanged {
        a: UserId,
        b: UserId,
        dm: Option<ConversationId>,
    },
    /// `user` joined the room (or DM) `conversation`.
    Joined {
        user: UserId,
        conversation: ConversationId,
    },
    /// `user` left the room `conversation`.
    Left {
        user: UserId,
        conversation: ConversationId,
    },
    /// `user`'s cursors in `conversation` moved.
    Receipt {
        user: UserId,
        conversation: ConversationId,
    },
    /// The last message of `conversation` was deleted.
    LastMessageDeleted { conversation: ConversationId },
    /// `user` is online on the publishing node (in `rooms`, whose members see it).
    Online {
        user: UserId,
        username: String,
        rooms: Vec<ConversationId>,
    },
    /// `user` went offline on the publishing node at `at_ms` (Unix ms).
    Offline { user: UserId, at_ms: u64 },
    /// Everyone online on the publishing node (part of its list, repeated every
    /// [`PRESENCE_EVERY`]; see [`crate::chat::remote_presence`]).
    StillOnline {
        users: Vec<(UserId, String, Vec<ConversationId>)>,
    },
    /// The publishing node lost control events it could not publish (Redis did not take them
    /// in time, or its queue was full): every node re-checks ([`resync`]).
    Resync,
}

/// How often a node repeats who is online on it.
pub const PRESENCE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// The most users one [`Control::StillOnline`] lists (each with up to the membership cap of
/// rooms).
const STILL_ONLINE_CHUNK: usize = 64;

impl Shared {
    /// Publish `control` to the other nodes of the fleet (nothing on a single node). The
    /// caller has done (or does) the same here.
    pub fn tell_fleet(&self, control: Control) {
        if let Some(fleet) = &self.fleet {
            fleet.publish_control(&control);
        }
    }
}

/// Apply `control`, from the node whose id is `origin`, to this node's connections.
pub async fn apply(state: &Shared, origin: u64, control: Control) {
    match control {
        Control::CloseUser {
            user,
            except,
            code,
            reason,
        } => state.close_user_here(user, except.map(TokenHash), code, &reason),
        Control::CloseSession {
            token,
            code,
            reason,
        } => state.close_session_here(TokenHash(token), code, &reason),
        Control::IpBansChanged => {
            if let Err(error) = state.reload_ip_bans().await {
                tracing::error!(%error, "cannot reload the IP bans another node changed");
            }
        }
        Control::Typing {
            conversation,
            user,
            username,
            typing,
        } => {
            // Kept in this node's typing state too, so it runs out here by itself should the
            // author's node never say it stopped.
            let news = if typing {
                state
                    .typing
                    .start(user, conversation, tokio::time::Instant::now())
            } else {
                state.typing.stop(user, conversation)
            };
            if news {
                state.users.typing_as(conversation, user, &username, typing);
            }
        }
        Control::Blocked {
            blocker,
            blocked,
            on,
        } => state.users.set_blocked(blocker, blocked, on),
        Control::FriendsChanged { a, b, dm } => {
            if state.users.is_online(a) || state.users.is_online(b) {
                state.users.friends_changed(&state.store, a, b, dm).await;
            }
        }
        Control::Joined { user, conversation } => {
            state.users.joined(&state.store, user, conversation).await;
        }
        Control::Left { user, conversation } => state.users.left(user, conversation),
        Control::Receipt { user, conversation } if state.users.cares(user, conversation) => {
            match state.store.summary(user, conversation).await {
                Ok(Some(summary)) => state.users.receipt(user, &summary),
                Ok(None) => {}
                Err(error) => tracing::error!(%error, "cannot read a receipt for a live update"),
            }
        }
        Control::Receipt { .. } => {}
        Control::LastMessageDeleted { conversation } => {
            state
                .users
                .last_message_deleted(&state.store, conversation)
                .await;
        }
        Control::Online {
            user,
            username,
            rooms,
        } => state.users.remote_online(origin, user, username, rooms),
        Control::Offline { user, at_ms } => state.users.remote_offline(origin, user, at_ms),
        Control::StillOnline { users } => {
            for (user, username, rooms) in users {
                state.users.remote_online(origin, user, username, rooms);
            }
        }
        // The control task asks for a resync itself (at most one per few seconds).
        Control::Resync => {}
    }
}

/// Every [`PRESENCE_EVERY`]: tell the other nodes who is online here, and forget what they
/// stopped repeating.
pub fn repeat_presence(state: &Shared) {
    let users = state.users.online_list();
    for chunk in users.chunks(STILL_ONLINE_CHUNK) {
        state.tell_fleet(Control::StillOnline {
            users: chunk.to_vec(),
        });
    }
    let now = std::time::Instant::now();
    if let Some(cutoff) = now.checked_sub(crate::chat::remote_presence::REMOTE_TTL) {
        state.users.expire_remote(cutoff);
    }
}

/// After a (re)subscribe, catch up on what control events may have been lost: the IP bans,
/// and every live session still in the store (each distinct one looked up once). False if the
/// store did not answer (the caller tries again later).
pub async fn resync(state: &Shared) -> bool {
    repeat_presence(state);
    if let Err(error) = state.reload_ip_bans().await {
        tracing::error!(%error, "cannot reload the IP bans after resubscribing");
        return false;
    }
    let now = crate::tls::unix_ms(std::time::SystemTime::now());
    let mut ended = 0;
    for token in state.users.sessions() {
        match state.store.session_user(&token, now).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                state.close_session_here(token, ErrorCode::Unauthorized, "the session was revoked");
                ended += 1;
            }
            Err(error) => {
                tracing::error!(%error, "cannot re-check live sessions after resubscribing");
                return false;
            }
        }
    }
    if ended > 0 {
        tracing::info!(
            ended,
            "ended the sessions revoked while this node was not listening"
        );
    }
    true
}
