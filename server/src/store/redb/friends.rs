//! Friendships, friend requests and the DM conversation of each pair.
//!
//! A pair's state is stored twice, once as each user sees it (`friends`: (user, other) →
//! [`FriendState`]), and always written both ways in one transaction. Adding someone who asked
//! first accepts; removing declines, cancels or unfriends, whichever applies.
//!
//! A DM is an ordinary conversation (same id counter, seqs, history, cursors as a room), made
//! when a pair first becomes friends and found again by the pair (`dm_pairs`); both users are
//! members of it for good, so after unfriending both still read it (sending is what the
//! friendship gates, see `crate::access`), and befriending again reuses it.
//!
//! Nobody may ask, or accept, someone they block or who blocks them ([`StoreError::Blocked`],
//! checked in the same write, so a block and a request racing cannot leave a request behind).
//!
//! Bounds: a user has at most [`MAX_FRIEND_ENTRIES`] friends and requests (both directions
//! together), so nobody can be flooded with unbounded requests.

use quibble_protocol::wire::{ConversationId, UserId};
use redb::{ReadTransaction, ReadableTable};

use super::records::{UserRecord, decode};
use super::tables::{DM_PAIRS, FRIENDS, META_NEXT_CONVERSATION_ID, USERS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};
use super::{blocks, membership};

/// The most friends and pending requests one user may have.
pub const MAX_FRIEND_ENTRIES: usize = 1000;

/// How a user stands with another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendState {
    Friends,
    /// The user asked the other; no answer yet.
    Outgoing,
    /// The other asked the user; no answer yet.
    Incoming,
}

impl FriendState {
    fn to_byte(self) -> u8 {
        match self {
            FriendState::Friends => 0,
            FriendState::Outgoing => 1,
            FriendState::Incoming => 2,
        }
    }

    fn from_byte(byte: u8) -> Result<Self, StoreError> {
        match byte {
            0 => Ok(FriendState::Friends),
            1 => Ok(FriendState::Outgoing),
            2 => Ok(FriendState::Incoming),
            other => Err(StoreError::Corrupt(format!("friend state {other}"))),
        }
    }
}

/// The outcome of [`Redb::add_friend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A new request to the other user.
    Requested,
    /// The request was already made; nothing changed.
    AlreadyRequested,
    /// The other had asked: now friends, with this DM.
    Accepted(ConversationId),
    /// Already friends; nothing changed.
    AlreadyFriends(ConversationId),
}

/// The outcome of [`Redb::remove_friend`]: what the removal undid, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The other's request to the user was declined.
    Declined,
    /// The user's request to the other was withdrawn.
    Cancelled,
    /// The friendship ended (the DM stays readable).
    Unfriended,
    /// There was nothing between them.
    Nothing,
}

/// One line of a user's friend list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendEntry {
    pub user: UserId,
    pub username: String,
    pub state: FriendState,
    /// The pair's DM conversation, if it was ever made.
    pub dm: Option<ConversationId>,
}

impl Redb {
    pub async fn add_friend(&self, user: UserId, other: UserId) -> Result<Added, StoreError> {
        self.request(|reply| Request::AddFriend { user, other, reply })
            .await
    }

    pub async fn remove_friend(&self, user: UserId, other: UserId) -> Result<Removed, StoreError> {
        self.request(|reply| Request::RemoveFriend { user, other, reply })
            .await
    }

    pub async fn friend_state(
        &self,
        user: UserId,
        other: UserId,
    ) -> Result<Option<FriendState>, StoreError> {
        self.read(move |txn| {
            let friends = txn.open_table(FRIENDS)?;
            friends
                .get((user.0, other.0))?
                .map(|s| FriendState::from_byte(s.value()))
                .transpose()
        })
        .await
    }

    pub async fn friends(&self, user: UserId) -> Result<Vec<FriendEntry>, StoreError> {
        self.read(move |txn| read_friends(txn, user)).await
    }

    pub async fn dm_between(
        &self,
        a: UserId,
        b: UserId,
    ) -> Result<Option<ConversationId>, StoreError> {
        self.read(move |txn| {
            let pairs = txn.open_table(DM_PAIRS)?;
            Ok(pairs.get(pair(a, b))?.map(|c| ConversationId(c.value())))
        })
        .await
    }
}

/// The key of a pair: lower user id first.
fn pair(a: UserId, b: UserId) -> (u64, u64) {
    (a.0.min(b.0), a.0.max(b.0))
}

