//! What arrives on conversation streams before `Welcome`. Over WebSocket a session sends each
//! `Join` right behind `Hello` instead of waiting for `Welcome` (one round trip less per
//! connect; the server authenticates `Hello` before it serves any other stream, so a refused
//! `Hello` is answered with the error and nothing of the conversation). The server answers on
//! the conversation's stream only after `Welcome`, but the session does not count on a server
//! to keep that order: conversation-stream frames and stream ends that come before `Welcome`
//! are held here, in arrival order, and applied right after it. Leaving a conversation drops
//! what its stream sent, so a later join of it does not take the old stream's frames.
//!
//! Bounded: at most [`MAX_EARLY`] events and [`MAX_EARLY_BYTES`] (counting their text) are held.
//! Past either the session gives the connection up and reconnects.

use std::collections::VecDeque;

use crate::wire::{ConversationId, ServerFrame};

/// Most conversation-stream events held while waiting for `Welcome`.
pub(super) const MAX_EARLY: usize = 1024;
/// Most bytes held while waiting for `Welcome` (text, and a fixed part per event and message).
pub(super) const MAX_EARLY_BYTES: usize = 1 << 20;

/// A conversation-stream event received before `Welcome`.
#[derive(Debug)]
pub(super) enum Early {
    Frame(ConversationId, ServerFrame),
    Closed(ConversationId),
}

impl Early {
    fn conversation(&self) -> ConversationId {
        match self {
            Early::Frame(c, _) | Early::Closed(c) => *c,
        }
    }

    /// What it holds, in bytes: the text it carries and a fixed part for the rest.
    fn body_bytes(&self) -> usize {
        const FIXED: usize = 64;
        FIXED
            + match self {
                Early::Frame(_, ServerFrame::Message(m)) => m.body.len(),
                Early::Frame(_, ServerFrame::HistoryPage { messages, .. }) => {
                    messages.iter().map(|m| FIXED + m.body.len()).sum()
                }
                Early::Frame(
                    _,
                    ServerFrame::Rejected { reason, .. } | ServerFrame::Error { reason, .. },
                ) => reason.len(),
                _ => 0,
            }
    }
}

/// The held events of the current connection.
#[derive(Debug, Default)]
pub(super) struct EarlyFrames {
    held: VecDeque<Early>,
    /// What `held` holds, in bytes (see `Early::body_bytes`).
    bytes: usize,
}

impl EarlyFrames {
    /// Hold `event`; false (and nothing held) once [`MAX_EARLY`] events or [`MAX_EARLY_BYTES`]
    /// would be held.
    pub(super) fn hold(&mut self, event: Early) -> bool {
        let bytes = self.bytes + event.body_bytes();
        if self.held.len() >= MAX_EARLY || bytes > MAX_EARLY_BYTES {
            return false;
        }
        self.bytes = bytes;
        self.held.push_back(event);
        true
    }

    /// Everything held, oldest first, leaving nothing.
    pub(super) fn take(&mut self) -> VecDeque<Early> {
        self.bytes = 0;
        std::mem::take(&mut self.held)
    }

    /// Forget what `conversation`'s stream sent (the conversation was left).
    pub(super) fn forget(&mut self, conversation: ConversationId) {
        self.held.retain(|e| e.conversation() != conversation);
        self.bytes = self.held.iter().map(Early::body_bytes).sum();
    }

    /// Forget what the last connection held.
    pub(super) fn clear(&mut self) {
        self.held.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChatMessage, UserId};

    #[test]
    fn holds_in_order_up_to_the_bound() {
        let mut early = EarlyFrames::default();
        for i in 0..MAX_EARLY as u64 {
            assert!(early.hold(Early::Closed(ConversationId(i))));
        }
        assert!(!early.hold(Early::Closed(ConversationId(u64::MAX))));
        let held = early.take();
        assert_eq!(held.len(), MAX_EARLY);
        assert!(matches!(
            held.front(),
            Some(Early::Closed(ConversationId(0)))
        ));
        assert!(early.take().is_empty());
        early.hold(Early::Closed(ConversationId(1)));
        early.clear();
        assert!(early.take().is_empty());
    }

    fn message(conversation: u64, seq: u64, body: usize) -> Early {
        let m = ChatMessage {
            conversation: ConversationId(conversation),
            seq,
            author: UserId(1),
            author_name: "a".into(),
            client_id: seq,
            sent_at_ms: 0,
            body: "x".repeat(body),
        };
        Early::Frame(ConversationId(conversation), ServerFrame::Message(m))
    }

    #[test]
    fn holds_up_to_the_byte_bound_and_forgets_a_left_conversation() {
        let mut early = EarlyFrames::default();
        let big = 300 * 1024;
        for seq in 1..=3 {
            assert!(early.hold(message(1, seq, big)));
        }
        assert!(!early.hold(message(1, 4, big)), "past MAX_EARLY_BYTES");
        // Leaving conversation 1 gives its bytes back; 2's event stays.
        early.forget(ConversationId(1));
        assert!(early.hold(message(2, 1, big)));
        assert!(early.hold(Early::Closed(ConversationId(2))));
        let held = early.take();
        assert_eq!(held.len(), 2);
        assert!(held.iter().all(|e| e.conversation() == ConversationId(2)));
    }
}
