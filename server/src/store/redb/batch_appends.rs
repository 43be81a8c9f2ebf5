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
//!
//! Which conversations exist outlives the batch ([`Known`]): rooms and DMs are never removed,
//! so the writer keeps the set across commits and most batches read neither `rooms` nor `dms`
//! (nor open them). A batch's finds join the set only once it commits, so an aborted batch
//! leaves nothing behind; the set is bounded ([`MAX_KNOWN`]: emptied when full).

use std::collections::{HashMap, HashSet};

use quibble_protocol::wire::{ConversationId, UserId};
use redb::ReadableTable;

use super::StoreError;
use super::append_tables::AppendTables;
use super::cursors::{self, Cursors};

/// Most conversations [`Known`] remembers (8 bytes each, ~256 KiB of set when full).
pub(super) const MAX_KNOWN: usize = 16_384;

/// Conversations known to exist, kept by the writer across commits.
#[derive(Debug, Default)]
pub(super) struct Known(HashSet<u64>);

impl Known {
    /// Adds what a committed batch found to exist.
    fn extend(&mut self, found: HashSet<u64>) {
        if self.0.len() + found.len() > MAX_KNOWN {
            self.0.clear();
        }
        if found.len() <= MAX_KNOWN {
            self.0.extend(found);
        }
    }
}

/// The pending side effects of a batch's appends.
#[derive(Debug, Default)]
pub(super) struct BatchAppends {
    /// Conversations known to exist before the batch (the writer's, lent for the batch).
    known: Known,
    /// Conversations this batch found to exist, not in `known`.
    found: HashSet<u64>,
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
    /// A batch's appends, with what the writer knows to exist from earlier commits.
    pub fn new(known: Known) -> Self {
        BatchAppends {
            known,
            ..BatchAppends::default()
        }
    }

    /// Whether `conversation` exists (a room or a DM), known from earlier commits or this
    /// batch, else read from the tables.
    pub fn exists<'t>(
        &mut self,
        tables: &mut impl AppendTables<'t>,
        conversation: ConversationId,
    ) -> Result<bool, StoreError> {
        if self.known.0.contains(&conversation.0) || self.found.contains(&conversation.0) {
            return Ok(true);
        }
        let exists = tables.conversation_exists(conversation.0)?;
        if exists {
            self.found.insert(conversation.0);
        }
        Ok(exists)
    }

    /// The batch committed: what is known to exist now, for the next batch. (An aborted
    /// batch's set is dropped; the next one reads again what it needs.)
    pub fn committed(self) -> Known {
        let mut known = self.known;
        known.extend(self.found);
        known
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

    /// Writes the changed heads and cursors and forgets them (what was found to exist stays).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_set_is_emptied_when_full() {
        let mut known = Known::default();
        known.extend((0..MAX_KNOWN as u64).collect());
        assert_eq!(known.0.len(), MAX_KNOWN);
        known.extend([u64::MAX].into());
        assert_eq!(known.0.len(), 1, "emptied, then the newcomer");
        assert!(known.0.contains(&u64::MAX));
    }
}
