//! What a store commit does live: the store's commit hook ([`crate::store::CommitHook`]) hands
//! over each commit's messages at once, and [`Committed::publish`] fans them out. The messages
//! are grouped by conversation (keeping their order within each), and each conversation's
//! consecutive messages go to the hub as one run ([`Hub::publish_run`]), so a connection gets
//! all of a commit's messages for a stream queued before its writer runs; a deletion's
//! tombstone ends a run and is published on its own, in order. Then, per message, the users'
//! hub sends the conversation's activity and ends the author's typing. The fan-out latency
//! (`quibble_fanout_seconds`) runs from the hook's call (on a fleet node, from the partition's
//! sequencer handing the commit over) to a run queued on every live stream of its conversation.
//!
//! A fleet node ([`crate::fleet`]) hands over each conversation's messages with how far its
//! streams have been fed ([`Committed::deliver`]): what is at or below that point was delivered
//! already (a tombstone there is a deletion); a tombstone above it is the message as it now
//! reads, delivered in its place, and a deletion as well for the streams that read the old
//! text from the store while it was on its way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use quibble_protocol::wire::{ChatMessage, ConversationId};

use crate::chat::hub::Hub;
use crate::chat::typing::Typing;
use crate::chat::users::Users;
use crate::fleet::Fleet;
use crate::fleet::control::Control;

/// The live side of the store's commits.
pub struct Committed {
    pub hub: Hub,
    pub users: Users,
    pub typing: Arc<Typing>,
    /// On a fleet node: where an author's typing, ended by their message, is told to the
    /// other nodes.
    pub fleet: Option<Arc<Fleet>>,
}

impl Committed {
    /// Fan out one commit's messages (in commit order).
    pub fn publish(&self, messages: &[ChatMessage]) {
        let started = Instant::now();
        for group in by_conversation(messages) {
            self.deliver_since(&group, None, started);
        }
    }

    /// Fan out messages of ONE conversation in ascending seq order, its live streams fed up to
    /// `point` ([`Hub::delivery_point`]; `None`: nothing is known delivered, every tombstone is a
    /// deletion). Messages at or below the point are skipped as delivered.
    pub fn deliver(&self, messages: &[&ChatMessage], point: Option<u64>) {
        self.deliver_since(messages, point, Instant::now());
    }

    /// [`Committed::deliver`], its fan-out latency measured from `started` (when the commit
    /// was handed over).
    fn deliver_since(&self, messages: &[&ChatMessage], mut point: Option<u64>, started: Instant) {
        let mut run: Vec<&ChatMessage> = Vec::with_capacity(messages.len());
        for &message in messages {
            let delivered = point.is_some_and(|p| message.seq <= p);
            if message.is_deleted() && (delivered || point.is_none()) {
                self.publish_run(&run, started);
                run.clear();
                self.hub.publish_deleted(message.conversation, message.seq);
            } else if !delivered {
                run.push(message);
                point = point.map(|_| message.seq);
                if message.is_deleted() {
                    // Streams past the point already had the old text (from the store):
                    // they get the deletion too.
                    self.publish_run(&run, started);
                    run.clear();
                    self.hub.publish_deleted(message.conversation, message.seq);
                }
            }
        }
        self.publish_run(&run, started);
    }

    fn publish_run(&self, run: &[&ChatMessage], started: Instant) {
        if run.is_empty() {
            return;
        }
        let hidden: Vec<_> = run
            .iter()
            .map(|message| self.users.hidden_from(message.author))
            .collect();
        let delivered = self.hub.publish_run(run, &hidden, started);
        for (message, delivered) in run.iter().zip(&delivered) {
            self.users.on_message(message, delivered);
            if self.typing.stop(message.author, message.conversation) {
                self.users
                    .typing(message.conversation, message.author, false);
                // Only the author's own node tells the others (each stops it here anyway).
                if let Some(fleet) = &self.fleet
                    && self.users.is_online(message.author)
                {
                    fleet.publish_control(&Control::Typing {
                        conversation: message.conversation,
                        user: message.author,
                        username: message.author_name.clone(),
                        typing: false,
                    });
                }
            }
        }
    }
}

/// `messages` grouped by conversation, each group in its original order, the groups in the
/// order of their first message.
pub fn by_conversation(messages: &[ChatMessage]) -> Vec<Vec<&ChatMessage>> {
    if let [one] = messages {
        return vec![vec![one]];
    }
    let mut index: HashMap<ConversationId, usize> = HashMap::new();
    let mut groups: Vec<Vec<&ChatMessage>> = Vec::new();
    for message in messages {
        let at = *index.entry(message.conversation).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(message);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use quibble_protocol::wire::UserId;

    fn message(conversation: u64, seq: u64) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(conversation),
            seq,
            author: UserId(1),
            author_name: "a".into(),
            client_id: seq,
            sent_at_ms: 0,
            body: "x".into(),
        }
    }

    #[test]
    fn groups_keep_each_conversations_order() {
        let messages = [
            message(1, 1),
            message(2, 1),
            message(1, 2),
            message(3, 7),
            message(2, 2),
            message(1, 3),
        ];
        let groups: Vec<Vec<(u64, u64)>> = by_conversation(&messages)
            .into_iter()
            .map(|g| g.iter().map(|m| (m.conversation.0, m.seq)).collect())
            .collect();
        assert_eq!(
            groups,
            vec![
                vec![(1, 1), (1, 2), (1, 3)],
                vec![(2, 1), (2, 2)],
                vec![(3, 7)]
            ]
        );
    }
}
