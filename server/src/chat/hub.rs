//! Fan-out: for each conversation with subscribed streams, the streams to deliver to. The
//! store's commit hook publishes each durable message here once ([`crate::chat::committed`]:
//! a commit's messages of one conversation as one run, [`Hub::publish_run`]); each is encoded
//! once and the same `Bytes` is pushed straight into every live subscriber's byte-bounded
//! outbound queue (no channel in between, nothing sized up front). A run is queued on each
//! subscriber back to back, so its connection's writer is woken once for it. A subscriber whose queue is full is cut:
//! its `Lagged { resume_from }` goes in after what it has queued, and it resumes from the
//! store. A conversation's entry exists only while it has subscribers.
//!
//! Blocks: the publisher passes the online users who block the message's author
//! (`crate::chat::users::Users::hidden_from`, `None` in the common case); their streams get
//! the hidden marker instead (`ChatMessage::hidden`, encoded once, only if needed), so their
//! seqs stay contiguous. Each subscriber remembers whose stream it is for this.
//!
//! Joining without a gap: a new subscriber is "replaying" (the hub skips it) while its stream
//! sends stored messages; it goes live with [`Subscription::go_live`], which succeeds only if
//! the hub has published nothing newer than what the stream has sent, so every seq reaches it
//! exactly once, either from the store or live.
//!
//! Deletions: [`Hub::publish_deleted`] sends `Deleted { conversation, seq }` to the subscribers
//! whose connection speaks it (version 3 on), in commit order with the messages and through the
//! same byte-bounded queues. A live subscriber gets it at once when it has the message (it always
//! has, since messages are published in commit order); a replaying one may already have read the
//! old text from the store, so the seq is remembered (at most [`MAX_HELD_DELETIONS`]) and queued
//! when it goes live, right after its replay. More than that, or a full queue, cuts the stream
//! with `Lagged` like a message would; the resumed join then learns of the deletion from the
//! store's deletions index.
//!
//! Congestion: each publish also counts how full its live subscribers' connections are
//! ([`crate::chat::congestion`]), which decides whether the conversation refuses new sends for
//! a while; a conversation's streams read that decision through [`Subscription::congestion`].
//!
//! Activity: [`Hub::publish`] returns the connections (of protocol version 4 on) it queued the
//! message on, live; the user hub sends them no `ConversationActivity` for it, since their
//! clients take it from the message itself.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use quibble_protocol::wire::MessageFrame;
use quibble_protocol::{
    ChatMessage, ConversationId, MODERATION_VERSION, STREAM_ACTIVITY_VERSION, ServerFrame, UserId,
};

use bytes::Bytes;

use crate::chat::congestion::{Congestion, Policy, Reader, Tally};
use crate::chat::outbound::{ConnectionKey, LiveTx, SendError};
use crate::chat::stream::encode_frame;

#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    conversations: HashMap<ConversationId, Subscribers>,
    next_key: u64,
    // overload: congestion thresholds.
    policy: Policy,
}

#[derive(Default)]
struct Subscribers {
    /// The last seq published while this entry existed.
    head: Option<u64>,
    by_key: HashMap<u64, Subscriber>,
    // overload: whether sends into the conversation are refused now.
    congestion: Arc<Congestion>,
}

impl Subscribers {
    fn delivery_point(&self) -> Option<u64> {
        self.head
            .or_else(|| self.by_key.values().filter_map(|sub| sub.live_after).min())
    }
}

struct Subscriber {
    tx: LiveTx,
    /// Whose stream this is.
    viewer: UserId,
    /// The last seq the stream has queued, once it is live; `None` while it replays.
    live_after: Option<u64>,
    /// Whether the connection gets `Deleted` frames (version 3 on).
    deletions: bool,
    /// Whether the connection takes activity from its streams' messages (version 4 on).
    stream_activity: bool,
    /// Deletions published while the stream replayed, queued when it goes live; `None` once
    /// more than [`MAX_HELD_DELETIONS`] came (the stream is cut then).
    held_deletions: Option<Vec<u64>>,
    // overload: whether its queue drains.
    reader: Reader,
}

/// Most deletions remembered for a replaying subscriber.
pub const MAX_HELD_DELETIONS: usize = 64;

