//! One conversation's ordering state: its resume cursor, the out-of-order buffer and the
//! `History` requests that fill gaps, the scroll-back position for `load_older`, and where its
//! stream stands on the current connection.
//!
//! Gap filling works upwards from the cursor: each request asks for the (at most
//! [`MAX_HISTORY_PAGE`]) seqs right after it, `History { before_seq, limit }` with
//! `before_seq - limit - 1 == cursor`, so every page can be delivered at once. Because the
//! server answers with the newest `limit` messages below `before_seq`, a page that reaches
//! down to the cursor (or says `has_more: false`) holds every message of the requested range
//! that still exists; seqs it lacks are holes (deleted or hidden messages) and are skipped
//! rather than asked for again.
//!
//! The out-of-order buffer is bounded: past the limit the newest buffered message is evicted
//! and only its seq remembered, so gap filling fetches it again later. Nothing is lost and no
//! rejoin is needed.

use std::collections::BTreeMap;

use super::Queues;
use super::events::{Event, StreamKey};
use crate::limits::MAX_HISTORY_PAGE;
use crate::wire::{ChatMessage, ClientFrame, ConversationId, Cursor};

/// Where a conversation's stream stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// No stream: not connected yet, or the last one ended and a rejoin is due.
    Idle,
    /// `Join` sent, no `Joined` yet.
    Joining,
    /// `Joined` received: messages flow.
    Joined,
    /// The server is ending the stream (after `Lagged` or `Error`).
    Closing,
}

/// What the session has of the conversation's history.
#[derive(Debug, Clone, Copy)]
struct Position {
    /// Epoch and last seq delivered, with nothing missing before it (holes aside).
    cursor: Cursor,
    /// Lowest seq known; `load_older` asks for messages before it.
    oldest: u64,
    /// A scroll-back page said nothing older exists.
    older_exhausted: bool,
}

#[derive(Debug)]
pub(super) struct Conversation {
    id: ConversationId,
    link: Link,
    position: Option<Position>,
    /// Messages after a gap, by seq, waiting for it to fill.
    buffer: BTreeMap<u64, ChatMessage>,
    /// Highest seq evicted from the full buffer (0: none beyond the cursor).
    evicted_up_to: u64,
    /// `before_seq` of the outstanding gap-filling request.
    gap_request: Option<u64>,
    /// The outstanding scroll-back request: `before_seq` and `limit`.
    older_request: Option<(u64, u16)>,
    /// Stream failures since the last `Joined`, for the rejoin delay.
    failures: u32,
    /// When a failed stream is to be rejoined.
    rejoin_at_ms: Option<u64>,
    /// Where to start without a cursor of our own (`Session::join_from`), once the epoch is
    /// known.
    start_after: Option<u64>,
}

impl Conversation {
    pub(super) fn new(id: ConversationId) -> Self {
        Conversation {
            id,
            link: Link::Idle,
            position: None,
            buffer: BTreeMap::new(),
            evicted_up_to: 0,
            gap_request: None,
            older_request: None,
            failures: 0,
            rejoin_at_ms: None,
            start_after: None,
        }
    }

    /// Start after `seq` rather than with the recent page, unless a cursor exists by then.
    pub(super) fn start_after(&mut self, seq: u64) {
        self.start_after = Some(seq);
    }

    /// The store's epoch is known: a pending start point becomes the cursor.
    pub(super) fn adopt_epoch(&mut self, epoch: u64) {
        if let Some(seq) = self.start_after.take()
            && self.position.is_none()
        {
            self.position = Some(Position {
                cursor: Cursor { epoch, seq },
                oldest: seq.saturating_add(1),
                older_exhausted: false,
            });
        }
    }

    /// Whether its start point waits for the store's epoch (`join_from` before any
    /// `Welcome`): its `Join` cannot go out before `Welcome`.
    pub(super) fn waits_for_epoch(&self) -> bool {
        self.start_after.is_some()
    }

    pub(super) fn link(&self) -> Link {
        self.link
    }

