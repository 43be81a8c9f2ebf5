//! The conversation list: for each conversation a user is in, its title, head seq, the user's
//! cursors, the unread count and the last message, read in one transaction.
//!
//! Unread = messages after the read cursor, not deleted (tombstones: deleted or retained away),
//! written neither by the user nor by someone the user blocks (see [`super::blocks`]; for them the last message is a hidden marker too, and a
//! blocked DM peer's cursors read as zero: nothing of theirs reaches the blocker). They are
//! counted by
//! walking the messages after the read cursor, reading each record in place; the walk
//! stops after [`UNREAD_SCAN`] messages and counts any beyond as unread (a user that far
//! behind sees "500+" either way). Authors' cursors skip their own messages (see
//! [`super::cursors`]), so the walk is short in practice.

use std::cmp::Reverse;
use std::collections::HashSet;

use quibble_protocol::wire::{ConversationId, UserId};
use redb::{ReadOnlyTable, ReadTransaction};

use super::blocks::blocked_ids;
use super::cursors::Cursors;
use super::membership::ConversationKind;
use super::records::{MessageRecord, RoomRecord, UserRecord, decode};
use super::tables::{BLOCKS, CURSORS, DMS, HEADS, MEMBERSHIPS, MESSAGES, ROOMS, USERS};
use super::{Redb, StoreError};

/// Messages after a read cursor whose authors are looked at when counting unread ones.
pub const UNREAD_SCAN: u64 = 500;
/// Characters of the last message's body in a summary (the protocol's, which clients apply to
/// the messages they receive too).
pub const PREVIEW_CHARS: usize = quibble_protocol::wire::PREVIEW_CHARS;

/// The last message of a conversation, as a summary shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastMessage {
    pub seq: u64,
    pub author: UserId,
    pub author_name: String,
    /// The body's first [`PREVIEW_CHARS`] characters.
    pub preview: String,
    pub sent_at_ms: u64,
}

/// One conversation as one of its members sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub conversation: ConversationId,
    pub kind: ConversationKind,
    /// The room's name, or for a DM the other member's username.
    pub title: String,
    pub head_seq: u64,
    pub cursors: Cursors,
    /// For a DM, the other member's cursors (what the user's messages reached).
    pub peer_cursors: Option<Cursors>,
    pub unread: u64,
    pub last: Option<LastMessage>,
    /// When the member joined (for a DM: when it was made), ms.
    pub joined_at_ms: u64,
}

impl Summary {
    /// When something last happened: the last message, else the joining.
    pub fn activity_ms(&self) -> u64 {
        self.last
            .as_ref()
            .map_or(self.joined_at_ms, |last| last.sent_at_ms)
    }
}

impl Redb {
    pub async fn summaries(&self, user: UserId) -> Result<Vec<Summary>, StoreError> {
        Ok(self.summaries_and_blocks(user).await?.0)
    }

    pub async fn summaries_and_blocks(
        &self,
        user: UserId,
    ) -> Result<(Vec<Summary>, Vec<UserId>), StoreError> {
        self.read(move |txn| read_summaries_and_blocks(txn, user))
            .await
    }

    pub async fn summary(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<Summary>, StoreError> {
        self.read(move |txn| {
            let tables = Tables::open(txn, user)?;
            let memberships = txn.open_table(MEMBERSHIPS)?;
            let Some(joined) = memberships.get((user.0, conversation.0))? else {
                return Ok(None);
            };
            tables.summary(user, conversation, joined.value()).map(Some)
        })
        .await
    }
}

/// The tables a summary reads, opened once per transaction, and the users the viewer blocks.
struct Tables {
    blocked: HashSet<u64>,
    rooms: ReadOnlyTable<u64, &'static [u8]>,
    dms: ReadOnlyTable<u64, (u64, u64)>,
    users: ReadOnlyTable<u64, &'static [u8]>,
    heads: ReadOnlyTable<u64, u64>,
    cursors: ReadOnlyTable<(u64, u64), (u64, u64)>,
    messages: ReadOnlyTable<(u64, u64), &'static [u8]>,
}

impl Tables {
    fn open(txn: &ReadTransaction, viewer: UserId) -> Result<Self, StoreError> {
        let blocked = blocked_ids(&txn.open_table(BLOCKS)?, viewer)?
            .into_iter()
            .map(|u| u.0)
            .collect();
        Ok(Tables {
            blocked,
            rooms: txn.open_table(ROOMS)?,
            dms: txn.open_table(DMS)?,
            users: txn.open_table(USERS)?,
            heads: txn.open_table(HEADS)?,
            cursors: txn.open_table(CURSORS)?,
            messages: txn.open_table(MESSAGES)?,
        })
    }