/// Why a stream cannot go live yet.
#[derive(Debug, PartialEq, Eq)]
pub enum NotLive {
    /// Messages after the stream's last one were published: send them from the store first.
    Behind,
    /// The stream was cut or ended.
    Gone,
}

/// The connections a message was queued on live, whose clients take its activity from it.
#[derive(Debug, Default)]
pub struct Delivered(Vec<ConnectionKey>);

impl Delivered {
    /// Whether the message was queued on one of `connection`'s streams.
    pub fn contains(&self, connection: ConnectionKey) -> bool {
        self.0.binary_search(&connection).is_ok()
    }
}

/// A stream's place in a conversation's fan-out; dropping it unsubscribes.
pub struct Subscription {
    hub: Hub,
    conversation: ConversationId,
    key: u64,
}

impl Hub {
    /// A hub whose conversations become congested by `policy` (overload).
    pub fn new(policy: Policy) -> Hub {
        let hub = Hub::default();
        hub.lock().policy = policy;
        hub
    }

    /// Subscribe `viewer`'s stream (replaying until [`Subscription::go_live`]); its connection
    /// speaks protocol `version`.
    pub fn subscribe(
        &self,
        conversation: ConversationId,
        viewer: UserId,
        tx: LiveTx,
        version: u16,
    ) -> Subscription {
        let mut inner = self.lock();
        inner.next_key += 1;
        let key = inner.next_key;
        inner
            .conversations
            .entry(conversation)
            .or_default()
            .by_key
            .insert(
                key,
                Subscriber {
                    tx,
                    viewer,
                    live_after: None,
                    deletions: version >= MODERATION_VERSION,
                    stream_activity: version >= STREAM_ACTIVITY_VERSION,
                    held_deletions: Some(Vec::new()),
                    reader: Reader::default(),
                },
            );
        set_gauge(&inner);
        Subscription {
            hub: self.clone(),
            conversation,
            key,
        }
    }

    /// Publish one committed message (see [`Hub::publish_run`]).
    #[cfg(test)]
    pub fn publish(
        &self,
        message: &ChatMessage,
        hidden_from: Option<&HashSet<UserId>>,
    ) -> Delivered {
        let hidden = [hidden_from.cloned()];
        self.publish_run(&[message], &hidden, Instant::now())
            .pop()
            .unwrap_or_default()
    }