    pub(super) fn cursor(&self) -> Option<Cursor> {
        self.position.map(|p| p.cursor)
    }

    pub(super) fn failures(&self) -> u32 {
        self.failures
    }

    pub(super) fn rejoin_at(&self) -> Option<u64> {
        self.rejoin_at_ms
    }

    pub(super) fn schedule_rejoin(&mut self, at_ms: u64) {
        self.rejoin_at_ms = Some(at_ms);
    }

    fn stream(&self) -> StreamKey {
        StreamKey::Conversation(self.id)
    }

    fn drop_gap(&mut self) {
        self.buffer.clear();
        self.evicted_up_to = 0;
        self.gap_request = None;
    }

    /// The connection is gone: no stream and no gap request any more. A scroll-back request
    /// in flight is repeated after the next `Joined`.
    pub(super) fn disconnected(&mut self) {
        self.link = Link::Idle;
        self.rejoin_at_ms = None;
        self.drop_gap();
    }

    /// Drop everything that belongs to another store epoch. Returns whether there was a
    /// cursor to drop (the application must then be told to reset).
    pub(super) fn forget_other_epoch(&mut self, epoch: u64) -> bool {
        match self.position {
            Some(p) if p.cursor.epoch != epoch => {
                self.position = None;
                self.older_request = None;
                self.drop_gap();
                true
            }
            _ => false,
        }
    }

    /// Queue `Join` (resuming from the cursor, if any); the driver opens a new stream for it.
    pub(super) fn join(&mut self, out: &mut Queues) {
        self.link = Link::Joining;
        self.rejoin_at_ms = None;
        let frame = ClientFrame::Join {
            conversation: self.id,
            resume: self.cursor(),
        };
        out.transmit(self.stream(), frame);
    }

    /// `Leave` if a stream is open (or opening) on this connection.
    pub(super) fn leave(&self, out: &mut Queues) {
        if matches!(self.link, Link::Joining | Link::Joined) {
            out.transmit(self.stream(), ClientFrame::Leave);
        }
    }

    /// `Joined`: adopt the server's starting point unless ours is further along, and repeat a
    /// scroll-back request that the last stream did not answer. Returns whether the cursor
    /// belonged to another epoch and was dropped (`Reset` must precede `Joined`).
    pub(super) fn joined(&mut self, epoch: u64, from_seq: u64, out: &mut Queues) -> bool {
        let reset = self.forget_other_epoch(epoch);
        self.link = Link::Joined;
        self.failures = 0;
        match &mut self.position {
            Some(p) => p.cursor.seq = p.cursor.seq.max(from_seq),
            None => {
                self.position = Some(Position {
                    cursor: Cursor {
                        epoch,
                        seq: from_seq,
                    },
                    oldest: from_seq.saturating_add(1),
                    older_exhausted: false,
                })
            }
        }
        if let Some((before_seq, limit)) = self.older_request {
            out.transmit(self.stream(), ClientFrame::History { before_seq, limit });
        }
        reset
    }

    /// `Lagged`: the server is ending the stream; rejoin (at once) when it is closed.
    pub(super) fn lagged(&mut self) {
        if matches!(self.link, Link::Joining | Link::Joined) {
            self.link = Link::Closing;
        }
    }

    /// A stream `Error` that does not end our interest: the server is ending the stream;
    /// rejoin after a delay when it is closed.
    pub(super) fn failed(&mut self) {
        if self.link != Link::Idle {
            self.link = Link::Closing;
            self.failures = self.failures.saturating_add(1);
        }
    }

    /// The server ended the stream. Returns false if there was no stream to end; otherwise
    /// the conversation is to be rejoined (see [`Conversation::failures`] for how soon). An
    /// end without `Lagged` or `Error` counts as a failure.
    pub(super) fn stream_closed(&mut self) -> bool {
        match self.link {
            Link::Idle => return false,
            Link::Joining | Link::Joined => self.failures = self.failures.saturating_add(1),
            Link::Closing => {}
        }
        self.link = Link::Idle;
        self.drop_gap();
        true
    }

