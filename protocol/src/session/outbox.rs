//! The outbox: sends the server has not acknowledged yet, kept oldest first so that resends
//! after a reconnect go out in the order the application made them.

use std::collections::VecDeque;

use crate::wire::ConversationId;

/// A send that the server has not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    pub conversation: ConversationId,
    pub client_id: u64,
    pub body: String,
}

/// Unacknowledged sends, oldest first.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    sends: VecDeque<PendingSend>,
}

impl Outbox {
    pub(super) fn push(&mut self, send: PendingSend) {
        self.sends.push_back(send);
    }

    /// Remove and return the send `client_id` of `conversation`, if it is still pending.
    pub(super) fn take(
        &mut self,
        conversation: ConversationId,
        client_id: u64,
    ) -> Option<PendingSend> {
        let index = self
            .sends
            .iter()
            .position(|s| s.client_id == client_id && s.conversation == conversation)?;
        self.sends.remove(index)
    }

    /// Pending sends of one conversation, oldest first.
    pub(super) fn of(&self, conversation: ConversationId) -> impl Iterator<Item = &PendingSend> {
        self.sends
            .iter()
            .filter(move |s| s.conversation == conversation)
    }

    /// Discard every pending send of `conversation`.
    pub(super) fn discard(&mut self, conversation: ConversationId) {
        self.sends.retain(|s| s.conversation != conversation);
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &PendingSend> {
        self.sends.iter()
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
            outbox.push(pending(c, id));
        }
        assert_eq!(outbox.take(ConversationId(2), 10), None);
        assert_eq!(outbox.take(ConversationId(1), 10), Some(pending(1, 10)));
        assert_eq!(outbox.take(ConversationId(1), 10), None);
        let ids: Vec<u64> = outbox.iter().map(|s| s.client_id).collect();
        assert_eq!(ids, [11, 12]);
        let of_one: Vec<u64> = outbox.of(ConversationId(1)).map(|s| s.client_id).collect();
        assert_eq!(of_one, [12]);
        outbox.discard(ConversationId(1));
        let ids: Vec<u64> = outbox.iter().map(|s| s.client_id).collect();
        assert_eq!(ids, [11]);
    }
}