    fn summary(
        &self,
        user: UserId,
        conversation: ConversationId,
        joined_at_ms: u64,
    ) -> Result<Summary, StoreError> {
        let (kind, title) = self.kind_and_title(user, conversation)?;
        let head_seq = self.heads.get(conversation.0)?.map_or(0, |s| s.value());
        let cursors = self.cursors(user, conversation)?;
        let peer_cursors = match kind {
            ConversationKind::Room => None,
            ConversationKind::Dm(a, b) => {
                let peer = if a == user { b } else { a };
                Some(if self.blocked.contains(&peer.0) {
                    Cursors::default()
                } else {
                    self.cursors(peer, conversation)?
                })
            }
        };
        let last = match self.messages.get((conversation.0, head_seq))? {
            Some(bytes) if head_seq > 0 => {
                let record: MessageRecord<String> = decode("messages", bytes.value())?;
                if self.blocked.contains(&record.author) {
                    // The hidden marker's fields (see `ChatMessage::hidden`).
                    Some(LastMessage {
                        seq: head_seq,
                        author: UserId::NOBODY,
                        author_name: String::new(),
                        preview: String::new(),
                        sent_at_ms: record.sent_at_ms,
                    })
                } else {
                    Some(LastMessage {
                        seq: head_seq,
                        author: UserId(record.author),
                        author_name: record.author_name,
                        preview: record.body.chars().take(PREVIEW_CHARS).collect(),
                        sent_at_ms: record.sent_at_ms,
                    })
                }
            }
            _ => None,
        };
        let unread = self.unread(user, conversation, cursors.read, head_seq)?;
        Ok(Summary {
            conversation,
            kind,
            title,
            head_seq,
            cursors,
            peer_cursors,
            unread,
            last,
            joined_at_ms,
        })
    }

    fn cursors(&self, user: UserId, conversation: ConversationId) -> Result<Cursors, StoreError> {
        Ok(self
            .cursors
            .get((user.0, conversation.0))?
            .map_or_else(Cursors::default, |c| {
                let (delivered, read) = c.value();
                Cursors { delivered, read }
            }))
    }

    fn kind_and_title(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<(ConversationKind, String), StoreError> {
        if let Some(bytes) = self.rooms.get(conversation.0)? {
            let record: RoomRecord<String> = decode("rooms", bytes.value())?;
            return Ok((ConversationKind::Room, record.name));
        }
        let (a, b) = self
            .dms
            .get(conversation.0)?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "membership in conversation {} that does not exist",
                    conversation.0
                ))
            })?
            .value();
        let other = if a == user.0 { b } else { a };
        let bytes = self
            .users
            .get(other)?
            .ok_or_else(|| StoreError::Corrupt(format!("DM member {other} is no user")))?;
        let record: UserRecord<String> = decode("users", bytes.value())?;
        Ok((ConversationKind::Dm(UserId(a), UserId(b)), record.username))
    }

    /// Messages in `(read, head]` neither by `user` nor by someone they block (see the module
    /// doc).
    fn unread(
        &self,
        user: UserId,
        conversation: ConversationId,
        read: u64,
        head: u64,
    ) -> Result<u64, StoreError> {
        if head <= read {
            return Ok(0);
        }
        let scan_to = head.min(read.saturating_add(UNREAD_SCAN));
        let mut unread = head - scan_to;
        for entry in self
            .messages
            .range((conversation.0, read + 1)..=(conversation.0, scan_to))?
        {
            let (_, bytes) = entry?;
            // Borrowed: no allocation per message walked.
            let record: MessageRecord<&str> = postcard::from_bytes(bytes.value())
                .map_err(|e| StoreError::Codec(format!("messages: {e}")))?;
            // A tombstone (deleted, or retained away) is not unread.
            if !record.body.is_empty()
                && record.author != user.0
                && !self.blocked.contains(&record.author)
            {
                unread += 1;
            }
        }
        Ok(unread)
    }
}

/// [`Redb::summaries_and_blocks`] in a read transaction.
pub(super) fn read_summaries_and_blocks(
    txn: &ReadTransaction,
    user: UserId,
) -> Result<(Vec<Summary>, Vec<UserId>), StoreError> {
    let tables = Tables::open(txn, user)?;
    let memberships = txn.open_table(MEMBERSHIPS)?;
    let mut list = Vec::new();
    for entry in memberships.range((user.0, 0)..=(user.0, u64::MAX))? {
        let (key, joined) = entry?;
        let conversation = ConversationId(key.value().1);
        list.push(tables.summary(user, conversation, joined.value())?);
    }
    list.sort_by_key(|s| Reverse((s.activity_ms(), s.conversation)));
    let mut blocked: Vec<UserId> = tables.blocked.into_iter().map(UserId).collect();
    blocked.sort_unstable();
    Ok((list, blocked))
}
