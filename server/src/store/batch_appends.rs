//! What a batch's appends change besides the message itself, kept in memory and written once
//! per batch instead of once per message: each conversation's head seq, each author's cursors
//! (an author reads their own message, see [`super::cursors`]), and which conversations are
//! known to exist.
//!
//! Under load one batch holds many messages of the same conversations, so this saves most of
//! the B-tree reads and writes of an append. The writer flushes it ([`BatchAppends::flush`])
//! before any request that is not an append (which then sees the tables exactly as if every
//! append had written through) and before the commit; a failed flush aborts the batch like any
//! other write error.

use std::collections::{HashMap, HashSet};

use quibble_protocol::wire::{ConversationId, UserId};
use redb::ReadableTable;

use super::StoreError;
use super::append_tables::AppendTables;
use super::cursors::{self, Cursors};

/// The pending side effects of a batch's appends.
#[derive(Debug, Default)]
pub(super) struct BatchAppends {
    /// Conversations seen to exist (rooms and DMs are never removed).
    known: HashSet<u64>,
    /// Conversation → its head seq, as the batch's appends left it.
    heads: HashMap<u64, Pending<u64>>,
    /// (author, conversation) → the author's cursors, as the batch's appends left them.
    cursors: HashMap<(u64, u64), Pending<Cursors>>,
}

/// A value read from its table, and whether the batch changed it since.
#[derive(Debug, Clone, Copy)]
struct Pending<T> {
    value: T,
    changed: bool,
}

impl BatchAppends {
    /// Whether `conversation` exists (a room or a DM).
    pub fn exists<'t>(
        &mut self,
        tables: &mut impl AppendTables<'t>,
        conversation: ConversationId,
    ) -> Result<bool, StoreError> {
        if self.known.contains(&conversation.0) {
            return Ok(true);
        }
        let exists = tables.rooms().get(conversation.0)?.is_some()
            || tables.dms().get(conversation.0)?.is_some();
        if exists {
            self.known.insert(conversation.0);
        }
        Ok(exists)
    }

    /// The head seq of `conversation` (0 when it has no messages).
    pub fn head<'t>(
        &mut self,
        tables: &mut impl AppendTables<'t>,
        conversation: ConversationId,
    ) -> Result<u64, StoreError> {
        if let Some(head) = self.heads.get(&conversation.0) {
            return Ok(head.value);
        }
        let head = tables
            .heads()
            .get(conversation.0)?
            .map_or(0, |seq| seq.value());
        self.heads.insert(
            conversation.0,
            Pending {
                value: head,
                changed: false,
            },
        );
        Ok(head)
    }

    /// `author`'s message `seq` was appended to `conversation`: it is the head now, and if the
    /// author's read cursor was just before it, both cursors move onto it.
    pub fn appended<'t>(
        &mut self,
        tables: &mut impl AppendTables<'t>,
        author: UserId,
        conversation: ConversationId,
        seq: u64,
    ) -> Result<(), StoreError> {
        self.heads.insert(
            conversation.0,
            Pending {
                value: seq,
                changed: true,
            },
        );
        let key = (author.0, conversation.0);
        let old = match self.cursors.get(&key) {
            Some(pending) => pending.value,
            None => cursors::get(tables, author, conversation)?,
        };
        if old.read + 1 == seq {
            let value = Cursors {
                delivered: old.delivered.max(seq),
                read: seq,
            };
            self.cursors.insert(
                key,
                Pending {
                    value,
                    changed: true,
                },
            );
        } else {
            self.cursors.entry(key).or_insert(Pending {
                value: old,
                changed: false,
            });
        }
        Ok(())
    }

    /// Writes the changed heads and cursors and forgets them (what is known to exist stays).
    pub fn flush<'t>(&mut self, tables: &mut impl AppendTables<'t>) -> Result<(), StoreError> {
        for (conversation, head) in self.heads.drain() {
            if head.changed {
                tables.heads().insert(conversation, head.value)?;
            }
        }
        for (key, cursors) in self.cursors.drain() {
            if cursors.changed {
                let Cursors { delivered, read } = cursors.value;
                tables.cursors().insert(key, (delivered, read))?;
            }
        }
        Ok(())
    }
}