    /// A live or replayed message.
    pub(super) fn on_message(&mut self, message: ChatMessage, max_buffer: usize, out: &mut Queues) {
        if self.link != Link::Joined || message.conversation != self.id {
            return;
        }
        self.buffer_new(message);
        self.deliver(0, out);
        self.evict_excess(max_buffer);
        self.request_gap(out);
    }

    /// A `Deleted`: a message still buffered (behind a gap) becomes its tombstone before it is
    /// delivered; one already delivered (or never seen: the application ignores it) is the
    /// application's to replace, told by [`Event::Deleted`].
    pub(super) fn on_deleted(&mut self, seq: u64, out: &mut Queues) {
        if self.link != Link::Joined {
            return;
        }
        if let Some(buffered) = self.buffer.get_mut(&seq) {
            *buffered = buffered.tombstone();
            return;
        }
        out.events.push_back(Event::Deleted {
            conversation: self.id,
            seq,
        });
    }

    /// A `HistoryPage`, matched against the outstanding requests by `before_seq`; a page
    /// nobody asked for (e.g. from an earlier stream) is ignored.
    pub(super) fn on_history_page(
        &mut self,
        before_seq: u64,
        messages: Vec<ChatMessage>,
        has_more: bool,
        max_buffer: usize,
        out: &mut Queues,
    ) {
        if self.link != Link::Joined {
            return;
        }
        if self.gap_request == Some(before_seq) {
            self.fill_gap(before_seq, messages, has_more, max_buffer, out);
        } else if self.older_request.is_some_and(|(b, _)| b == before_seq) {
            self.scroll_back(messages, has_more, out);
        }
    }

    /// `load_older`: queue a scroll-back request. Returns false when nothing older exists or
    /// the stream is not joined; true when a page is coming (also when one is already asked
    /// for, in which case no second request is made).
    pub(super) fn load_older(&mut self, limit: u16, out: &mut Queues) -> bool {
        if self.link != Link::Joined {
            return false;
        }
        let Some(p) = self.position else {
            return false;
        };
        if p.oldest <= 1 || p.older_exhausted {
            return false;
        }
        if self.older_request.is_some() {
            return true;
        }
        let limit = limit.clamp(1, MAX_HISTORY_PAGE);
        self.older_request = Some((p.oldest, limit));
        let frame = ClientFrame::History {
            before_seq: p.oldest,
            limit,
        };
        out.transmit(self.stream(), frame);
        true
    }

    fn buffer_new(&mut self, message: ChatMessage) {
        if let Some(p) = self.position
            && message.seq > p.cursor.seq
        {
            self.buffer.insert(message.seq, message);
        }
    }

    /// Deliver buffered messages in order: every one up to `skip_through` (seqs missing up to
    /// there are holes), then those that follow the cursor without a gap.
    fn deliver(&mut self, skip_through: u64, out: &mut Queues) {
        let Some(p) = self.position.as_mut() else {
            return;
        };
        while let Some(entry) = self.buffer.first_entry() {
            let seq = *entry.key();
            if seq > skip_through {
                p.cursor.seq = p.cursor.seq.max(skip_through);
                if seq > p.cursor.seq.saturating_add(1) {
                    break;
                }
            }
            let message = entry.remove();
            if seq > p.cursor.seq {
                p.cursor.seq = seq;
                out.events.push_back(Event::Message(message));
            }
        }
        p.cursor.seq = p.cursor.seq.max(skip_through);
    }

    fn evict_excess(&mut self, max_buffer: usize) {
        while self.buffer.len() > max_buffer {
            let Some((seq, _)) = self.buffer.pop_last() else {
                break;
            };
            self.evicted_up_to = self.evicted_up_to.max(seq);
        }
    }

