//! Blocks: who blocks whom, and since when (`blocks`: (blocker, blocked) → since, ms).
//!
//! One row per block, keyed blocker first, so a user's list is one range scan and "does A block
//! B" one lookup (both directions of a pair are two lookups; no reverse index is needed). A
//! block ends whatever stood between the two in the friends table (friendship, a request either
//! way) in the same write, and a friend request or acceptance between the two is refused while
//! it stands (`StoreError::Blocked`, checked in that write), so nobody is ever friends with, or
//! asked by, someone they block; unblocking removes the row and restores nothing else. The rules that follow from a block (what the blocker no longer
//! sees, what the blocked user may no longer do) live in `crate::access`; this file only keeps
//! the facts.
//!
//! Bounds: a user blocks at most [`MAX_BLOCKS`] users, so a blocker's set (loaded when they
//! connect) stays small.

use quibble_protocol::wire::UserId;
use redb::ReadableTable;

use super::records::{UserRecord, decode};
use super::tables::{BLOCKS, USERS, WriteTables};
use super::writer::Request;
use super::{Redb, StoreError};

/// The most users one user may block.
pub const MAX_BLOCKS: usize = 1000;

/// The outcome of [`Redb::block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Whether the block is new (false: it already stood; nothing changed).
    pub changed: bool,
    /// Whether a friendship or a pending request (either way) was ended by it.
    pub ended_friendship: bool,
}

/// One line of a user's block list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEntry {
    pub user: UserId,
    pub username: String,
    pub since_ms: u64,
}

impl Redb {
    pub async fn block(&self, blocker: UserId, blocked: UserId) -> Result<Blocked, StoreError> {
        self.request(|reply| Request::Block {
            blocker,
            blocked,
            reply,
        })
        .await
    }

    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        self.request(|reply| Request::Unblock {
            blocker,
            blocked,
            reply,
        })
        .await
    }

    pub async fn blocks(&self, blocker: UserId, blocked: UserId) -> Result<bool, StoreError> {
        self.read(move |txn| {
            Ok(txn
                .open_table(BLOCKS)?
                .get((blocker.0, blocked.0))?
                .is_some())
        })
        .await
    }

    pub async fn blocked_users(&self, blocker: UserId) -> Result<Vec<UserId>, StoreError> {
        self.read(move |txn| blocked_ids(&txn.open_table(BLOCKS)?, blocker))
            .await
    }

    pub async fn block_list(&self, blocker: UserId) -> Result<Vec<BlockEntry>, StoreError> {
        self.read(move |txn| {
            let blocks = txn.open_table(BLOCKS)?;
            let users = txn.open_table(USERS)?;
            blocks
                .range((blocker.0, 0)..=(blocker.0, u64::MAX))?
                .take(MAX_BLOCKS)
                .map(|entry| {
                    let (key, since) = entry?;
                    let other = key.value().1;
                    let bytes = users.get(other)?.ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "user {other} blocked by {} is no user",
                            blocker.0
                        ))
                    })?;
                    let record: UserRecord<String> = decode("users", bytes.value())?;
                    Ok(BlockEntry {
                        user: UserId(other),
                        username: record.username,
                        since_ms: since.value(),
                    })
                })
                .collect()
        })
        .await
    }
}

/// The users `blocker` blocks, from an open `blocks` table.
pub(super) fn blocked_ids(
    blocks: &impl ReadableTable<(u64, u64), u64>,
    blocker: UserId,
) -> Result<Vec<UserId>, StoreError> {
    blocks
        .range((blocker.0, 0)..=(blocker.0, u64::MAX))?
        .take(MAX_BLOCKS)
        .map(|entry| Ok(UserId(entry?.0.value().1)))
        .collect()
}

/// Writer side of [`Redb::block`]; refuses before writing anything.
pub(super) fn block(
    tables: &mut WriteTables<'_>,
    now_ms: u64,
    blocker: UserId,
    blocked: UserId,
) -> Result<Blocked, StoreError> {
    if tables.users.get(blocked.0)?.is_none() {
        return Err(StoreError::NotFound);
    }
    if tables.blocks.get((blocker.0, blocked.0))?.is_some() {
        return Ok(Blocked {
            changed: false,
            ended_friendship: false,
        });
    }
    let count = tables
        .blocks
        .range((blocker.0, 0)..=(blocker.0, u64::MAX))?
        .take(MAX_BLOCKS)
        .count();
    if count >= MAX_BLOCKS {
        return Err(StoreError::TooMany("blocked users"));
    }
    tables.blocks.insert((blocker.0, blocked.0), now_ms)?;
    let ended_friendship = tables.friends.remove((blocker.0, blocked.0))?.is_some();
    tables.friends.remove((blocked.0, blocker.0))?;
    Ok(Blocked {
        changed: true,
        ended_friendship,
    })
}

/// Whether `a` blocks `b` or `b` blocks `a`, inside a write.
pub(super) fn either_blocks(
    tables: &WriteTables<'_>,
    a: UserId,
    b: UserId,
) -> Result<bool, StoreError> {
    Ok(tables.blocks.get((a.0, b.0))?.is_some() || tables.blocks.get((b.0, a.0))?.is_some())
}

/// Writer side of [`Redb::unblock`].
pub(super) fn unblock(
    tables: &mut WriteTables<'_>,
    blocker: UserId,
    blocked: UserId,
) -> Result<bool, StoreError> {
    Ok(tables.blocks.remove((blocker.0, blocked.0))?.is_some())
}
