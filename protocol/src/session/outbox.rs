//! The outbox: sends the server has not acknowledged yet, kept oldest first so that resends
//! after a reconnect go out in the order the application made them. Each send also records
//! whether it is in flight (transmitted on the current stream and not answered yet), and the
//! outbox counts them per conversation, which is what lets a throttled conversation keep a
//! window of sends in flight without scanning every pending send on each answer.

use std::collections::{BTreeMap, VecDeque};

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
    /// Sends in flight, per conversation (absent: none).
    in_flight: BTreeMap<ConversationId, usize>,
}

impl Outbox {
    /// Add a send; `in_flight` says whether it was just transmitted.
    pub(super) fn push(&mut self, send: PendingSend, in_flight: bool) {
        if in_flight {
            self.count_in(send.conversation);
        }
        self.sends.push_back(Entry { send, in_flight });
    }

    fn count_in(&mut self, conversation: ConversationId) {
        *self.in_flight.entry(conversation).or_default() += 1;
    }

    fn count_out(&mut self, conversation: ConversationId) {
        if let Some(n) = self.in_flight.get_mut(&conversation) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(&conversation);
            }
        }
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
        let entry = self.sends.remove(index)?;
        if entry.in_flight {
            self.count_out(conversation);
        }
        Some(entry.send)
    }

    /// The server refused the send for now: it stays, no longer in flight. Returns whether it
    /// was pending.
    pub(super) fn refused(&mut self, conversation: ConversationId, client_id: u64) -> bool {
        let Some(index) = self.position(conversation, client_id) else {
            return false;
        };
        let was_in_flight = self
            .sends
            .get_mut(index)
            .is_some_and(|entry| std::mem::replace(&mut entry.in_flight, false));
        if was_in_flight {
            self.count_out(conversation);
        }
        true
    }

    /// Mark every pending send of `conversation` in flight and return them, oldest first.
    pub(super) fn send_all(&mut self, conversation: ConversationId) -> Vec<PendingSend> {
        self.send_waiting(conversation, usize::MAX)
    }

    /// Mark the `limit` oldest sends of `conversation` that are not in flight as in flight and
    /// return them, oldest first.
    pub(super) fn send_waiting(
        &mut self,
        conversation: ConversationId,
        limit: usize,
    ) -> Vec<PendingSend> {
        let mut sent = Vec::new();
        if limit == 0 {
            return sent;
        }
        for entry in &mut self.sends {
            if entry.send.conversation == conversation && !entry.in_flight {
                entry.in_flight = true;
                sent.push(entry.send.clone());
                if sent.len() == limit {
                    break;
                }
            }
        }
        for _ in 0..sent.len() {
            self.count_in(conversation);
        }
        sent
    }

    /// How many sends of `conversation` await an answer on the current stream.
    pub(super) fn in_flight(&self, conversation: ConversationId) -> usize {
        self.in_flight.get(&conversation).copied().unwrap_or(0)
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
        match conversation {
            Some(c) => {
                self.in_flight.remove(&c);
            }
            None => self.in_flight.clear(),
        }
    }

    /// Discard every pending send of `conversation`.
    pub(super) fn discard(&mut self, conversation: ConversationId) {
        self.sends.retain(|e| e.send.conversation != conversation);
        self.in_flight.remove(&conversation);
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
            .into_iter()
            .map(|s| s.client_id)
            .collect();
        assert_eq!(of_one, [12]);
        outbox.discard(ConversationId(1));
        let ids: Vec<u64> = outbox.iter().map(|s| s.client_id).collect();
        assert_eq!(ids, [11]);
    }

    #[test]
    fn sends_a_window_in_order_counts_what_is_in_flight_and_refused_ones_go_again_first() {
        let one = ConversationId(1);
        let two = ConversationId(2);
        let mut outbox = Outbox::default();
        for (c, id) in [(1, 10), (2, 11), (1, 12), (1, 13)] {
            outbox.push(pending(c, id), false);
        }
        let ids =
            |sent: Vec<PendingSend>| sent.into_iter().map(|s| s.client_id).collect::<Vec<_>>();
        assert_eq!(ids(outbox.send_waiting(one, 1)), [10]);
        assert_eq!(outbox.in_flight(one), 1);
        assert_eq!(outbox.in_flight(two), 0);
        assert_eq!(ids(outbox.send_waiting(one, 5)), [12, 13]);
        assert_eq!(outbox.in_flight(one), 3);
        assert!(outbox.refused(one, 10));
        assert!(!outbox.refused(one, 99));
        assert!(outbox.refused(one, 10), "still pending, counted out once");
        assert_eq!(outbox.in_flight(one), 2);
        assert_eq!(ids(outbox.send_waiting(one, 5)), [10]);
        assert!(outbox.send_waiting(one, 5).is_empty());
        assert!(outbox.send_waiting(two, 0).is_empty());
        assert_eq!(outbox.take(one, 12).map(|s| s.client_id), Some(12));
        assert_eq!(outbox.in_flight(one), 2);
        outbox.push(pending(2, 14), true);
        assert_eq!(outbox.in_flight(two), 1);
        outbox.landed(Some(one));
        assert_eq!((outbox.in_flight(one), outbox.in_flight(two)), (0, 1));
        assert!(outbox.has(one));
        outbox.landed(None);
        assert_eq!(outbox.in_flight(two), 0);
        assert_eq!(ids(outbox.send_all(two)), [11, 14]);
        outbox.discard(two);
        assert_eq!(outbox.in_flight(two), 0);
        assert!(!outbox.has(two));
    }
}
