//! One task per partition that puts the fleet's commits in order for this node's streams.
//! Everything this node delivers of the partition's conversations comes through it: its own
//! commits (from the store's commit hook) and the other nodes' (from Redis), one item at a
//! time, so a conversation's messages reach the hub in seq order.
//!
//! Pub/sub loses messages (a dropped link, a node that fell behind, a full queue here), and two
//! nodes' commits can arrive in either order. So for each conversation with live streams here
//! the hub knows how far they were fed ([`Hub::delivery_point`]): what is at or below it is
//! dropped as delivered, and a jump past it is back-filled from the store first (every seq
//! below a committed one is committed: the store assigns seqs under the conversation's lock).
//! A sweep does the same for every such conversation against the store's heads: after a
//! resubscribe, when a queue refused an item, and every [`SWEEP_EVERY`] in case a message was
//! lost with nothing after it. Back-fill is bounded ([`BACKFILL_LIMIT`] per read,
//! [`SWEEP_PAGES`] reads per conversation per sweep); a gap beyond that reaches the hub as a
//! gap, and the streams it cuts resume from the store themselves, paced by their clients.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quibble_protocol::{ChatMessage, ConversationId};
use tokio::sync::Notify;

use super::partition::partition_of;
use super::queue::{self, Full};
use crate::chat::committed::{Committed, by_conversation};
use crate::store::Store;

/// How often each partition's conversations are checked against the store's heads.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// The most messages one back-fill read takes.
pub const BACKFILL_LIMIT: u64 = 256;
/// The most back-fill reads one conversation gets per sweep.
pub const SWEEP_PAGES: usize = 4;
/// How long a store read may take before the sequencer gives up on it for now.
const STORE_DEADLINE: Duration = Duration::from_secs(5);
/// What one partition's inbox may hold, in bytes.
const INBOX_BYTES: usize = 4 << 20;

/// The sending side of a partition's sequencer.
pub struct Inbox {
    queue: queue::Sender<Vec<ChatMessage>>,
    behind: Arc<Behind>,
}

/// Set when something may have been missed: the sequencer sweeps soon.
#[derive(Default)]
struct Behind {
    flag: AtomicBool,
    wake: Notify,
}

/// The receiving side, started with [`Inbox::start`].
pub struct Sequencer {
    partition: usize,
    queue: queue::Receiver<Vec<ChatMessage>>,
    behind: Arc<Behind>,
}

/// A partition's inbox and its sequencer, not yet started.
pub fn new(partition: usize) -> (Inbox, Sequencer) {
    let (tx, rx) = queue::bounded(INBOX_BYTES);
    let behind = Arc::new(Behind::default());
    (
        Inbox {
            queue: tx,
            behind: Arc::clone(&behind),
        },
        Sequencer {
            partition,
            queue: rx,
            behind,
        },
    )
}

impl Inbox {
    /// Hand over committed messages of this partition, in commit order. Never waits: when the
    /// inbox is full they are dropped and the sequencer sweeps instead.
    pub fn deliver(&self, messages: Vec<ChatMessage>) {
        let bytes = messages
            .iter()
            .map(|m| std::mem::size_of::<ChatMessage>() + m.body.len() + m.author_name.len())
            .sum();
        if let Err(Full) = self.queue.push(messages, bytes) {
            metrics::counter!(crate::metrics::FLEET_INBOX_FULL).increment(1);
            self.catch_up();
        }
    }

    /// Something may have been missed (a resubscribe, a lost link): sweep soon.
    pub fn catch_up(&self) {
        self.behind.flag.store(true, Ordering::Release);
        self.behind.wake.notify_one();
    }
}

impl Sequencer {
    /// Run until shutdown, delivering through `committed` and back-filling from `store`.
    pub async fn run(mut self, committed: Arc<Committed>, store: Store) {
        let worker = Worker {
            partition: self.partition,
            committed,
            store,
        };
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Unbiased: a busy inbox must not starve the sweep.
            tokio::select! {
                () = self.behind.wake.notified() => {}
                item = self.queue.recv() => match item {
                    Some(messages) => worker.apply(&messages).await,
                    None => return,
                },
                _ = sweep.tick() => {
                    self.behind.flag.store(false, Ordering::Release);
                    worker.sweep().await;
                    continue;
                }
            }
            // If the store does not answer, the next tick sweeps again (not the next item:
            // each try may take the store's deadline).
            if self.behind.flag.swap(false, Ordering::AcqRel) {
                worker.sweep().await;
            }
        }
    }
}