fn state(
    tables: &WriteTables<'_>,
    user: UserId,
    other: UserId,
) -> Result<Option<FriendState>, StoreError> {
    tables
        .friends
        .get((user.0, other.0))?
        .map(|s| FriendState::from_byte(s.value()))
        .transpose()
}

fn set(
    tables: &mut WriteTables<'_>,
    user: UserId,
    other: UserId,
    seen_by_user: FriendState,
    seen_by_other: FriendState,
) -> Result<(), StoreError> {
    tables
        .friends
        .insert((user.0, other.0), seen_by_user.to_byte())?;
    tables
        .friends
        .insert((other.0, user.0), seen_by_other.to_byte())?;
    Ok(())
}

fn check_room(tables: &WriteTables<'_>, user: UserId) -> Result<(), StoreError> {
    let count = tables
        .friends
        .range((user.0, 0)..=(user.0, u64::MAX))?
        .take(MAX_FRIEND_ENTRIES)
        .count();
    if count >= MAX_FRIEND_ENTRIES {
        return Err(StoreError::TooMany("friends and requests"));
    }
    Ok(())
}

/// Writer side of [`Redb::add_friend`]; refuses before writing anything.
pub(super) fn add(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    user: UserId,
    other: UserId,
) -> Result<Added, StoreError> {
    if tables.users.get(other.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    if blocks::either_blocks(tables, user, other)? {
        return Err(StoreError::Blocked);
    }
    let existing_dm = tables
        .dm_pairs
        .get(pair(user, other))?
        .map(|c| ConversationId(c.value()));
    match state(tables, user, other)? {
        Some(FriendState::Outgoing) => Ok(Added::AlreadyRequested),
        Some(FriendState::Friends) => {
            let dm =
                existing_dm.ok_or_else(|| StoreError::Corrupt("friends without a DM".into()))?;
            Ok(Added::AlreadyFriends(dm))
        }
        Some(FriendState::Incoming) => {
            let dm = match existing_dm {
                Some(dm) => dm,
                None => {
                    membership::check_room_for_one(tables, user)?;
                    membership::check_room_for_one(tables, other)?;
                    let id = ConversationId(tables.next_id(META_NEXT_CONVERSATION_ID)?);
                    let key = pair(user, other);
                    tables.dms.insert(id.0, key)?;
                    tables.dm_pairs.insert(key, id.0)?;
                    membership::add(tables, now_ms, user, id)?;
                    membership::add(tables, now_ms, other, id)?;
                    id
                }
            };
            set(
                tables,
                user,
                other,
                FriendState::Friends,
                FriendState::Friends,
            )?;
            Ok(Added::Accepted(dm))
        }
        None => {
            check_room(tables, user)?;
            check_room(tables, other)?;
            set(
                tables,
                user,
                other,
                FriendState::Outgoing,
                FriendState::Incoming,
            )?;
            Ok(Added::Requested)
        }
    }
}

/// Writer side of [`Redb::remove_friend`].
pub(super) fn remove(
    tables: &mut WriteTables<'_>,
    user: UserId,
    other: UserId,
) -> Result<Removed, StoreError> {
    let removed = match state(tables, user, other)? {
        None => return Ok(Removed::Nothing),
        Some(FriendState::Incoming) => Removed::Declined,
        Some(FriendState::Outgoing) => Removed::Cancelled,
        Some(FriendState::Friends) => Removed::Unfriended,
    };
    tables.friends.remove((user.0, other.0))?;
    tables.friends.remove((other.0, user.0))?;
    Ok(removed)
}

/// [`Redb::friends`] in a read transaction.
pub(super) fn read_friends(
    txn: &ReadTransaction,
    user: UserId,
) -> Result<Vec<FriendEntry>, StoreError> {
    let friends = txn.open_table(FRIENDS)?;
    let users = txn.open_table(USERS)?;
    let pairs = txn.open_table(DM_PAIRS)?;
    friends
        .range((user.0, 0)..=(user.0, u64::MAX))?
        .take(MAX_FRIEND_ENTRIES)
        .map(|entry| {
            let (key, state) = entry?;
            let other = key.value().1;
            let bytes = users.get(other)?.ok_or_else(|| {
                StoreError::Corrupt(format!("friend {other} of {} is no user", user.0))
            })?;
            let record: UserRecord<String> = decode("users", bytes.value())?;
            let dm = pairs
                .get(pair(user, UserId(other)))?
                .map(|c| ConversationId(c.value()));
            Ok(FriendEntry {
                user: UserId(other),
                username: record.username,
                state: FriendState::from_byte(state.value())?,
                dm,
            })
        })
        .collect()
}
