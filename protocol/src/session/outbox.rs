//! The outbox: sends the server has not acknowledged yet, kept oldest first so that resends
//! after a reconnect go out in the order the application made them. Each send also records
//! whether it is in flight (transmitted on the current stream and not answered yet), which is
//! what lets a throttled conversation send one message at a time.

use std::collections::VecDeque;

use crate::wire::ConversationId;

/// A send that the server has not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    pub conversation: ConversationId,
    pub client_id: u64,
    pub body: String,
}

#[derive(Debug)]
struct Entry {
    send: PendingSend,
    in_flight: bool,
}

/// Unacknowledged sends, oldest first.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    sends: VecDeque<Entry>,
}

impl Outbox {
    /// Add a send; `in_flight` says whether it was just transmitted.
    pub(super) fn push(&mut self, send: PendingSend, in_flight: bool) {
        self.sends.push_back(Entry { send, in_flight });
    }

    fn position(&self, conversation: ConversationId, client_id: u64) -> Option<usize> {
        self.sends
            .iter()
            .position(|e| e.send.client_id == client_id && e.send.conversation == conversation)
    }

    /// Whether the send `client_id` of `conversation` is pending.
    pub(super) fn contains(&self, conversation: ConversationId, client_id: u64) -> bool {
        self.position(conversation, client_id).is_some()
    }

    /// Remove and return the send `client_id` of `conversation`, if it is still pending.
    pub(super) fn take(
        &mut self,
        conversation: ConversationId,
        client_id: u64,
    ) -> Option<PendingSend> {
        let index = self.position(conversation, client_id)?;
        self.sends.remove(index).map(|e| e.send)
    }

    /// The server refused the send for now: it stays, no longer in flight. Returns whether it
    /// was pending.
    pub(super) fn refused(&mut self, conversation: ConversationId, client_id: u64) -> bool {
        let Some(index) = self.position(conversation, client_id) else {
            return false;
        };
        if let Some(entry) = self.sends.get_mut(index) {
            entry.in_flight = false;
        }
        true
    }

    /// Mark every pending send of `conversation` in flight and return them, oldest first.
    pub(super) fn send_all(
        &mut self,
        conversation: ConversationId,
    ) -> impl Iterator<Item = &PendingSend> {
        self.sends
            .iter_mut()
            .filter(move |e| e.send.conversation == conversation)
            .map(|e| {
                e.in_flight = true;
                &e.send
            })
    }

    /// Mark the oldest send of `conversation` that is not in flight as in flight and return it.
    pub(super) fn send_next(&mut self, conversation: ConversationId) -> Option<&PendingSend> {
        let entry = self
            .sends
            .iter_mut()
            .find(|e| e.send.conversation == conversation && !e.in_flight)?;
        entry.in_flight = true;
        Some(&entry.send)
    }

    /// Whether `conversation` has a send awaiting an answer on the current stream.
    pub(super) fn in_flight(&self, conversation: ConversationId) -> bool {
        self.sends
            .iter()
            .any(|e| e.send.conversation == conversation && e.in_flight)
    }

    /// Whether `conversation` has any pending send.
    pub(super) fn has(&self, conversation: ConversationId) -> bool {
        self.sends
            .iter()
            .any(|e| e.send.conversation == conversation)
    }

    /// The stream of `conversation` (or, with `None`, every stream) is gone: nothing of it is
    /// in flight any more.
    pub(super) fn landed(&mut self, conversation: Option<ConversationId>) {
        for entry in &mut self.sends {
            if conversation.is_none_or(|c| c == entry.send.conversation) {
                entry.in_flight = false;
            }
        }
    }

    /// Discard every pending send of `conversation`.
    pub(super) fn discard(&mut self, conversation: ConversationId) {
        self.sends.retain(|e| e.send.conversation != conversation);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &PendingSend> {
        self.sends.iter().map(|e| &e.send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(conversation: u64, client_id: u64) -> PendingSend {
        PendingSend {
            conversation: ConversationId(conversation),
            client_id,
            body: format!("m{client_id}"),
        }
    }

    #[test]
    fn keeps_order_and_takes_only_matching_sends() {
        let mut outbox = Outbox::default();
        for (c, id) in [(1, 10), (2, 11), (1, 12)] {
            outbox.push(pending(c, id), false);
        }
        assert_eq!(outbox.take(ConversationId(2), 10), None);
        assert_eq!(outbox.take(ConversationId(1), 10), Some(pending(1, 10)));
        assert_eq!(outbox.take(ConversationId(1), 10), None);
        let ids: Vec<u64> = outbox.iter().map(|s| s.client_id).collect();
        assert_eq!(ids, [11, 12]);
        let of_one: Vec<u64> = outbox
            .send_all(ConversationId(1))
            .map(|s| s.client_id)
            .collect();
        assert_eq!(of_one, [12]);
        outbox.discard(ConversationId(1));
        let ids: Vec<u64> = outbox.iter().map(|s| s.client_id).collect();
        assert_eq!(ids, [11]);
    }

    #[test]
    fn sends_one_at_a_time_in_order_and_refused_ones_go_again_first() {
        let one = ConversationId(1);
        let mut outbox = Outbox::default();
        for (c, id) in [(1, 10), (2, 11), (1, 12)] {
            outbox.push(pending(c, id), false);
        }
        assert_eq!(outbox.send_next(one).map(|s| s.client_id), Some(10));
        assert!(outbox.in_flight(one));
        assert!(!outbox.in_flight(ConversationId(2)));
        assert_eq!(outbox.send_next(one).map(|s| s.client_id), Some(12));
        assert!(outbox.refused(one, 10));
        assert!(!outbox.refused(one, 99));
        assert_eq!(outbox.send_next(one).map(|s| s.client_id), Some(10));
        assert_eq!(outbox.send_next(one), None);
        outbox.landed(Some(one));
        assert!(!outbox.in_flight(one));
        assert!(outbox.has(one));
    }
}
