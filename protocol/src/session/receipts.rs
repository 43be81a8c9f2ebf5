//! The user's own delivered/read cursors waiting to be reported, debounced. Each conversation
//! keeps the highest seqs the application reached (`wanted`) beside the highest the server is
//! known to have (`reported`: sent by this session or seen in the conversation list). The
//! first change that puts a conversation ahead arms one flush `delay_ms` later, and the flush
//! sends one `Receipt` per conversation that is ahead. So a burst (a resume replaying a
//! hundred messages, a busy room) costs one frame per conversation per delay, while a steady
//! stream still reports at that pace instead of waiting for a lull.
//!
//! In rooms nobody is shown "delivered" (only "seen by"), and every receipt there is told to
//! every member, so a room's delivered cursor is only reported together with a read cursor
//! that moved. DMs report delivered on its own, for the sender's "delivered" tick.
//!
//! After a reconnect nothing is known to have reached the server: every conversation with a
//! wanted cursor is reported again (the server keeps the highest, so a repeat is harmless),
//! unless the new conversation list shows the server already has it.

use crate::wire::{ClientFrame, ConversationId};

#[derive(Debug, Clone, Copy)]
struct Marks {
    conversation: ConversationId,
    delivered: u64,
    read: u64,
    reported_delivered: u64,
    reported_read: u64,
    /// A room: delivered alone is not worth a frame.
    lazy_delivered: bool,
}

impl Marks {
    /// Whether a receipt is worth sending.
    fn ahead(&self) -> bool {
        self.read > self.reported_read
            || (!self.lazy_delivered && self.delivered > self.reported_delivered)
    }
}

#[derive(Debug)]
pub(super) struct Receipts {
    delay_ms: u64,
    /// One entry per conversation (a vector: few entries, and small code in the browser).
    by_conversation: Vec<Marks>,
    /// When the armed flush is due.
    due_at_ms: Option<u64>,
}

impl Receipts {
    pub(super) fn new(delay_ms: u64) -> Self {
        Receipts {
            delay_ms,
            by_conversation: Vec::new(),
            due_at_ms: None,
        }
    }

    /// The application reached `delivered` / `read` (either may be 0: no news) at `now_ms`.
    /// Read implies delivered. With `lazy_delivered` (a room) a delivered cursor alone does
    /// not arm a flush.
    pub(super) fn reached(
        &mut self,
        conversation: ConversationId,
        delivered: u64,
        read: u64,
        lazy_delivered: bool,
        now_ms: u64,
    ) {
        let at = match self
            .by_conversation
            .iter()
            .position(|m| m.conversation == conversation)
        {
            Some(at) => at,
            None => {
                self.by_conversation.push(Marks {
                    conversation,
                    delivered: 0,
                    read: 0,
                    reported_delivered: 0,
                    reported_read: 0,
                    lazy_delivered,
                });
                self.by_conversation.len() - 1
            }
        };
        let marks = &mut self.by_conversation[at];
        marks.lazy_delivered = lazy_delivered;
        marks.read = marks.read.max(read);
        marks.delivered = marks.delivered.max(delivered).max(marks.read);
        if marks.ahead() && self.due_at_ms.is_none() {
            self.due_at_ms = Some(now_ms.saturating_add(self.delay_ms));
        }
    }

    /// The server is known to have these cursors (from the conversation list).
    pub(super) fn server_has(&mut self, conversation: ConversationId, delivered: u64, read: u64) {
        if let Some(marks) = self
            .by_conversation
            .iter_mut()
            .find(|m| m.conversation == conversation)
        {
            marks.reported_delivered = marks.reported_delivered.max(delivered);
            marks.reported_read = marks.reported_read.max(read);
        }
    }

    /// The conversation is of no more interest: nothing more is reported for it. Returns the
    /// receipt it still had to report, if any (for a leave, which may send it at once).
    pub(super) fn forget(&mut self, conversation: ConversationId) -> Option<ClientFrame> {
        let at = self
            .by_conversation
            .iter()
            .position(|m| m.conversation == conversation)?;
        let marks = self.by_conversation.swap_remove(at);
        marks.ahead().then_some(ClientFrame::Receipt {
            conversation,
            delivered: marks.delivered,
            read: marks.read,
        })
    }

    /// A new connection: nothing is known to have reached the server.
    pub(super) fn reconnected(&mut self, now_ms: u64) {
        let mut any = false;
        for marks in &mut self.by_conversation {
            marks.reported_delivered = 0;
            marks.reported_read = 0;
            any |= marks.ahead();
        }
        self.due_at_ms = any.then(|| now_ms.saturating_add(self.delay_ms));
    }

    pub(super) fn due_at(&self) -> Option<u64> {
        self.due_at_ms
    }

    /// The receipts to send now (empty before the flush is due).
    pub(super) fn flush(&mut self, now_ms: u64) -> Vec<ClientFrame> {
        if self.due_at_ms.is_none_or(|at| now_ms < at) {
            return Vec::new();
        }
        self.due_at_ms = None;
        let mut frames = Vec::new();
        for marks in &mut self.by_conversation {
            if marks.ahead() {
                marks.reported_delivered = marks.delivered;
                marks.reported_read = marks.read;
                frames.push(ClientFrame::Receipt {
                    conversation: marks.conversation,
                    delivered: marks.delivered,
                    read: marks.read,
                });
            }
        }
        frames
    }
}
