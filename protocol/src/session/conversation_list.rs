//! The user's conversation list as the server reports it on the control stream: the snapshot
//! that follows every `Welcome` (assembled from its chunks and swapped in whole once `done`),
//! then the live changes applied to it (an entry added or replaced, removed, a new message's
//! activity). The session keeps it so that both clients read unread counts, last messages and
//! the user's own cursors from one place, and so that receipts are only ever reported for
//! conversations the server knows the user has.
//!
//! `ConversationActivity` is applied as the protocol says: only when it is newer than the
//! entry's head; the unread count grows unless the user wrote the message; a message of the
//! user's own sent while they were caught up moves both their cursors onto it. The messages
//! the conversation streams receive are applied the same way (the server sends no activity for
//! them, protocol version 4); those that come while a snapshot is arriving are applied again
//! once it is in (it may have been read before them), at most [`MAX_HELD_ACTIVITY`] of them.

use crate::wire::{ConversationId, ConversationSummary, LastMessage, UserId};

#[derive(Debug, Default)]
pub(super) struct ConversationList {
    entries: Vec<ConversationSummary>,
    /// Chunks of a snapshot still coming in (`None` when no snapshot is under way).
    incoming: Option<Vec<ConversationSummary>>,
    /// Activity seen while a snapshot comes in, to apply on top of it.
    held: Vec<(ConversationId, LastMessage)>,
}

/// Most activity held for a snapshot still coming in (past it, the oldest is dropped: the
/// unread count may then be short until the next update of that entry).
pub const MAX_HELD_ACTIVITY: usize = 1024;

impl ConversationList {
    /// A connection is starting: the next `Conversations` chunks are a fresh snapshot.
    pub(super) fn expect_snapshot(&mut self) {
        self.incoming = Some(Vec::new());
        self.held.clear();
    }

    /// A chunk of the snapshot. Returns the whole list in the server's order (most recent
    /// activity first) once the chunk marked `done` is in.
    /// `me` is the user (for activity held meanwhile, see [`ConversationList::activity`]).
    pub(super) fn chunk(
        &mut self,
        conversations: Vec<ConversationSummary>,
        done: bool,
        me: Option<UserId>,
    ) -> Option<Vec<ConversationSummary>> {
        let incoming = self.incoming.get_or_insert_with(Vec::new);
        incoming.extend(conversations);
        if !done {
            return None;
        }
        self.entries = self.incoming.take().unwrap_or_default();
        for (conversation, last) in std::mem::take(&mut self.held) {
            self.apply(conversation, last, me);
        }
        Some(self.entries.clone())
    }

    /// An entry added or replaced.
    pub(super) fn update(&mut self, summary: ConversationSummary) {
        match self.get_mut(summary.conversation) {
            Some(entry) => *entry = summary,
            None => self.entries.push(summary),
        }
    }

    /// An entry removed; returns whether it was there.
    pub(super) fn remove(&mut self, conversation: ConversationId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|s| s.conversation != conversation);
        self.entries.len() != before
    }

    /// A message made durable in `conversation`; returns the entry when it changed.
    pub(super) fn activity(
        &mut self,
        conversation: ConversationId,
        last: LastMessage,
        me: Option<UserId>,
    ) -> Option<&ConversationSummary> {
        if self.incoming.is_some() {
            if self.held.len() == MAX_HELD_ACTIVITY {
                self.held.remove(0);
            }
            self.held.push((conversation, last.clone()));
        }
        self.apply(conversation, last, me)
    }

    fn apply(
        &mut self,
        conversation: ConversationId,
        last: LastMessage,
        me: Option<UserId>,
    ) -> Option<&ConversationSummary> {
        let entry = self.get_mut(conversation)?;
        if last.seq <= entry.head_seq {
            return None;
        }
        let mine = me == Some(last.author);
        if !mine {
            entry.unread = entry.unread.saturating_add(1);
        } else if entry.read_seq.saturating_add(1) == last.seq {
            entry.read_seq = last.seq;
            entry.delivered_seq = entry.delivered_seq.max(last.seq);
        }
        entry.head_seq = last.seq;
        entry.activity_ms = entry.activity_ms.max(last.sent_at_ms);
        entry.last = Some(last);
        Some(entry)
    }

    pub(super) fn get(&self, conversation: ConversationId) -> Option<&ConversationSummary> {
        self.entries.iter().find(|s| s.conversation == conversation)
    }

    fn get_mut(&mut self, conversation: ConversationId) -> Option<&mut ConversationSummary> {
        self.entries
            .iter_mut()
            .find(|s| s.conversation == conversation)
    }

    /// Every entry: the snapshot's order, then entries added since.
    pub(super) fn iter(&self) -> impl Iterator<Item = &ConversationSummary> + '_ {
        self.entries.iter()
    }
}
