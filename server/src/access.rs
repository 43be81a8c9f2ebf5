//! Who may do what in a conversation: the one place the rules live (DESIGN.md §2). REST
//! handlers, both transports' conversation streams (join, replay, history, send), receipts
//! and typing all ask here; none re-implements a rule.
//!
//! Rules:
//! - A room is public: any signed-in user may join it, read it and send in it.
//! - A DM has exactly two members; only they may open it, read it or report receipts in it
//!   (anyone else: `Forbidden`). Both keep that for good, also after unfriending.
//! - Sending in a DM needs its members to be friends now (else `NotFriends`).
//! - A message may be deleted by its author, or by an admin (any message of a conversation they
//!   may read); anyone else: `Forbidden` ([`may_delete`]).
//! - A room's retention may be set by the room's creator or an admin (anyone else:
//!   `NotRoomOwner`); a DM has no retention (`Unknown`) ([`may_set_retention`]).
//! - An address is refused while an active IP ban's network holds it ([`address_ban`]).
//! - Presence is seen by friends and by fellow members of a room ([`shares_presence`]); a DM,
//!   which outlives the friendship, shares nothing by itself. (The user hub applies this when
//!   it routes presence, from what it knows of who is online.)
//!
//! - Blocks (the facts are in `crate::store`'s blocks): a user sees nothing from someone they
//!   block — their messages arrive as hidden markers ([`shown`]; live, replay and history),
//!   and their typing, receipts, presence and conversation activity are not sent (the user hub
//!   and the conversation hub ask [`sees`] through the index of online blockers); unread
//!   counts skip them (`crate::store`'s summaries). Only the blocker is affected. The blocked
//!   user may not open a DM with the blocker or send in it ([`Refusal::NotAllowed`], which
//!   says no more than "not allowed"). That neither may friend-request the other while the
//!   block stands is the store's invariant (`StoreError::Blocked`, checked in the write that
//!   would add the request, so it cannot race with the block).
//!
//! Reading is proved by a [`Grant`], which only [`may_read`] and [`join_view`] make (one rule,
//! `grant_for`): the stream code that
//! replays and pages history takes a `Grant`, so it cannot serve a conversation nobody checked.

use std::collections::HashSet;
use std::net::IpAddr;

use quibble_protocol::{ChatMessage, ConversationId, ErrorCode, UserId};

use crate::enforce::IpBanRule;
use crate::store::{ConversationKind, FriendState, JoinView, Role, Store, StoreError, User};

/// Why an action is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("no conversation {0}")]
    Unknown(u64),
    #[error("this conversation is a direct message between two other users")]
    Forbidden,
    #[error("you are not friends with the other member of this conversation")]
    NotFriends,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("only its author or an admin may delete this message")]
    NotYours,
    /// One of the two blocks the other; deliberately says nothing more.
    #[error("not allowed")]
    NotAllowed,
    #[error("only the room's creator or an admin may change its retention")]
    NotRoomOwner,
}

impl Refusal {
    /// The protocol code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Unknown(_) => ErrorCode::UnknownConversation,
            Refusal::Forbidden => ErrorCode::Forbidden,
            Refusal::NotFriends => ErrorCode::NotFriends,
            Refusal::Store(_) => ErrorCode::Internal,
            Refusal::NotYours => ErrorCode::Forbidden,
            Refusal::NotAllowed => ErrorCode::Forbidden,
            Refusal::NotRoomOwner => ErrorCode::Forbidden,
        }
    }
}

/// Proof that `user` may read `conversation` (made only by [`may_read`] and [`join_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub user: UserId,
    pub conversation: ConversationId,
    pub kind: ConversationKind,
}

/// May `user` open and read `conversation` (join its stream, replay, page its history, report
/// receipts, say they are typing)?
pub async fn may_read(
    store: &Store,
    user: UserId,
    conversation: ConversationId,
) -> Result<Grant, Refusal> {
    grant_for(
        user,
        conversation,
        store.conversation_kind(conversation).await?,
    )
}

/// [`may_read`]'s rule, given the conversation's kind as stored (`None`: there is none).
fn grant_for(
    user: UserId,
    conversation: ConversationId,
    kind: Option<ConversationKind>,
) -> Result<Grant, Refusal> {
    let kind = kind.ok_or(Refusal::Unknown(conversation.0))?;
    match kind {
        ConversationKind::Room => {}
        ConversationKind::Dm(a, b) => {
            if user != a && user != b {
                return Err(Refusal::Forbidden);
            }
        }
    }
    Ok(Grant {
        user,
        conversation,
        kind,
    })
}