    /// Publish a run of committed messages of ONE conversation, in ascending seq order (a
    /// store commit's messages of that conversation), to its live subscribers, if it has any.
    /// Each frame is encoded once, outside the lock, and shared by every subscriber; the
    /// subscribers of `hidden_from[i]` (who block message i's author) get the hidden marker
    /// instead. Each subscriber gets the whole run queued back to back, so its connection's
    /// writer, woken by the first frame, finds the others queued too and writes them together.
    /// Returns, per message, the connections that take its activity from it (see the module
    /// doc).
    ///
    /// Once a run is queued on every live subscriber, the time since `started` (when its commit
    /// was handed over) is recorded as the fan-out latency: once per run, not per subscriber.
    pub fn publish_run(
        &self,
        messages: &[&ChatMessage],
        hidden_from: &[Option<HashSet<UserId>>],
        started: Instant,
    ) -> Vec<Delivered> {
        let mut delivered: Vec<Vec<ConnectionKey>> = vec![Vec::new(); messages.len()];
        let Some(conversation) = messages.first().map(|m| m.conversation) else {
            return Vec::new();
        };
        if !self.lock().conversations.contains_key(&conversation) {
            return delivered.into_iter().map(Delivered).collect();
        }
        let frames: Vec<(Bytes, Option<Bytes>)> = messages
            .iter()
            .enumerate()
            .map(|(i, message)| {
                let frame = encode_message(message);
                let hidden = hidden_from
                    .get(i)
                    .and_then(Option::as_ref)
                    .map(|_| encode_frame(&ServerFrame::Message(message.hidden())));
                (frame, hidden)
            })
            .collect();
        let mut inner = self.lock();
        let mut tally = Tally::new(inner.policy); // overload
        let Some(subscribers) = inner.conversations.get_mut(&conversation) else {
            return delivered.into_iter().map(Delivered).collect();
        };
        if let Some(last) = messages.last() {
            subscribers.head = subscribers.head.max(Some(last.seq));
        }
        for list in &mut delivered {
            list.reserve(subscribers.by_key.len());
        }
        let mut queued = 0u64;
        subscribers.by_key.retain(|_, sub| {
            let Some(mut last) = sub.live_after else {
                return true;
            };
            let mut held_after = None;
            for (i, message) in messages.iter().enumerate() {
                let seq = message.seq;
                if seq <= last {
                    continue;
                }
                if seq == last + 1 {
                    let (frame, hidden) = &frames[i];
                    let frame = match (hidden, hidden_from.get(i).and_then(Option::as_ref)) {
                        (Some(hidden), Some(blockers)) if blockers.contains(&sub.viewer) => hidden,
                        _ => frame,
                    };
                    match sub.tx.try_send_held(frame.clone()) {
                        Ok(held) => {
                            queued += 1;
                            last = seq;
                            sub.live_after = Some(seq);
                            held_after = Some(held);
                            if sub.stream_activity {
                                delivered[i].push(sub.tx.connection());
                            }
                            continue;
                        }
                        Err(SendError::Closed) => return false,
                        Err(SendError::Full) => {}
                    }
                }
                // Full, or a gap (a fleet node that could not back-fill it): the stream
                // resumes from the store.
                crate::metrics::hot().streams_lagged.increment(1);
                sub.tx
                    .send_last(encode_frame(&ServerFrame::Lagged { resume_from: last }));
                return false;
            }
            if let Some(held) = held_after {
                tally.count(&mut sub.reader, held); // overload
            }
            true
        });
        subscribers.congestion.observe(&tally); // overload
        if subscribers.by_key.is_empty() {
            inner.conversations.remove(&conversation);
            set_gauge(&inner);
        }
        drop(inner);
        if queued > 0 {
            let hot = crate::metrics::hot();
            hot.fanout_seconds.record(started.elapsed().as_secs_f64());
            hot.messages_out.increment(queued);
        }
        delivered
            .into_iter()
            .map(|mut list| {
                list.sort_unstable();
                Delivered(list)
            })
            .collect()
    }

