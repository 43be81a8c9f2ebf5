//! What arrives on conversation streams before `Welcome`. A session sends each `Join` right
//! behind `Hello` instead of waiting for `Welcome` (one round trip less per connect; the server
//! authenticates `Hello` before it serves any other stream, so a refused `Hello` is answered
//! with the error and nothing of the conversation). Over WebTransport the control stream and a
//! conversation's stream are separate QUIC streams, and a lost packet lets the conversation's
//! `Joined` overtake `Welcome`. Such frames and stream ends are held here, in arrival order,
//! and applied right after `Welcome`.
//!
//! Bounded: at most [`MAX_EARLY`] are held. Past that the session gives the connection up (the
//! server keeps streaming while `Welcome` is lost), and reconnects.

use std::collections::VecDeque;

use crate::wire::{ConversationId, ServerFrame};

/// Most conversation-stream events held while waiting for `Welcome`.
pub(super) const MAX_EARLY: usize = 1024;

/// A conversation-stream event received before `Welcome`.
#[derive(Debug)]
pub(super) enum Early {
    Frame(ConversationId, ServerFrame),
    Closed(ConversationId),
}

/// The held events of the current connection.
#[derive(Debug, Default)]
pub(super) struct EarlyFrames {
    held: VecDeque<Early>,
}

impl EarlyFrames {
    /// Hold `event`; false (and nothing held) once [`MAX_EARLY`] are held.
    pub(super) fn hold(&mut self, event: Early) -> bool {
        if self.held.len() >= MAX_EARLY {
            return false;
        }
        self.held.push_back(event);
        true
    }

    /// Everything held, oldest first, leaving nothing.
    pub(super) fn take(&mut self) -> VecDeque<Early> {
        std::mem::take(&mut self.held)
    }

    /// Forget what the last connection held.
    pub(super) fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