/// [`may_read`] for `Join`, with what joining reads, all in one store read: the grant, the
/// membership, the head, and the first `limit` messages after `start(head)` (see
/// [`Store::join_view`]; nothing of the conversation is read when the rule refuses).
pub async fn join_view(
    store: &Store,
    user: UserId,
    conversation: ConversationId,
    start: impl FnOnce(u64) -> u64 + Send + 'static,
    recent: bool,
    limit: usize,
) -> Result<JoinView<Grant>, Refusal> {
    let check = move |kind| grant_for(user, conversation, kind);
    store
        .join_view(user, conversation, check, start, recent, limit)
        .await?
}

/// May the reader behind `grant` send in its conversation now? Asked for every send, since a
/// friendship can end (or a block start) while a DM stream is open. A block ends the
/// friendship in the same write, so friends need no block check.
pub async fn may_send(store: &Store, grant: &Grant) -> Result<(), Refusal> {
    match grant.kind {
        ConversationKind::Room => Ok(()),
        ConversationKind::Dm(a, b) => {
            let other = if grant.user == a { b } else { a };
            match store.friend_state(grant.user, other).await? {
                Some(FriendState::Friends) => Ok(()),
                _ if store.blocks(other, grant.user).await? => Err(Refusal::NotAllowed),
                _ => Err(Refusal::NotFriends),
            }
        }
    }
}

/// Does a viewer who blocks `blocked` see what `author` does (messages, typing, receipts,
/// presence, activity)?
pub fn sees(blocked: &HashSet<UserId>, author: UserId) -> bool {
    !blocked.contains(&author)
}

/// `message` as a viewer who blocks `blocked` gets it: itself, or the hidden marker (same seq,
/// so seqs stay contiguous). Costs nothing for a viewer who blocks nobody.
pub fn shown(blocked: &HashSet<UserId>, message: ChatMessage) -> ChatMessage {
    if blocked.is_empty() || sees(blocked, message.author) {
        message
    } else {
        message.hidden()
    }
}

/// Do the members of a conversation of this kind see each other's presence?
pub fn shares_presence(kind: ConversationKind) -> bool {
    match kind {
        ConversationKind::Room => true,
        ConversationKind::Dm(..) => false,
    }
}

/// May `user` become a member of `conversation` by joining it? Only rooms can be joined (a
/// DM's members are fixed when it is made).
pub async fn may_join(
    store: &Store,
    user: UserId,
    conversation: ConversationId,
) -> Result<(), Refusal> {
    let grant = may_read(store, user, conversation).await?;
    match grant.kind {
        ConversationKind::Room => Ok(()),
        ConversationKind::Dm(..) => Err(Refusal::Forbidden),
    }
}

/// The DM `user` may open with `other`, and whether they may send in it now: there is one once
/// the two became friends (it stays readable after unfriending); else `NotFriends`. Someone
/// `other` blocks may not open it (`NotAllowed`, from [`may_send`]).
pub async fn dm_with(
    store: &Store,
    user: UserId,
    other: UserId,
) -> Result<(ConversationId, bool), Refusal> {
    let dm = store
        .dm_between(user, other)
        .await?
        .ok_or(Refusal::NotFriends)?;
    let grant = may_read(store, user, dm).await?;
    let can_send = match may_send(store, &grant).await {
        Ok(()) => true,
        Err(Refusal::NotFriends) => false,
        Err(other) => return Err(other),
    };
    Ok((dm, can_send))
}

/// On whose authority a deletion is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteAs {
    /// The caller wrote the message.
    Author,
    /// The caller is an admin deleting someone else's message (a moderation action).
    Admin,
}

/// May `user` delete the message `seq` of `conversation`? They must be able to read the
/// conversation, and be the message's author or an admin (role as stored now). Returns the
/// message as stored (a tombstone if already deleted) and the authority.
/// No such message: `Store(NotFound)`.
pub async fn may_delete(
    store: &Store,
    user: &User,
    conversation: ConversationId,
    seq: u64,
) -> Result<(ChatMessage, DeleteAs), Refusal> {
    may_read(store, user.id, conversation).await?;
    let message = store
        .message(conversation, seq)
        .await?
        .ok_or(Refusal::Store(StoreError::NotFound))?;
    if message.author == user.id {
        Ok((message, DeleteAs::Author))
    } else if user.role == Role::Admin {
        Ok((message, DeleteAs::Admin))
    } else {
        Err(Refusal::NotYours)
    }
}

/// On whose authority a room's retention is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionAs {
    /// The caller created the room.
    Creator,
    /// The caller is an admin (the room is someone else's).
    Admin,
}