struct Worker {
    partition: usize,
    committed: Arc<Committed>,
    store: Store,
}

impl Worker {
    /// Deliver one item's messages (of this partition, in commit order).
    async fn apply(&self, messages: &[ChatMessage]) {
        for group in by_conversation(messages) {
            self.deliver(&group).await;
        }
    }

    /// Deliver `group` (one conversation, ascending seqs), back-filling a jump past what its
    /// streams have been fed first.
    async fn deliver(&self, group: &[&ChatMessage]) {
        let Some(conversation) = group.first().map(|m| m.conversation) else {
            return;
        };
        let hub = &self.committed.hub;
        if let Some(point) = hub.delivery_point(conversation)
            && let Some(first) = group.iter().map(|m| m.seq).find(|&seq| seq > point)
            && first > point.saturating_add(1)
        {
            metrics::counter!(crate::metrics::FLEET_GAPS).increment(1);
            if let Some(missing) = self.read_after(conversation, point, first - 1).await {
                let refs: Vec<&ChatMessage> = missing.iter().collect();
                self.committed.deliver(&refs, Some(point));
            }
        }
        self.committed
            .deliver(group, hub.delivery_point(conversation));
    }

    /// Up to [`BACKFILL_LIMIT`] stored messages after `after`, none past `up_to`; `None` when
    /// the store did not answer in time.
    async fn read_after(
        &self,
        conversation: ConversationId,
        after: u64,
        up_to: u64,
    ) -> Option<Vec<ChatMessage>> {
        let limit = up_to.saturating_sub(after).min(BACKFILL_LIMIT) as usize;
        let read = tokio::time::timeout(
            STORE_DEADLINE,
            self.store.messages_after(conversation, after, limit),
        )
        .await;
        match read {
            Ok(Ok(mut messages)) => {
                messages.retain(|m| m.seq <= up_to);
                metrics::counter!(crate::metrics::FLEET_BACKFILLED)
                    .increment(messages.len() as u64);
                Some(messages)
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, conversation = conversation.0, "fleet back-fill failed");
                None
            }
            Err(_) => {
                tracing::warn!(conversation = conversation.0, "fleet back-fill timed out");
                None
            }
        }
    }

    /// Bring every conversation of this partition with live streams here up to the store's
    /// head (within the bounds in the module doc). False when the store did not answer.
    async fn sweep(&self) -> bool {
        let hub = &self.committed.hub;
        let points = hub.delivery_points(|c| partition_of(c) == self.partition);
        if points.is_empty() {
            return true;
        }
        let ids = points
            .iter()
            .map(|(conversation, _)| *conversation)
            .collect();
        let heads = match tokio::time::timeout(STORE_DEADLINE, self.store.heads(ids)).await {
            Ok(Ok(heads)) => heads,
            Ok(Err(error)) => {
                tracing::warn!(%error, "fleet sweep: the store's heads are unreadable");
                return false;
            }
            Err(_) => {
                tracing::warn!("fleet sweep: the store's heads timed out");
                return false;
            }
        };
        for (conversation, head) in heads {
            for _ in 0..SWEEP_PAGES {
                let Some(point) = hub.delivery_point(conversation).filter(|&p| p < head) else {
                    break;
                };
                let Some(missing) = self.read_after(conversation, point, head).await else {
                    return false;
                };
                if missing.is_empty() {
                    break;
                }
                let refs: Vec<&ChatMessage> = missing.iter().collect();
                self.committed.deliver(&refs, Some(point));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::hub::Hub;
    use crate::chat::outbound::{Batch, Item, Outbound};
    use quibble_protocol::{PROTOCOL_VERSION, ServerFrame, UserId};

    /// What the stream was sent: `(seq, deleted)` for a message, `(seq, true)` for `Deleted`.
    async fn sent(out: &Outbound) -> Vec<(u64, bool)> {
        let Ok(Batch::Items { items, bytes }) =
            tokio::time::timeout(Duration::from_secs(1), out.next_batch(usize::MAX)).await
        else {
            return Vec::new();
        };
        out.release(bytes);
        items
            .into_iter()
            .map(|(_, item)| {
                let Item::Frame(frame) = item else {
                    panic!("the stream was finished")
                };
                match quibble_protocol::codec::decode_exact::<ServerFrame>(&frame, usize::MAX)
                    .unwrap()
                {
                    ServerFrame::Message(m) => (m.seq, m.is_deleted()),
                    ServerFrame::Deleted { seq, .. } => (seq, true),
                    other => panic!("unexpected {other:?}"),
                }
            })
            .collect()
    }

    /// A redb store in `dir` with a user and their room.
    async fn store_with_a_room(
        dir: &std::path::Path,
    ) -> (
        Store,
        quibble_protocol::UserId,
        quibble_protocol::ConversationId,
    ) {
        let store = Store::open(&dir.join("s.redb"), 1 << 20, Box::new(|_| ())).unwrap();
        let alice = store.create_user("alice", "phc".into()).await.unwrap().id;
        let room = store.create_room("r", alice).await.unwrap().id;
        (store, alice, room)
    }

    /// The sequencer's worker for `room`'s partition, delivering through `hub`.
    fn worker(store: &Store, hub: &Hub, room: quibble_protocol::ConversationId) -> Worker {
        Worker {
            partition: partition_of(room),
            committed: Arc::new(Committed {
                hub: hub.clone(),
                users: Default::default(),
                typing: Default::default(),
                fleet: None,
            }),
            store: store.clone(),
        }
    }

    #[tokio::test]
    async fn drops_what_was_delivered_back_fills_jumps_and_sweeps_to_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let (store, alice, room) = store_with_a_room(dir.path()).await;
        let mut stored = Vec::new();
        for i in 1..=7u64 {
            let done = store.append(room, alice, "alice", i, "hi").await.unwrap();
            stored.push(done.message);
        }
        let hub = Hub::default();
        let worker = worker(&store, &hub, room);
        let out = Outbound::multiplexed();
        let stream = out.open(1);
        let sub = hub.subscribe(room, UserId(99), stream.live(), PROTOCOL_VERSION);
        sub.go_live(1).unwrap();
        assert_eq!(hub.delivery_point(room), Some(1));

        // 4 arrives first: 2 and 3 come from the store before it.
        worker.apply(&stored[3..4]).await;
        assert_eq!(sent(&out).await, [(2, false), (3, false), (4, false)]);
        // Late copies of what was delivered are dropped.
        worker.apply(&stored[1..3]).await;
        assert_eq!(sent(&out).await, []);

        // A deletion of a delivered message is a deletion; of one not delivered yet, the
        // tombstone takes its place (and a later copy of the original is dropped).
        let tomb3 = store.delete_message(room, 3, None).await.unwrap();
        let tomb6 = store.delete_message(room, 6, None).await.unwrap();
        let (tomb3, tomb6) = (tomb3.tombstone, tomb6.tombstone);
        worker.apply(&[tomb3]).await;
        worker.apply(&[tomb6]).await;
        worker.apply(&stored[5..6]).await;
        // (6 comes as the tombstone, then as a deletion for streams that had read it.)
        assert_eq!(
            sent(&out).await,
            [(3, true), (5, false), (6, true), (6, true)]
        );

        // What never arrived at all (7, then 8 and 9) comes with the sweep.
        for i in 8..=9u64 {
            store.append(room, alice, "alice", i, "hi").await.unwrap();
        }
        assert!(worker.sweep().await);
        assert_eq!(sent(&out).await, [(7, false), (8, false), (9, false)]);
        assert!(worker.sweep().await);
        assert_eq!(sent(&out).await, [], "nothing twice");
        drop(sub);
        assert_eq!(hub.delivery_point(room), None);
    }

    #[tokio::test]
    async fn a_tombstone_ahead_of_its_message_reaches_a_stream_that_read_the_old_text() {
        let dir = tempfile::tempdir().unwrap();
        let (store, alice, room) = store_with_a_room(dir.path()).await;
        for i in 1..=3u64 {
            store.append(room, alice, "alice", i, "hi").await.unwrap();
        }
        let hub = Hub::default();
        let worker = worker(&store, &hub, room);
        let (out1, out2) = (Outbound::multiplexed(), Outbound::multiplexed());
        let (s1, s2) = (out1.open(1), out2.open(1));
        // S1 is live at 2; S2 read 3 from the store before 3 reached this node.
        let sub1 = hub.subscribe(room, UserId(8), s1.live(), PROTOCOL_VERSION);
        let sub2 = hub.subscribe(room, UserId(9), s2.live(), PROTOCOL_VERSION);
        sub1.go_live(2).unwrap();
        sub2.go_live(3).unwrap();
        // 3 is deleted through another node; its tombstone arrives before the original.
        let tombstone = store.delete_message(room, 3, None).await.unwrap().tombstone;
        worker.apply(&[tombstone]).await;
        assert_eq!(sent(&out1).await, [(3, true), (3, true)]);
        assert_eq!(sent(&out2).await, [(3, true)], "the deletion reaches S2");
    }
}
