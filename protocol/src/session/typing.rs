//! Rate limit for the user's own `Typing` frames. The application may call
//! [`super::Session::typing`] on every keystroke; a frame goes out for a conversation at most
//! once per refresh interval, shorter than the server's `TYPING_TTL_MS` so that an indicator
//! kept alive by refreshes never runs out between two of them. Sending a message there makes
//! the server announce "stopped", so the next keystroke after a send goes out at once.

use crate::wire::{ConversationId, TYPING_TTL_MS};

/// Interval between two `Typing` frames for one conversation: 3 s leaves 2 s of the 5 s TTL
/// for the frame's way to the server and the other members.
pub const TYPING_REFRESH_MS: u64 = 3_000;

#[derive(Debug, Default)]
pub(super) struct Typing {
    /// When the last frame went out, per conversation (only those within the TTL: few).
    last_sent: Vec<(ConversationId, u64)>,
}

impl Typing {
    /// Whether a `Typing` for `conversation` should go out at `now_ms` (and note it if so).
    pub(super) fn should_send(&mut self, conversation: ConversationId, now_ms: u64) -> bool {
        // Entries older than the TTL are of no use any more: keep the map small.
        self.last_sent
            .retain(|&(_, at)| now_ms.saturating_sub(at) < u64::from(TYPING_TTL_MS));
        match self.last_sent.iter_mut().find(|(c, _)| *c == conversation) {
            Some((_, at)) if now_ms.saturating_sub(*at) < TYPING_REFRESH_MS => false,
            Some((_, at)) => {
                *at = now_ms;
                true
            }
            None => {
                self.last_sent.push((conversation, now_ms));
                true
            }
        }
    }

    /// A message went out in `conversation` (the server stops the indicator then).
    pub(super) fn sent_message(&mut self, conversation: ConversationId) {
        self.last_sent.retain(|(c, _)| *c != conversation);
    }

    /// A new connection: the server has no indicator of ours.
    pub(super) fn reconnected(&mut self) {
        self.last_sent.clear();
    }
}