/// May `user` set the retention of `room`? Only a room has one (anything else, a DM included:
/// `Unknown`); its creator or an admin (role as stored now) may set it.
pub async fn may_set_retention(
    store: &Store,
    user: &User,
    room: ConversationId,
) -> Result<RetentionAs, Refusal> {
    let room = store.room(room).await?.ok_or(Refusal::Unknown(room.0))?;
    if room.created_by == user.id {
        Ok(RetentionAs::Creator)
    } else if user.role == Role::Admin {
        Ok(RetentionAs::Admin)
    } else {
        Err(Refusal::NotRoomOwner)
    }
}

/// Is `ip` banned at `now_ms` by one of `rules`? The index of the first rule that bans it. A
/// rule bans every address in its network until its `until_ms` (exclusive; `None`: until
/// removed); an IPv4-mapped IPv6 address is the IPv4 address it maps. (Asked for every REST
/// request, WebSocket upgrade and WebTransport session, and for live connections when the
/// list changes: see [`crate::enforce`].)
pub fn address_ban(rules: &[IpBanRule], ip: IpAddr, now_ms: u64) -> Option<usize> {
    let ip = ip.to_canonical();
    rules.iter().position(|rule| {
        rule.until_ms.is_none_or(|until| now_ms < until) && rule.network.contains(&ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn setup() -> (tempfile::TempDir, Store, [UserId; 3]) {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("q.redb"), 1 << 22, Box::new(|_| {})).unwrap();
        let mut users = [UserId(0); 3];
        for (i, name) in ["alice", "bob", "carol"].iter().enumerate() {
            users[i] = store.create_user(name, "phc".into()).await.unwrap().id;
        }
        (dir, store, users)
    }

    #[tokio::test]
    async fn rooms_are_open_to_everyone() {
        let (_dir, store, [alice, _, carol]) = setup().await;
        let room = store.create_room("lobby", alice).await.unwrap().id;
        let grant = may_read(&store, carol, room).await.unwrap();
        may_send(&store, &grant).await.unwrap();
        may_join(&store, carol, room).await.unwrap();
        assert!(matches!(
            may_read(&store, carol, ConversationId(99)).await,
            Err(Refusal::Unknown(99))
        ));
    }

    #[tokio::test]
    async fn the_author_or_an_admin_may_delete() {
        let (_dir, store, [alice, bob, carol]) = setup().await;
        store
            .set_role(crate::store::Actor::Operator, "alice", Role::Admin)
            .await
            .unwrap();
        let (admin, user) = (
            store.user(alice).await.unwrap().unwrap(),
            store.user(bob).await.unwrap().unwrap(),
        );
        assert_eq!(admin.role, Role::Admin);
        let room = store.create_room("lobby", alice).await.unwrap().id;
        let seq = store
            .append(room, carol, "carol", 1, "hi")
            .await
            .unwrap()
            .message
            .seq;
        let by_carol = store.user(carol).await.unwrap().unwrap();
        assert_eq!(
            may_delete(&store, &by_carol, room, seq).await.unwrap().1,
            DeleteAs::Author
        );
        assert_eq!(
            may_delete(&store, &admin, room, seq).await.unwrap().1,
            DeleteAs::Admin
        );
        let refused = may_delete(&store, &user, room, seq).await.unwrap_err();
        assert!(matches!(refused, Refusal::NotYours));
        assert_eq!(refused.code(), ErrorCode::Forbidden);
        assert!(matches!(
            may_delete(&store, &user, room, seq + 1).await,
            Err(Refusal::Store(StoreError::NotFound))
        ));

        // In a DM the admin is not in, not even an admin.
        store.add_friend(bob, carol).await.unwrap();
        let crate::store::Added::Accepted(dm) = store.add_friend(carol, bob).await.unwrap() else {
            panic!("expected acceptance");
        };
        let seq = store
            .append(dm, bob, "bob", 1, "psst")
            .await
            .unwrap()
            .message
            .seq;
        assert!(matches!(
            may_delete(&store, &admin, dm, seq).await,
            Err(Refusal::Forbidden)
        ));
        assert_eq!(
            may_delete(&store, &user, dm, seq).await.unwrap().1,
            DeleteAs::Author
        );
    }

    #[tokio::test]
    async fn a_dm_is_its_two_members_and_sending_needs_the_friendship() {
        let (_dir, store, [alice, bob, carol]) = setup().await;
        store.add_friend(alice, bob).await.unwrap();
        let crate::store::Added::Accepted(dm) = store.add_friend(bob, alice).await.unwrap() else {
            panic!("expected acceptance");
        };
        let grant = may_read(&store, alice, dm).await.unwrap();
        may_send(&store, &grant).await.unwrap();
        let refused = may_read(&store, carol, dm).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Forbidden);
        assert_eq!(
            may_join(&store, bob, dm).await.unwrap_err().code(),
            ErrorCode::Forbidden,
            "a DM is not joined"
        );

        assert_eq!(dm_with(&store, alice, bob).await.unwrap(), (dm, true));
        assert_eq!(
            dm_with(&store, alice, carol).await.unwrap_err().code(),
            ErrorCode::NotFriends
        );
        store.remove_friend(bob, alice).await.unwrap();
        assert_eq!(dm_with(&store, bob, alice).await.unwrap(), (dm, false));
        let grant = may_read(&store, alice, dm).await.expect("still readable");
        assert_eq!(
            may_send(&store, &grant).await.unwrap_err().code(),
            ErrorCode::NotFriends
        );
    }

    #[tokio::test]
    async fn a_block_refuses_the_blocked_user_and_hides_them_from_the_blocker_only() {
        let (_dir, store, [alice, bob, carol]) = setup().await;
        store.add_friend(alice, bob).await.unwrap();
        let crate::store::Added::Accepted(dm) = store.add_friend(bob, alice).await.unwrap() else {
            panic!("expected acceptance");
        };
        let blocked = store.block(alice, bob).await.unwrap();
        assert!(blocked.changed && blocked.ended_friendship);
        assert_eq!(store.friend_state(alice, bob).await.unwrap(), None);

        // Bob, blocked by Alice: no DM, no sending in it, no friend request; nothing more said.
        assert!(matches!(
            dm_with(&store, bob, alice).await,
            Err(Refusal::NotAllowed)
        ));
        let grant = may_read(&store, bob, dm).await.unwrap();
        let refused = may_send(&store, &grant).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.to_string().as_str()),
            (ErrorCode::Forbidden, "not allowed")
        );
        assert!(matches!(
            store.add_friend(bob, alice).await,
            Err(StoreError::Blocked)
        ));
        assert!(matches!(
            store.add_friend(alice, bob).await,
            Err(StoreError::Blocked)
        ));
        // Alice may still open the (read-only) DM; Carol is untouched.
        assert_eq!(dm_with(&store, alice, bob).await.unwrap(), (dm, false));
        store.add_friend(carol, alice).await.unwrap();

        // What Alice sees of Bob's messages, and what everyone else sees.
        let message = ChatMessage {
            conversation: dm,
            seq: 3,
            author: bob,
            author_name: "bob".into(),
            client_id: 7,
            sent_at_ms: 5,
            body: "hi".into(),
        };
        let alices: HashSet<UserId> = store
            .blocked_users(alice)
            .await
            .unwrap()
            .into_iter()
            .collect();
        let hidden = shown(&alices, message.clone());
        assert!(hidden.is_hidden());
        assert_eq!((hidden.seq, hidden.sent_at_ms), (3, 5));
        let carols: HashSet<UserId> = store
            .blocked_users(carol)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(shown(&carols, message.clone()), message);

        assert!(store.unblock(alice, bob).await.unwrap());
        store.add_friend(bob, alice).await.unwrap();
        assert!(store.blocked_users(alice).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_creator_or_an_admin_may_set_retention_in_a_room_only() {
        let (_dir, store, [alice, bob, carol]) = setup().await;
        let room = store.create_room("lobby", bob).await.unwrap().id;
        store
            .set_role(crate::store::Actor::Operator, "alice", Role::Admin)
            .await
            .unwrap();
        let [admin, creator, other] = [alice, bob, carol];
        let user = |id| {
            let store = store.clone();
            async move { store.user(id).await.unwrap().unwrap() }
        };
        assert_eq!(
            may_set_retention(&store, &user(creator).await, room)
                .await
                .unwrap(),
            RetentionAs::Creator
        );
        assert_eq!(
            may_set_retention(&store, &user(admin).await, room)
                .await
                .unwrap(),
            RetentionAs::Admin
        );
        assert!(matches!(
            may_set_retention(&store, &user(other).await, room).await,
            Err(Refusal::NotRoomOwner)
        ));
        // A DM is not a room, even to its members or an admin; nor is an unknown id.
        store.add_friend(bob, carol).await.unwrap();
        let crate::store::Added::Accepted(dm) = store.add_friend(carol, bob).await.unwrap() else {
            panic!("not accepted");
        };
        for who in [admin, creator, other] {
            assert!(matches!(
                may_set_retention(&store, &user(who).await, dm).await,
                Err(Refusal::Unknown(_))
            ));
        }
        assert!(matches!(
            may_set_retention(&store, &user(admin).await, ConversationId(999)).await,
            Err(Refusal::Unknown(999))
        ));
    }
}
