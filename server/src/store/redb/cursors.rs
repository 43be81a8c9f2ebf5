//! Receipt cursors: for each (user, conversation) the last seq delivered to the user's devices
//! and the last seq the user has read. Both only ever move forwards: a report below the stored
//! value changes nothing. A report past the conversation's head is clamped to the head, and the
//! delivered cursor is never below the read one (what was read was delivered).
//!
//! An author has read their own message: when a user's message is appended right after their
//! read cursor, both cursors move onto it (see [`super::batch_appends`]). That never changes an
//! unread count (own messages do not count), and it keeps the messages between a user's read
//! cursor and the head few, so counting unread messages stays cheap.

use quibble_protocol::wire::{ConversationId, UserId};

use redb::ReadableTable;

use super::append_tables::AppendTables;
use super::records::{UserRecord, decode};
use super::tables::{CURSORS, MEMBERS, USERS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

/// A user's cursors in one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursors {
    pub delivered: u64,
    pub read: u64,
}

impl Redb {
    pub async fn advance_cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
        delivered: u64,
        read: u64,
    ) -> Result<Cursors, StoreError> {
        self.request(|reply| Request::AdvanceCursors {
            user,
            conversation,
            wanted: Cursors { delivered, read },
            reply,
        })
        .await
    }

    pub async fn cursors(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Cursors, StoreError> {
        self.read(move |txn| {
            let cursors = txn.open_table(CURSORS)?;
            Ok(cursors
                .get((user.0, conversation.0))?
                .map_or_else(Cursors::default, |c| {
                    let (delivered, read) = c.value();
                    Cursors { delivered, read }
                }))
        })
        .await
    }
}

/// A member's cursors in a conversation, with their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberCursors {
    pub user: UserId,
    pub username: String,
    pub cursors: Cursors,
}

impl Redb {
    pub async fn member_cursors(
        &self,
        conversation: ConversationId,
        limit: usize,
    ) -> Result<Vec<MemberCursors>, StoreError> {
        self.read(move |txn| {
            let members = txn.open_table(MEMBERS)?;
            let cursors = txn.open_table(CURSORS)?;
            let users = txn.open_table(USERS)?;
            members
                .range((conversation.0, 0)..=(conversation.0, u64::MAX))?
                .take(limit)
                .map(|entry| {
                    let user = entry?.0.value().1;
                    let bytes = users
                        .get(user)?
                        .ok_or_else(|| StoreError::Corrupt(format!("member {user} is no user")))?;
                    let record: UserRecord<String> = decode("users", bytes.value())?;
                    let (delivered, read) = cursors
                        .get((user, conversation.0))?
                        .map_or((0, 0), |c| c.value());
                    Ok(MemberCursors {
                        user: UserId(user),
                        username: record.username,
                        cursors: Cursors { delivered, read },
                    })
                })
                .collect()
        })
        .await
    }
}

/// The cursors stored for `(user, conversation)`, in a write transaction.
pub(super) fn get<'t>(
    tables: &mut impl AppendTables<'t>,
    user: UserId,
    conversation: ConversationId,
) -> Result<Cursors, StoreError> {
    Ok(tables
        .cursors()
        .get((user.0, conversation.0))?
        .map_or_else(Cursors::default, |c| {
            let (delivered, read) = c.value();
            Cursors { delivered, read }
        }))
}

/// Writer side of [`Redb::advance_cursors`]; refuses before writing anything.
pub(super) fn advance(
    tables: &mut WriteTables<'_>,
    user: UserId,
    conversation: ConversationId,
    wanted: Cursors,
) -> Result<Cursors, StoreError> {
    if tables.rooms.get(conversation.0)?.is_none() && tables.dms.get(conversation.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    let head = tables
        .heads
        .get(conversation.0)?
        .map_or(0, |seq| seq.value());
    let old = get(tables, user, conversation)?;
    let read = old.read.max(wanted.read.min(head));
    let delivered = old.delivered.max(wanted.delivered.min(head)).max(read);
    let new = Cursors { delivered, read };
    if new != old {
        tables
            .cursors
            .insert((user.0, conversation.0), (delivered, read))?;
    }
    Ok(new)
}
