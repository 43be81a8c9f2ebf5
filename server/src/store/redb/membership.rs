//! Durable membership: which conversations a user is in. A user joins rooms (and is put in a
//! room they create); the two members of a DM are put in it when it is made and never leave
//! it. Rows are kept both ways, `(user, conversation)` in `memberships` for a user's list and
//! `(conversation, user)` in `members` for a conversation's members, always written together.
//!
//! A user may be in at most [`MAX_MEMBERSHIPS`] conversations, so everything computed over a
//! user's conversations (the conversation list, the live summary) is bounded.

use quibble_protocol::wire::{ConversationId, UserId};
use redb::{ReadTransaction, ReadableTable};

use super::tables::{DMS, MEMBERSHIPS, ROOMS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

/// The most conversations (rooms and DMs) one user may be in.
pub const MAX_MEMBERSHIPS: usize = 1000;

/// What a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationKind {
    Room,
    /// A direct-message conversation between these two users (lower id first).
    Dm(UserId, UserId),
}

impl Redb {
    pub async fn join_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        self.request(|reply| Request::JoinRoom { user, room, reply })
            .await
    }

    pub async fn leave_room(&self, user: UserId, room: ConversationId) -> Result<bool, StoreError> {
        self.request(|reply| Request::LeaveRoom { user, room, reply })
            .await
    }

    pub async fn is_member(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<bool, StoreError> {
        self.read(move |txn| read_is_member(txn, user, conversation))
            .await
    }

    pub async fn memberships(&self, user: UserId) -> Result<Vec<ConversationId>, StoreError> {
        self.read(move |txn| {
            let memberships = txn.open_table(MEMBERSHIPS)?;
            memberships
                .range((user.0, 0)..=(user.0, u64::MAX))?
                .map(|entry| Ok(ConversationId(entry?.0.value().1)))
                .collect()
        })
        .await
    }

    pub async fn conversation_kind(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<ConversationKind>, StoreError> {
        self.read(move |txn| read_kind(txn, conversation)).await
    }
}

/// Whether `user` is in `conversation`, in a read transaction.
pub(super) fn read_is_member(
    txn: &ReadTransaction,
    user: UserId,
    conversation: ConversationId,
) -> Result<bool, StoreError> {
    let memberships = txn.open_table(MEMBERSHIPS)?;
    Ok(memberships.get((user.0, conversation.0))?.is_some())
}

/// The kind of `conversation` (`None` if there is none), in a read transaction.
pub(super) fn read_kind(
    txn: &ReadTransaction,
    conversation: ConversationId,
) -> Result<Option<ConversationKind>, StoreError> {
    if txn.open_table(ROOMS)?.get(conversation.0)?.is_some() {
        return Ok(Some(ConversationKind::Room));
    }
    let dms = txn.open_table(DMS)?;
    Ok(dms.get(conversation.0)?.map(|pair| {
        let (a, b) = pair.value();
        ConversationKind::Dm(UserId(a), UserId(b))
    }))
}

/// Whether `user` is in `conversation`, in a write transaction.
pub(super) fn is_member(
    tables: &WriteTables<'_>,
    user: UserId,
    conversation: ConversationId,
) -> Result<bool, StoreError> {
    Ok(tables.memberships.get((user.0, conversation.0))?.is_some())
}

/// Refuses with [`StoreError::TooMany`] if `user` has no room for one more membership.
pub(super) fn check_room_for_one(tables: &WriteTables<'_>, user: UserId) -> Result<(), StoreError> {
    let count = tables
        .memberships
        .range((user.0, 0)..=(user.0, u64::MAX))?
        .take(MAX_MEMBERSHIPS)
        .count();
    if count >= MAX_MEMBERSHIPS {
        return Err(StoreError::TooMany("conversations"));
    }
    Ok(())
}

/// Writes both rows of a membership (the caller has checked the cap).
pub(super) fn add(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    user: UserId,
    conversation: ConversationId,
) -> Result<(), StoreError> {
    tables
        .memberships
        .insert((user.0, conversation.0), now_ms)?;
    tables.members.insert((conversation.0, user.0), ())?;
    Ok(())
}

/// Writer side of [`Redb::join_room`]; refuses before writing anything.
pub(super) fn join_room(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    user: UserId,
    room: ConversationId,
) -> Result<bool, StoreError> {
    if tables.rooms.get(room.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    if is_member(tables, user, room)? {
        return Ok(false);
    }
    check_room_for_one(tables, user)?;
    add(tables, now_ms, user, room)?;
    Ok(true)
}

/// Writer side of [`Redb::leave_room`]; refuses before writing anything. The user's cursors
/// stay, so rejoining finds them where they were.
pub(super) fn leave_room(
    tables: &mut WriteTables<'_>,
    user: UserId,
    room: ConversationId,
) -> Result<bool, StoreError> {
    if tables.rooms.get(room.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let was = tables.memberships.remove((user.0, room.0))?.is_some();
    tables.members.remove((room.0, user.0))?;
    Ok(was)
}