    /// Ask for the seqs right after the cursor if some are missing and no request is out.
    fn request_gap(&mut self, out: &mut Queues) {
        if self.link != Link::Joined || self.gap_request.is_some() {
            return;
        }
        let Some(p) = self.position else {
            return;
        };
        let next = p.cursor.seq.saturating_add(1);
        let evicted_end =
            (self.evicted_up_to >= next).then(|| self.evicted_up_to.saturating_add(1));
        let buffered_end = self.buffer.keys().next().copied();
        let Some(end) = [evicted_end, buffered_end].into_iter().flatten().min() else {
            return;
        };
        let before_seq = end.min(next.saturating_add(u64::from(MAX_HISTORY_PAGE)));
        if before_seq <= next {
            return;
        }
        let limit = u16::try_from(before_seq - next).unwrap_or(MAX_HISTORY_PAGE);
        self.gap_request = Some(before_seq);
        out.transmit(self.stream(), ClientFrame::History { before_seq, limit });
    }

    fn fill_gap(
        &mut self,
        before_seq: u64,
        messages: Vec<ChatMessage>,
        has_more: bool,
        max_buffer: usize,
        out: &mut Queues,
    ) {
        self.gap_request = None;
        let Some(p) = self.position else {
            return;
        };
        let mut lowest: Option<u64> = None;
        for message in messages {
            if message.conversation != self.id {
                continue;
            }
            lowest = Some(lowest.map_or(message.seq, |l| l.min(message.seq)));
            self.buffer_new(message);
        }
        let complete = !has_more || lowest.is_some_and(|l| l <= p.cursor.seq.saturating_add(1));
        let skip_through = if complete {
            before_seq.saturating_sub(1)
        } else {
            0
        };
        self.deliver(skip_through, out);
        self.evict_excess(max_buffer);
        self.request_gap(out);
    }