    /// Publish a committed deletion to the conversation's subscribers that get deletions (see
    /// the module doc).
    pub fn publish_deleted(&self, conversation: ConversationId, seq: u64) {
        if !self.lock().conversations.contains_key(&conversation) {
            return;
        }
        let frame = encode_frame(&ServerFrame::Deleted { conversation, seq });
        let mut inner = self.lock();
        let Some(subscribers) = inner.conversations.get_mut(&conversation) else {
            return;
        };
        subscribers.by_key.retain(|_, sub| {
            if !sub.deletions {
                return true;
            }
            let Some(last) = sub.live_after else {
                if let Some(held) = &mut sub.held_deletions {
                    if held.len() < MAX_HELD_DELETIONS {
                        held.push(seq);
                    } else {
                        sub.held_deletions = None;
                    }
                }
                return true;
            };
            if seq > last {
                // Not delivered yet: it comes from the store, as the tombstone.
                return true;
            }
            match sub.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(SendError::Closed) => false,
                Err(SendError::Full) => {
                    crate::metrics::hot().streams_lagged.increment(1);
                    sub.tx
                        .send_last(encode_frame(&ServerFrame::Lagged { resume_from: last }));
                    false
                }
            }
        });
        if subscribers.by_key.is_empty() {
            inner.conversations.remove(&conversation);
            set_gauge(&inner);
        }
    }

    /// How far `conversation`'s live streams have been fed here: the last seq published while
    /// it had subscribers, or before anything was, the lowest seq a live stream has sent.
    /// `None` when nothing here is live in it (no subscribers, or all still replaying: they
    /// catch up from the store themselves). A fleet node back-fills from the store whatever
    /// lies between this and the next seq it publishes ([`crate::fleet`]).
    pub fn delivery_point(&self, conversation: ConversationId) -> Option<u64> {
        self.lock()
            .conversations
            .get(&conversation)
            .and_then(Subscribers::delivery_point)
    }

    /// [`Hub::delivery_point`] of every conversation `wanted` picks that has one.
    pub fn delivery_points(
        &self,
        wanted: impl Fn(ConversationId) -> bool,
    ) -> Vec<(ConversationId, u64)> {
        self.lock()
            .conversations
            .iter()
            .filter(|(conversation, _)| wanted(**conversation))
            .filter_map(|(conversation, subscribers)| {
                Some((*conversation, subscribers.delivery_point()?))
            })
            .collect()
    }

    /// Conversations with subscribers now.
    #[cfg(test)]
    fn conversations(&self) -> usize {
        self.lock().conversations.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Subscription {
    /// Whether sends into the conversation are refused now (overload), for its streams to
    /// check on every send.
    pub fn congestion(&self) -> Arc<Congestion> {
        self.hub
            .lock()
            .conversations
            .get(&self.conversation)
            .map(|subscribers| subscribers.congestion.clone())
            .unwrap_or_default()
    }

    /// Go live after the stream has sent everything up to `last_sent`.
    pub fn go_live(&self, last_sent: u64) -> Result<(), NotLive> {
        let mut inner = self.hub.lock();
        let subscribers = inner
            .conversations
            .get_mut(&self.conversation)
            .ok_or(NotLive::Gone)?;
        if subscribers.head.is_some_and(|head| head > last_sent) {
            return Err(NotLive::Behind);
        }
        let sub = subscribers.by_key.get_mut(&self.key).ok_or(NotLive::Gone)?;
        // Deletions published during the replay, which may have sent the old text.
        let queued = match sub.held_deletions.take() {
            Some(held) => held
                .into_iter()
                .filter(|&seq| seq <= last_sent)
                .try_for_each(|seq| {
                    sub.tx.try_send(encode_frame(&ServerFrame::Deleted {
                        conversation: self.conversation,
                        seq,
                    }))
                }),
            None => Err(SendError::Full),
        };
        match queued {
            Ok(()) => {
                sub.live_after = Some(last_sent);
                Ok(())
            }
            Err(_) => {
                crate::metrics::hot().streams_lagged.increment(1);
                sub.tx.send_last(encode_frame(&ServerFrame::Lagged {
                    resume_from: last_sent,
                }));
                subscribers.by_key.remove(&self.key);
                Err(NotLive::Gone)
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        if let Some(subscribers) = inner.conversations.get_mut(&self.conversation) {
            subscribers.by_key.remove(&self.key);
            if subscribers.by_key.is_empty() {
                inner.conversations.remove(&self.conversation);
            }
        }
        set_gauge(&inner);
    }
}

/// `ServerFrame::Message(message)` encoded from a borrowed message: the run's messages are
/// the store's, and cloning each only to encode it cost two allocations and a copy of its
/// text per message.
fn encode_message(message: &ChatMessage) -> Bytes {
    match quibble_protocol::codec::encode(&MessageFrame(message)) {
        Ok(bytes) => Bytes::from(bytes),
        // Too large (never for a stored message): the owned path logs it and sends the error.
        Err(_) => encode_frame(&ServerFrame::Message(message.clone())),
    }
}

fn set_gauge(inner: &Inner) {
    metrics::gauge!(crate::metrics::HUB_CONVERSATIONS).set(inner.conversations.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::outbound::{Batch, Item, Outbound, STREAM_QUEUE_BYTES};
    use quibble_protocol::{PROTOCOL_VERSION, UserId};

    fn message(seq: u64) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(1),
            seq,
            author: UserId(1),
            author_name: "a".into(),
            client_id: seq,
            sent_at_ms: 0,
            body: "x".repeat(1000),
        }
    }

    async fn frames(out: &Outbound) -> Vec<(u64, Option<Bytes>)> {
        let Batch::Items { items, bytes } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        out.release(bytes);
        items
            .into_iter()
            .map(|(id, item)| match item {
                Item::Frame(f) => (id, Some(f)),
                Item::Finish => (id, None),
            })
            .collect()
    }

    #[test]
    fn a_borrowed_message_encodes_as_the_owned_frame() {
        let message = ChatMessage {
            author_name: "ünï".into(),
            ..message(300)
        };
        assert_eq!(
            encode_message(&message),
            encode_frame(&ServerFrame::Message(message.clone()))
        );
        assert_eq!(
            encode_message(&message.hidden()),
            encode_frame(&ServerFrame::Message(message.hidden()))
        );
    }

    #[tokio::test]
    async fn live_subscribers_share_one_encoding_and_replaying_ones_are_skipped() {
        let hub = Hub::default();
        let (out_a, out_b) = (Outbound::multiplexed(), Outbound::multiplexed());
        let (a, b) = (out_a.open(1), out_b.open(1));
        let sub_a = hub.subscribe(ConversationId(1), UserId(1), a.live(), PROTOCOL_VERSION);
        let sub_b = hub.subscribe(ConversationId(1), UserId(2), b.live(), PROTOCOL_VERSION);
        sub_a.go_live(0).unwrap();
        hub.publish(&message(1), None);
        // b replayed up to 0 but seq 1 was published meanwhile: it must read it first.
        assert_eq!(sub_b.go_live(0), Err(NotLive::Behind));
        sub_b.go_live(1).unwrap();
        hub.publish(&message(2), None);
        let (fa, fb) = (frames(&out_a).await, frames(&out_b).await);
        assert_eq!(fa.len(), 2);
        assert_eq!(fb.len(), 1);
        assert_eq!(
            fa[1].1.as_ref().unwrap().as_ptr(),
            fb[0].1.as_ref().unwrap().as_ptr(),
            "bytes are shared, not re-encoded"
        );
    }

    #[tokio::test]
    async fn a_run_reaches_each_live_subscriber_once_in_order_from_where_it_stands() {
        let hub = Hub::default();
        let (out_a, out_b, out_c) = (
            Outbound::multiplexed(),
            Outbound::multiplexed(),
            Outbound::multiplexed(),
        );
        let (a, b, c) = (out_a.open(1), out_b.open(1), out_c.open(1));
        let sub_a = hub.subscribe(ConversationId(1), UserId(1), a.live(), PROTOCOL_VERSION);
        let sub_b = hub.subscribe(ConversationId(1), UserId(2), b.live(), PROTOCOL_VERSION);
        let _sub_c = hub.subscribe(ConversationId(1), UserId(3), c.live(), PROTOCOL_VERSION);
        sub_a.go_live(0).unwrap();
        // b's replay already sent seqs 1..=3.
        sub_b.go_live(3).unwrap();
        let run: Vec<ChatMessage> = (1..=5).map(message).collect();
        let refs: Vec<&ChatMessage> = run.iter().collect();
        let delivered = hub.publish_run(&refs, &vec![None; 5], std::time::Instant::now());
        assert_eq!(delivered.len(), 5);
        let a_conn = a.live().connection();
        let b_conn = b.live().connection();
        assert!(delivered.iter().all(|d| d.contains(a_conn)));
        assert_eq!(
            delivered
                .iter()
                .map(|d| d.contains(b_conn))
                .collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
        let seqs = |frames: Vec<(u64, Option<Bytes>)>| -> Vec<u64> {
            frames
                .iter()
                .map(|(_, f)| match decode(f) {
                    ServerFrame::Message(m) => m.seq,
                    other => panic!("expected a message, got {other:?}"),
                })
                .collect()
        };
        assert_eq!(seqs(frames(&out_a).await), [1, 2, 3, 4, 5], "all, in order");
        assert_eq!(seqs(frames(&out_b).await), [4, 5], "only what it lacked");
        // c is still replaying: nothing live, and it must catch up before going live.
        assert_eq!(_sub_c.go_live(3), Err(NotLive::Behind));
    }

    #[tokio::test]
    async fn big_runs_in_several_conversations_keep_a_connection_under_its_cap() {
        use crate::chat::outbound::{CONNECTION_QUEUE_BYTES, FRAME_OVERHEAD};
        let hub = Hub::default();
        let out = Outbound::multiplexed();
        let txs: Vec<_> = (1..=3).map(|id| out.open(id)).collect();
        let subs: Vec<Subscription> = txs
            .iter()
            .enumerate()
            .map(|(i, tx)| {
                let sub = hub.subscribe(
                    ConversationId(i as u64 + 1),
                    UserId(1),
                    tx.live(),
                    PROTOCOL_VERSION,
                );
                sub.go_live(0).unwrap();
                sub
            })
            .collect();
        // One commit of 3 x 400 messages of ~1 KB: 1.2 MB for one connection.
        for conversation in 1..=3u64 {
            let run: Vec<ChatMessage> = (1..=400)
                .map(|seq| ChatMessage {
                    conversation: ConversationId(conversation),
                    ..message(seq)
                })
                .collect();
            let refs: Vec<&ChatMessage> = run.iter().collect();
            hub.publish_run(&refs, &vec![None; run.len()], std::time::Instant::now());
        }
        let got = frames(&out).await;
        let held: usize = got
            .iter()
            .filter_map(|(_, f)| f.as_ref())
            .map(|f| f.len() + FRAME_OVERHEAD)
            .sum();
        // Each stream that did not fit got its Lagged (beyond the caps, one per stream).
        let lagged = got
            .iter()
            .filter(|(_, f)| f.is_some() && matches!(decode(f), ServerFrame::Lagged { .. }))
            .count();
        assert!(lagged >= 1, "the cap was reached, so a stream was cut");
        assert!(
            held <= CONNECTION_QUEUE_BYTES + lagged * 64,
            "{held} bytes queued on one connection"
        );
        drop(subs);
    }

    #[tokio::test]
    async fn a_full_subscriber_is_cut_with_lagged_and_the_entry_is_freed() {
        let hub = Hub::default();
        let out = Outbound::multiplexed();
        let tx = out.open(1);
        let sub = hub.subscribe(ConversationId(1), UserId(1), tx.live(), PROTOCOL_VERSION);
        sub.go_live(0).unwrap();
        let mut seq = 0;
        while hub.conversations() == 1 {
            seq += 1;
            hub.publish(&message(seq), None);
            assert!(seq < 2 * STREAM_QUEUE_BYTES as u64 / 1000, "never cut");
        }
        let got = frames(&out).await;
        let (_, Some(last)) = &got[got.len() - 2] else {
            panic!("expected a frame before the finish");
        };
        let lagged: ServerFrame = quibble_protocol::codec::decode_exact(last, usize::MAX).unwrap();
        assert_eq!(
            lagged,
            ServerFrame::Lagged {
                resume_from: seq - 1
            }
        );
        assert_eq!(got.last().unwrap().1, None, "then the stream ends");
        drop(sub);
        assert_eq!(hub.conversations(), 0);
    }

    fn decode(frame: &Option<Bytes>) -> ServerFrame {
        quibble_protocol::codec::decode_exact(frame.as_ref().unwrap(), usize::MAX).unwrap()
    }

    fn deleted(seq: u64) -> ServerFrame {
        ServerFrame::Deleted {
            conversation: ConversationId(1),
            seq,
        }
    }

    #[tokio::test]
    async fn deletions_reach_live_and_replaying_streams_that_speak_them_in_order() {
        let hub = Hub::default();
        let (out_live, out_replaying, out_old) = (
            Outbound::multiplexed(),
            Outbound::multiplexed(),
            Outbound::multiplexed(),
        );
        let txs = [out_live.open(1), out_replaying.open(1), out_old.open(1)];
        let live = hub.subscribe(
            ConversationId(1),
            UserId(1),
            txs[0].live(),
            PROTOCOL_VERSION,
        );
        let replaying = hub.subscribe(
            ConversationId(1),
            UserId(1),
            txs[1].live(),
            PROTOCOL_VERSION,
        );
        let old = hub.subscribe(ConversationId(1), UserId(1), txs[2].live(), 2);
        live.go_live(0).unwrap();
        old.go_live(0).unwrap();
        hub.publish(&message(1), None);
        hub.publish_deleted(ConversationId(1), 1);
        // The replaying stream may have read seq 1's text: it hears of the deletion right
        // after its replay.
        replaying.go_live(1).unwrap();
        hub.publish(&message(2), None);

        let got: Vec<ServerFrame> = frames(&out_live)
            .await
            .iter()
            .map(|f| decode(&f.1))
            .collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (&got[1], &got[2]),
            (&deleted(1), &ServerFrame::Message(message(2)))
        );
        let got: Vec<ServerFrame> = frames(&out_replaying)
            .await
            .iter()
            .map(|f| decode(&f.1))
            .collect();
        assert_eq!(got, [deleted(1), ServerFrame::Message(message(2))]);
        let got = frames(&out_old).await;
        assert_eq!(got.len(), 2, "messages only, no Deleted");
        assert!(matches!(decode(&got[1].1), ServerFrame::Message(_)));
    }

    #[tokio::test]
    async fn too_many_deletions_while_replaying_cut_the_stream() {
        let hub = Hub::default();
        let out = Outbound::multiplexed();
        let tx = out.open(1);
        let sub = hub.subscribe(ConversationId(1), UserId(1), tx.live(), PROTOCOL_VERSION);
        for seq in 1..=MAX_HELD_DELETIONS as u64 + 1 {
            hub.publish_deleted(ConversationId(1), seq);
        }
        assert_eq!(sub.go_live(100), Err(NotLive::Gone));
        let got = frames(&out).await;
        assert_eq!(decode(&got[0].1), ServerFrame::Lagged { resume_from: 100 });
        assert_eq!(got[1].1, None, "then the stream ends");
    }

    #[tokio::test]
    async fn a_blocker_gets_the_hidden_marker_and_the_others_the_message() {
        let hub = Hub::default();
        let (out_a, out_b) = (Outbound::multiplexed(), Outbound::multiplexed());
        let (a, b) = (out_a.open(1), out_b.open(1));
        let sub_a = hub.subscribe(ConversationId(1), UserId(7), a.live(), PROTOCOL_VERSION);
        let sub_b = hub.subscribe(ConversationId(1), UserId(8), b.live(), PROTOCOL_VERSION);
        sub_a.go_live(0).unwrap();
        sub_b.go_live(0).unwrap();
        let blockers: HashSet<UserId> = [UserId(7)].into();
        hub.publish(&message(1), Some(&blockers));
        hub.publish(&message(2), None);
        let decode = |f: &Option<Bytes>| -> ChatMessage {
            match decode(f) {
                ServerFrame::Message(m) => m,
                other => panic!("expected a message, got {other:?}"),
            }
        };
        let got_a: Vec<ChatMessage> = frames(&out_a)
            .await
            .iter()
            .map(|(_, f)| decode(f))
            .collect();
        let got_b: Vec<ChatMessage> = frames(&out_b)
            .await
            .iter()
            .map(|(_, f)| decode(f))
            .collect();
        assert!(got_a[0].is_hidden() && got_a[0].seq == 1, "{:?}", got_a[0]);
        assert_eq!(got_a[1], message(2));
        assert_eq!(got_b, vec![message(1), message(2)]);
    }

    #[test]
    fn the_last_unsubscribe_frees_the_conversation() {
        let hub = Hub::default();
        let out = Outbound::multiplexed();
        let subs: Vec<Subscription> = (0..100)
            .map(|i| {
                hub.subscribe(
                    ConversationId(i),
                    UserId(1),
                    out.open(i).live(),
                    PROTOCOL_VERSION,
                )
            })
            .collect();
        assert_eq!(hub.conversations(), 100);
        drop(subs);
        assert_eq!(hub.conversations(), 0);
    }

    #[tokio::test]
    async fn publish_names_the_live_connections_that_take_activity_from_the_message() {
        let hub = Hub::default();
        let (new, old, replaying) = (
            Outbound::multiplexed(),
            Outbound::multiplexed(),
            Outbound::multiplexed(),
        );
        let (tx_new, tx_old, tx_replaying) = (new.open(1), old.open(1), replaying.open(1));
        let sub_new = hub.subscribe(
            ConversationId(1),
            UserId(1),
            tx_new.live(),
            STREAM_ACTIVITY_VERSION,
        );
        let sub_old = hub.subscribe(
            ConversationId(1),
            UserId(2),
            tx_old.live(),
            MODERATION_VERSION,
        );
        let _sub_replaying = hub.subscribe(
            ConversationId(1),
            UserId(3),
            tx_replaying.live(),
            PROTOCOL_VERSION,
        );
        sub_new.go_live(0).unwrap();
        sub_old.go_live(0).unwrap();
        let delivered = hub.publish(&message(1), None);
        assert!(delivered.contains(tx_new.live().connection()));
        assert!(
            !delivered.contains(tx_old.live().connection()),
            "an older client needs the activity"
        );
        assert!(
            !delivered.contains(tx_replaying.live().connection()),
            "not live: the activity goes"
        );
        assert_eq!(frames(&new).await.len(), 1);
    }
}