    fn scroll_back(&mut self, messages: Vec<ChatMessage>, has_more: bool, out: &mut Queues) {
        self.older_request = None;
        let id = self.id;
        let Some(p) = self.position.as_mut() else {
            return;
        };
        let mut page: Vec<ChatMessage> = messages
            .into_iter()
            .filter(|m| m.conversation == id && m.seq < p.oldest)
            .collect();
        page.sort_by_key(|m| m.seq);
        page.dedup_by_key(|m| m.seq);
        if let Some(first) = page.first() {
            p.oldest = first.seq;
        }
        if !has_more {
            p.older_exhausted = true;
        }
        out.events.push_back(Event::History {
            conversation: id,
            messages: page,
            has_more,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ConversationId = ConversationId(3);

    fn msg(conversation: ConversationId, seq: u64) -> ChatMessage {
        ChatMessage {
            conversation,
            seq,
            author: crate::wire::UserId(9),
            author_name: "z".into(),
            client_id: seq,
            sent_at_ms: 0,
            body: String::new(),
        }
    }

    /// A conversation joined at `from_seq`, with the Join already drained.
    fn joined_at(from_seq: u64) -> (Conversation, Queues) {
        let mut conv = Conversation::new(ID);
        let mut out = Queues::default();
        conv.join(&mut out);
        assert!(!conv.joined(1, from_seq, &mut out));
        out.transmits.clear();
        (conv, out)
    }

    fn delivered(out: &mut Queues) -> Vec<u64> {
        out.events
            .drain(..)
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }

    fn requests(out: &mut Queues) -> Vec<ClientFrame> {
        out.transmits.drain(..).map(|t| t.frame).collect()
    }

    #[test]
    fn a_page_that_stops_short_of_the_cursor_is_not_taken_as_complete() {
        let (mut conv, mut out) = joined_at(0);
        conv.on_message(msg(ID, 10), 16, &mut out);
        assert_eq!(
            requests(&mut out),
            [ClientFrame::History {
                before_seq: 10,
                limit: 9
            }]
        );
        // The server capped the page at 3: 1..=6 are still unknown, not holes.
        let page = vec![msg(ID, 7), msg(ID, 8), msg(ID, 9)];
        conv.on_history_page(10, page, true, 16, &mut out);
        assert!(delivered(&mut out).is_empty());
        assert_eq!(
            requests(&mut out),
            [ClientFrame::History {
                before_seq: 7,
                limit: 6
            }]
        );
        let page = (1..=6).map(|q| msg(ID, q)).collect();
        conv.on_history_page(7, page, false, 16, &mut out);
        assert_eq!(delivered(&mut out), (1..=10).collect::<Vec<_>>());
        assert!(requests(&mut out).is_empty());
    }

    #[test]
    fn foreign_and_stale_messages_in_a_page_are_ignored() {
        let (mut conv, mut out) = joined_at(5);
        conv.on_message(msg(ID, 8), 16, &mut out);
        requests(&mut out);
        let page = vec![
            msg(ConversationId(4), 6),
            msg(ID, 3),
            msg(ID, 7),
            msg(ID, 7),
        ];
        conv.on_history_page(8, page, true, 16, &mut out);
        // 6 exists elsewhere only; the page reaches below the cursor, so 6 is a hole here.
        assert_eq!(delivered(&mut out), [7, 8]);
        assert_eq!(conv.cursor().map(|c| c.seq), Some(8));
    }

    #[test]
    fn scroll_back_pages_are_filtered_sorted_and_lower_the_oldest_seq() {
        let (mut conv, mut out) = joined_at(20);
        assert!(conv.load_older(5, &mut out));
        assert_eq!(
            requests(&mut out),
            [ClientFrame::History {
                before_seq: 21,
                limit: 5
            }]
        );
        let page = vec![
            msg(ID, 19),
            msg(ID, 17),
            msg(ID, 25),
            msg(ID, 19),
            msg(ID, 18),
        ];
        conv.on_history_page(21, page, true, 16, &mut out);
        let [Event::History { messages, .. }] = &out.events.drain(..).collect::<Vec<_>>()[..]
        else {
            panic!("expected one History event");
        };
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [17, 18, 19]);
        assert!(conv.load_older(5, &mut out));
        assert_eq!(
            requests(&mut out),
            [ClientFrame::History {
                before_seq: 17,
                limit: 5
            }]
        );
    }

    #[test]
    fn nothing_flows_until_joined_and_after_the_stream_ends() {
        let mut conv = Conversation::new(ID);
        let mut out = Queues::default();
        conv.on_message(msg(ID, 1), 16, &mut out);
        assert!(!conv.stream_closed());
        conv.join(&mut out);
        conv.on_message(msg(ID, 1), 16, &mut out);
        assert!(delivered(&mut out).is_empty());
        conv.joined(1, 0, &mut out);
        conv.lagged();
        conv.on_message(msg(ID, 1), 16, &mut out);
        assert!(delivered(&mut out).is_empty());
        assert!(conv.stream_closed());
        assert_eq!(conv.failures(), 0, "Lagged is not a failure");
        conv.join(&mut out);
        assert!(conv.stream_closed());
        assert_eq!(conv.failures(), 1, "an unexplained end is");
    }

    #[test]
    fn a_deletion_tombstones_a_buffered_message_or_tells_the_application() {
        let (mut conv, mut out) = joined_at(0);
        let text = |seq| ChatMessage {
            body: format!("text {seq}"),
            ..msg(ID, seq)
        };
        conv.on_message(text(2), 16, &mut out);
        conv.on_deleted(2, &mut out);
        assert!(
            out.events.is_empty(),
            "2 waits behind the gap, now as its tombstone"
        );
        out.transmits.clear();
        conv.on_message(text(1), 16, &mut out);
        let got: Vec<Event> = out.events.drain(..).collect();
        let [Event::Message(one), Event::Message(two)] = &got[..] else {
            panic!("expected 1 and 2, got {got:?}");
        };
        assert_eq!((one.body.as_str(), two.seq), ("text 1", 2));
        assert!(two.is_deleted() && two.client_id == 0, "{two:?}");
        conv.on_deleted(1, &mut out);
        assert_eq!(
            out.events.drain(..).collect::<Vec<_>>(),
            [Event::Deleted {
                conversation: ID,
                seq: 1
            }]
        );
    }
}
