//! A connection's outbound queue, bounded in bytes: the one place where frames wait for the
//! socket. Every logical stream of the connection has a slot here holding shared, already
//! encoded frames (`Bytes`, so a fanned-out message is held once however many recipients
//! queue it); streams push into their slot directly and the transport's writer pops.
//!
//! Bounds: a stream may hold at most [`STREAM_QUEUE_BYTES`] and the whole connection at most
//! [`CONNECTION_QUEUE_BYTES`], counting frames queued, frames popped but not yet written, and
//! room reserved for a page still being read from the store; each frame counts for its bytes
//! plus [`FRAME_OVERHEAD`]. Live fan-out never waits
//! ([`StreamTx::try_send`]: a full queue is the caller's signal to cut the stream); replies,
//! history and replay wait for room ([`StreamTx::send`], [`StreamTx::reserve`]), so they go
//! only as fast as the peer reads. The one frame that ends a stream ([`StreamTx::send_last`]:
//! `Lagged`, `Error`) bypasses the caps, so it is always delivered after what is queued; it is
//! at most one frame per stream.
//!
//! Writers: over WebSocket ([`Outbound::multiplexed`]) one writer serves every stream, taking
//! frames round-robin across streams and coalescing them into one socket write. Over
//! WebTransport ([`Outbound::per_stream`]) each QUIC stream has its own flow control, so one
//! writer per stream pops only its own slot ([`Outbound::next_for`]): a stalled stream then
//! blocks nobody else, while the byte caps above still hold per stream and per connection.
//!
//! The queued-bytes gauge (`OUTBOUND_QUEUED_BYTES`, shared by every connection) is kept exact:
//! each queue counts what it has added to the gauge and not yet taken off, and gives that back
//! when it is dropped, so a connection torn down with frames still queued or half written (a
//! peer that stopped reading, closed after [`CLOSE_WAIT`](crate::transport::ws)) leaves
//! nothing behind in it.
//!
//! Idle cost: a connection holds this queue for its whole life, so its streams are a plain
//! vector grown one slot at a time (a connection has a few streams; a hash map started at four
//! buckets), a stream's queue and the writer's turn list are freed whenever they empty, and a
//! stream's owner waits for its end through a waker kept in its slot rather than a future of
//! its own.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::chat::stream::CloseReason;

/// Bytes one stream may have queued; holds two frames of the largest size.
pub const STREAM_QUEUE_BYTES: usize = 512 * 1024;
/// Bytes one connection may have queued over all its streams.
pub const CONNECTION_QUEUE_BYTES: usize = 1024 * 1024;
/// What a queued frame costs beyond its bytes (its queue entry and allocation), so that a
/// flood of tiny frames is bounded by the memory it really takes.
pub const FRAME_OVERHEAD: usize = 64;

/// The bytes a frame counts for.
fn cost(frame: &Bytes) -> usize {
    frame.len() + FRAME_OVERHEAD
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No room under the stream's or the connection's cap.
    #[error("outbound queue full")]
    Full,
    /// The stream was ended (cut, finished) or the connection is gone.
    #[error("stream closed")]
    Closed,
}

/// What a writer takes from a slot.
#[derive(Debug)]
pub enum Item {
    Frame(Bytes),
    /// The stream ends here.
    Finish,
}

/// What the multiplexed writer gets next.
#[derive(Debug)]
pub enum Batch {
    /// Frames (and stream ends) to write, tagged with their stream ids; release `bytes` once
    /// they are written.
    Items {
        items: Vec<(u64, Item)>,
        bytes: usize,
    },
    /// Everything queued before the close is out: close the connection with this reason.
    Close(CloseReason),
    /// The connection failed; stop.
    Failed,
}

/// The queue of one connection; clones share it.
#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    multiplexed: bool,
    /// Wakes senders waiting for room.
    room: Notify,
    /// The process-wide queued-bytes gauge (looked up once per connection). Frames queued are
    /// added to it when the writer takes them (one update per batch, not one per frame: every
    /// connection's writers share it), frames written or dropped taken off.
    gauge: metrics::Gauge,
}

#[derive(Default)]
struct State {
    /// Bytes held by the connection: queued, being written, reserved.
    held: usize,
    slots: Slots,
    /// Multiplexed only: streams with items, in writing turn.
    ready: VecDeque<u64>,
    next_serial: u64,
    /// Bytes queued and not yet added to the gauge.
    unreported: usize,
    /// Bytes added to the gauge and not yet taken off: what this queue gives back when dropped.
    reported: usize,
    /// Set by [`Outbound::close`]: nothing more is accepted.
    closing: Option<CloseReason>,
    failed: bool,
    /// The multiplexed writer waiting for work: a waker kept here, under the lock that work
    /// is queued under, rather than a `Notify` and a future of its own (idle cost).
    writer: Option<Waker>,
}

struct Slot {
    /// Tells this stream apart from an earlier one on the same id.
    serial: u64,
    items: VecDeque<Item>,
    /// Bytes of `items` plus reservations: what counts against the stream's cap.
    held: usize,
    /// False once the stream was finished or cut: the owner's sends fail from then on.
    accepting: bool,
    /// Per-stream mode: wakes this stream's writer (the multiplexed writer has one for all).
    writer: Option<Arc<Notify>>,
    /// The owner waiting for the stream's end ([`StreamTx::closed`]).
    on_end: Option<Waker>,
}

/// A connection's slots by stream id: a vector searched in order, grown by one (a connection
/// has one or a few streams, at most `max_streams_per_connection`).
#[derive(Default)]
struct Slots(Vec<(u64, Slot)>);

impl Slots {
    fn position(&self, id: u64) -> Option<usize> {
        self.0.iter().position(|(slot_id, _)| *slot_id == id)
    }

    fn get(&self, id: &u64) -> Option<&Slot> {
        self.0
            .iter()
            .find(|(slot_id, _)| slot_id == id)
            .map(|(_, slot)| slot)
    }

    fn get_mut(&mut self, id: &u64) -> Option<&mut Slot> {
        self.0
            .iter_mut()
            .find(|(slot_id, _)| slot_id == id)
            .map(|(_, slot)| slot)
    }

    fn get_or_insert_with(&mut self, id: u64, new: impl FnOnce() -> Slot) -> &mut Slot {
        let at = match self.position(id) {
            Some(at) => at,
            None => {
                self.0.reserve_exact(1);
                self.0.push((id, new()));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    fn remove(&mut self, id: &u64) -> Option<Slot> {
        let at = self.position(*id)?;
        let (_, slot) = self.0.swap_remove(at);
        if self.0.len() * 2 < self.0.capacity() {
            self.0.shrink_to_fit();
        }
        Some(slot)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.0.iter_mut().map(|(_, slot)| slot)
    }

    fn drain(&mut self) -> Vec<(u64, Slot)> {
        std::mem::take(&mut self.0)
    }
}

impl Outbound {
    /// One writer for all streams (WebSocket).
    pub fn multiplexed() -> Outbound {
        Outbound::new(true)
    }

    /// One writer per stream (WebTransport).
    pub fn per_stream() -> Outbound {
        Outbound::new(false)
    }

    fn new(multiplexed: bool) -> Outbound {
        Outbound {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                multiplexed,
                room: Notify::new(),
                gauge: metrics::gauge!(crate::metrics::OUTBOUND_QUEUED_BYTES),
            }),
        }
    }

    /// Open stream `id`. Should a slot for `id` still be draining, the new stream's frames
    /// follow what it holds.
    pub fn open(&self, id: u64) -> StreamTx {
        let mut state = self.shared.lock();
        state.next_serial += 1;
        let serial = state.next_serial;
        let accepting = !(state.failed || state.closing.is_some());
        let multiplexed = self.shared.multiplexed;
        let slot = state.slots.get_or_insert_with(id, || Slot {
            serial,
            items: VecDeque::new(),
            held: 0,
            accepting: true,
            writer: (!multiplexed).then(|| Arc::new(Notify::new())),
            on_end: None,
        });
        slot.serial = serial;
        slot.accepting = accepting;
        // A stream still draining on this id is over for its owner.
        let ended = slot.on_end.take();
        drop(state);
        if let Some(waker) = ended {
            waker.wake();
        }
        StreamTx {
            live: LiveTx {
                shared: self.shared.clone(),
                id,
                serial,
            },
        }
    }

    /// Stop accepting frames; the multiplexed writer drains what is queued, then gets
    /// [`Batch::Close`]. Returns the reason the connection closes with: the first one given
    /// (moderation's, [`LiveTx::close_connection`], may have come before the engine's).
    pub fn close(&self, reason: CloseReason) -> CloseReason {
        self.shared.close(reason)
    }

    /// The transport is gone: drop everything queued and end every stream.
    pub fn fail(&self) {
        let mut state = self.shared.lock();
        state.failed = true;
        let mut dropped = 0;
        let slots = state.slots.drain();
        for (_, slot) in &slots {
            dropped += frame_bytes(&slot.items);
        }
        state.ready.clear();
        state.held = 0;
        let added = state.report();
        state.reported = state.reported.saturating_sub(dropped);
        let writer = state.writer.take();
        drop(state);
        self.shared.gauge_add(added);
        self.shared.gauge_sub(dropped);
        for (_, mut slot) in slots {
            slot.wake_writer();
            slot.wake_owner();
        }
        wake(writer);
        self.shared.room.notify_waiters();
    }

    /// Multiplexed writer: wait for work and take up to about `max_bytes` of it, one item per
    /// stream in turn.
    pub async fn next_batch(&self, max_bytes: usize) -> Batch {
        poll_fn(|cx| self.poll_batch(cx, max_bytes)).await
    }

    /// [`Outbound::next_batch`] as a poll, for a writer kept as a state rather than a future.
    pub fn poll_batch(&self, cx: &Context<'_>, max_bytes: usize) -> Poll<Batch> {
        let mut state = self.shared.lock();
        if state.failed {
            return Poll::Ready(Batch::Failed);
        }
        let mut items = Vec::new();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Some(id) = state.ready.pop_front() else {
                break;
            };
            let Some(slot) = state.slots.get_mut(&id) else {
                continue;
            };
            let Some(item) = slot.items.pop_front() else {
                continue;
            };
            if let Item::Frame(frame) = &item {
                bytes += cost(frame);
                slot.held -= cost(frame);
            }
            if !slot.items.is_empty() {
                state.ready.push_back(id);
            } else if !slot.accepting {
                state.slots.remove(&id);
            } else {
                slot.release_queue();
            }
            items.push((id, item));
        }
        if state.ready.is_empty() {
            // An idle connection holds no turn list between batches.
            state.ready = VecDeque::new();
        }
        if !items.is_empty() {
            let added = state.report();
            drop(state);
            self.shared.gauge_add(added);
            self.shared.room.notify_waiters();
            return Poll::Ready(Batch::Items { items, bytes });
        }
        if let Some(reason) = &state.closing {
            return Poll::Ready(Batch::Close(reason.clone()));
        }
        match &mut state.writer {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.writer = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Per-stream writer: wait for stream `tx`'s next frames (up to about `max_bytes`);
    /// `None` once the stream is finished and drained (or the connection failed).
    pub async fn next_for(&self, tx: &StreamRef, max_bytes: usize) -> Option<(Vec<Bytes>, usize)> {
        loop {
            let wake = {
                let mut state = self.shared.lock();
                let slot = state
                    .slots
                    .get_mut(&tx.id)
                    .filter(|s| s.serial == tx.serial)?;
                let mut frames = Vec::new();
                let mut bytes = 0;
                let mut finished = false;
                while bytes < max_bytes {
                    match slot.items.pop_front() {
                        Some(Item::Frame(frame)) => {
                            bytes += cost(&frame);
                            frames.push(frame);
                        }
                        Some(Item::Finish) => {
                            finished = true;
                            break;
                        }
                        None => break,
                    }
                }
                slot.held -= bytes;
                if slot.items.is_empty() {
                    slot.release_queue();
                }
                let idle = slot.items.is_empty() && !slot.accepting;
                if finished || idle {
                    state.slots.remove(&tx.id);
                }
                if !frames.is_empty() {
                    let added = state.report();
                    drop(state);
                    self.shared.gauge_add(added);
                    self.shared.room.notify_waiters();
                    return Some((frames, bytes));
                }
                if finished || idle {
                    return None;
                }
                slot_writer(&state, tx)?
            };
            wake.notified().await;
        }
    }

    /// The stream's writer failed (reset, stalled): drop what it holds and end it.
    pub fn end_stream(&self, stream: &StreamRef) {
        let mut state = self.shared.lock();
        let removed = match state.slots.get(&stream.id) {
            Some(slot) if slot.serial == stream.serial => state.slots.remove(&stream.id),
            _ => None,
        };
        let Some(mut slot) = removed else {
            return;
        };
        let dropped = frame_bytes(&slot.items);
        state.held = state.held.saturating_sub(slot.held);
        let added = state.report();
        state.reported = state.reported.saturating_sub(dropped);
        drop(state);
        self.shared.gauge_add(added);
        self.shared.gauge_sub(dropped);
        slot.wake_owner();
        self.shared.room.notify_waiters();
    }

    /// Written: give back `bytes` taken by [`Outbound::next_batch`] or [`Outbound::next_for`].
    pub fn release(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut state = self.shared.lock();
        if !state.failed {
            state.held = state.held.saturating_sub(bytes);
        }
        state.reported = state.reported.saturating_sub(bytes);
        drop(state);
        self.shared.gauge_sub(bytes);
        self.shared.room.notify_waiters();
    }

    /// Bytes the connection holds now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.shared.lock().held
    }
}

impl Slot {
    fn wake_writer(&self) {
        if let Some(writer) = &self.writer {
            writer.notify_one();
        }
    }

    /// The stream has nothing queued: free its queue's memory, which an idle stream would
    /// otherwise keep at the largest size it reached.
    fn release_queue(&mut self) {
        self.items = VecDeque::new();
    }

    /// The stream can take no more frames: wake its owner if it waits for that.
    fn wake_owner(&mut self) {
        if let Some(waker) = self.on_end.take() {
            waker.wake();
        }
    }
}

impl State {
    /// Queued bytes not in the gauge yet, to add to it now.
    fn report(&mut self) -> usize {
        let added = std::mem::take(&mut self.unreported);
        self.reported += added;
        added
    }
}

fn slot_writer(state: &State, tx: &StreamRef) -> Option<Arc<Notify>> {
    state.slots.get(&tx.id).and_then(|s| s.writer.clone())
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See [`Outbound::close`]; the first reason given is the one that stays.
    fn close(&self, reason: CloseReason) -> CloseReason {
        let mut state = self.lock();
        let reason = state.closing.get_or_insert(reason).clone();
        let mut owners = Vec::new();
        for slot in state.slots.values_mut() {
            slot.accepting = false;
            slot.wake_writer();
            owners.extend(slot.on_end.take());
        }
        let writer = state.writer.take();
        drop(state);
        owners.into_iter().for_each(Waker::wake);
        wake(writer);
        self.room.notify_waiters();
        reason
    }

    fn gauge_add(&self, bytes: usize) {
        if bytes > 0 {
            self.gauge.increment(bytes as f64);
        }
    }

    fn gauge_sub(&self, bytes: usize) {
        if bytes > 0 {
            self.gauge.decrement(bytes as f64);
        }
    }

    /// Queue `item` on the stream, checking the caps unless `bypass`; `reserved` bytes held
    /// by the caller are turned into the item's. Returns the bytes the connection holds then.
    fn push(
        &self,
        tx: &StreamRef,
        item: Item,
        bypass: bool,
        reserved: usize,
    ) -> Result<usize, SendError> {
        let mut state = self.lock();
        let len = match &item {
            Item::Frame(frame) => cost(frame),
            Item::Finish => 0,
        };
        let State { held, slots, .. } = &mut *state;
        let slot = slots
            .get_mut(&tx.id)
            .filter(|s| s.serial == tx.serial && s.accepting)
            .ok_or(SendError::Closed)?;
        let fits = slot.held - reserved + len <= STREAM_QUEUE_BYTES
            && *held - reserved + len <= CONNECTION_QUEUE_BYTES;
        if !bypass && !fits {
            return Err(SendError::Full);
        }
        slot.held = slot.held - reserved + len;
        *held = *held - reserved + len;
        let connection_held = *held;
        let was_empty = slot.items.is_empty();
        let mut ended = None;
        if matches!(item, Item::Finish) {
            slot.accepting = false;
            ended = slot.on_end.take();
        }
        slot.items.push_back(item);
        let writer = slot.writer.clone();
        if self.multiplexed && was_empty {
            state.ready.push_back(tx.id);
        }
        state.unreported += len;
        let multiplexed_writer = state.writer.take();
        drop(state);
        wake(ended);
        match writer {
            Some(writer) => writer.notify_one(),
            None => wake(multiplexed_writer),
        }
        Ok(connection_held)
    }

    /// Hold `n` bytes for the stream if they fit now.
    fn try_reserve(&self, tx: &StreamRef, n: usize) -> Result<bool, SendError> {
        let mut state = self.lock();
        let State { held, slots, .. } = &mut *state;
        let slot = slots
            .get_mut(&tx.id)
            .filter(|s| s.serial == tx.serial && s.accepting)
            .ok_or(SendError::Closed)?;
        if slot.held + n <= STREAM_QUEUE_BYTES && *held + n <= CONNECTION_QUEUE_BYTES {
            slot.held += n;
            *held += n;
            return Ok(true);
        }
        Ok(false)
    }

    fn unreserve(&self, tx: &StreamRef, n: usize) {
        let mut state = self.lock();
        let State { held, slots, .. } = &mut *state;
        if let Some(slot) = slots.get_mut(&tx.id).filter(|s| s.serial == tx.serial) {
            slot.held = slot.held.saturating_sub(n);
        }
        *held = held.saturating_sub(n);
        drop(state);
        self.room.notify_waiters();
    }

    /// Ready once the stream can take no more frames from its owner; until then the owner's
    /// waker is kept in the slot, woken by whatever ends it.
    fn poll_ended(&self, tx: &StreamRef, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        match state
            .slots
            .get_mut(&tx.id)
            .filter(|s| s.serial == tx.serial && s.accepting)
        {
            Some(slot) => {
                match &mut slot.on_end {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => slot.on_end = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }

    /// End the stream's slot: a `Finish` after what is queued, or drop the slot if the
    /// connection is closing anyway.
    fn finish(&self, tx: &StreamRef) {
        let _ = self.push(tx, Item::Finish, true, 0);
    }
}

impl Drop for Shared {
    /// Whatever is still queued or half written leaves the gauge with the connection.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let left = std::mem::take(&mut state.reported);
        self.gauge_sub(left);
    }
}

/// Wake `waker` if there is one (after the lock is released).
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

fn frame_bytes(items: &VecDeque<Item>) -> usize {
    items
        .iter()
        .map(|i| match i {
            Item::Frame(f) => cost(f),
            Item::Finish => 0,
        })
        .sum()
}

/// Which connection a stream is of (its queue's address, which is stable while the queue is
/// held, and every stream handle holds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionKey(usize);

/// Which stream: its id and serial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamRef {
    id: u64,
    serial: u64,
}

/// A handle for live fan-out into one stream: it never waits, and it does not own the stream
/// (dropping it ends nothing).
#[derive(Clone)]
pub struct LiveTx {
    shared: Arc<Shared>,
    id: u64,
    serial: u64,
}

impl LiveTx {
    fn stream(&self) -> StreamRef {
        StreamRef {
            id: self.id,
            serial: self.serial,
        }
    }

    /// The connection this stream is of.
    pub fn connection(&self) -> ConnectionKey {
        ConnectionKey(Arc::as_ptr(&self.shared) as usize)
    }

    /// Queue a frame if it fits now.
    pub fn try_send(&self, frame: Bytes) -> Result<(), SendError> {
        self.try_send_held(frame).map(|_| ())
    }

    /// overload: [`LiveTx::try_send`], returning the bytes the connection then holds (how far
    /// behind its reader is, for `chat::congestion`).
    pub fn try_send_held(&self, frame: Bytes) -> Result<usize, SendError> {
        self.shared
            .push(&self.stream(), Item::Frame(frame), false, 0)
    }

    /// Queue the stream's last frame whatever the caps, then end the stream.
    pub fn send_last(&self, frame: Bytes) {
        let stream = self.stream();
        let _ = self.shared.push(&stream, Item::Frame(frame), true, 0);
        self.shared.finish(&stream);
    }

    /// End the whole connection from outside it (a ban, a revoked session): queue `frame` as
    /// this stream's last, whatever the caps, then close the connection with `reason`, which
    /// its engine and transport then use ([`StreamTx::closing`]).
    pub fn close_connection(&self, frame: Bytes, reason: CloseReason) {
        let _ = self
            .shared
            .push(&self.stream(), Item::Frame(frame), true, 0);
        let _ = self.shared.close(reason);
    }
}

/// Closes a connection from outside it (the heartbeat sweep, `chat::heartbeat`) without
/// keeping its queue alive.
#[derive(Clone)]
pub struct Closer(Weak<Shared>);

impl Closer {
    /// Close the connection with `reason` ([`Outbound::close`]), if it is still there.
    pub fn close(&self, reason: CloseReason) {
        if let Some(shared) = self.0.upgrade() {
            shared.close(reason);
        }
    }

    /// Whether the connection's queue is gone.
    #[cfg(test)]
    pub fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// The owner's end of one stream's slot; dropping it finishes the stream.
pub struct StreamTx {
    live: LiveTx,
}

impl StreamTx {
    /// Which stream this is, for its writer.
    pub fn stream(&self) -> StreamRef {
        self.live.stream()
    }

    /// A fan-out handle into this stream.
    pub fn live(&self) -> LiveTx {
        self.live.clone()
    }

    /// A handle that closes the whole connection and keeps nothing alive.
    pub fn closer(&self) -> Closer {
        Closer(Arc::downgrade(&self.live.shared))
    }

    pub fn try_send(&self, frame: Bytes) -> Result<(), SendError> {
        self.live.try_send(frame)
    }

    pub fn send_last(&self, frame: Bytes) {
        self.live.send_last(frame)
    }

    /// Queue a frame once there is room for it (as fast as the peer reads).
    pub async fn send(&self, frame: Bytes) -> Result<(), SendError> {
        let len = cost(&frame);
        self.reserve(len).await?.send([frame]);
        Ok(())
    }

    /// Hold room for `bytes` (at most [`STREAM_QUEUE_BYTES`]), waiting until there is some.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, SendError> {
        let stream = self.stream();
        loop {
            let notified = self.live.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.shared.try_reserve(&stream, bytes)? {
                return Ok(Reservation {
                    tx: self,
                    bytes,
                    used: false,
                });
            }
            notified.await;
        }
    }

    /// Why the connection is closing, once it is ([`LiveTx::close_connection`],
    /// [`Outbound::close`]).
    pub fn closing(&self) -> Option<CloseReason> {
        self.live.shared.lock().closing.clone()
    }

    /// Completes once the stream can take no more frames: it was cut (its last frame is
    /// queued) or finished, or the connection is closing or gone.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + '_ {
        poll_fn(move |cx| self.poll_closed(cx))
    }

    /// [`StreamTx::closed`] as a poll, for a caller that waits on several things at once
    /// without a future for each.
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.live.shared.poll_ended(&self.stream(), cx)
    }
}

impl Drop for StreamTx {
    fn drop(&mut self) {
        self.live.shared.finish(&self.stream());
    }
}

/// Room held on a stream; turned into frames with [`Reservation::send`], given back on drop.
pub struct Reservation<'a> {
    tx: &'a StreamTx,
    bytes: usize,
    used: bool,
}

impl Reservation<'_> {
    /// Queue `frames` in the reserved room (frames beyond it are queued anyway: the caller
    /// reserved what it read, so the excess is bounded by its own estimate).
    pub fn send(mut self, frames: impl IntoIterator<Item = Bytes>) {
        let stream = self.tx.stream();
        let mut reserved = self.bytes;
        for frame in frames {
            let used = reserved.min(cost(&frame));
            if self
                .tx
                .live
                .shared
                .push(&stream, Item::Frame(frame), true, used)
                .is_err()
            {
                break;
            }
            reserved -= used;
        }
        self.bytes = reserved;
        self.used = true;
        if reserved > 0 {
            self.tx.live.shared.unreserve(&stream, reserved);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used && self.bytes > 0 {
            self.tx.live.shared.unreserve(&self.tx.stream(), self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    /// A recorder whose every gauge is one value, to watch the queued-bytes gauge of the
    /// queues made under it.
    struct OneGauge(Arc<AtomicU64>);

    impl metrics::Recorder for OneGauge {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.0.clone())
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    /// A queue and the gauge it reports to.
    fn gauged(multiplexed: bool) -> (Outbound, Arc<AtomicU64>) {
        let value = Arc::new(AtomicU64::new(0f64.to_bits()));
        let recorder = OneGauge(value.clone());
        let out = metrics::with_local_recorder(&recorder, || Outbound::new(multiplexed));
        (out, value)
    }

    fn read(gauge: &AtomicU64) -> f64 {
        f64::from_bits(gauge.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn a_connection_torn_down_with_a_backlog_leaves_nothing_in_the_gauge() {
        let (out, gauge) = gauged(true);
        let control = out.open(0);
        let stream = out.open(1);
        for _ in 0..10 {
            stream.try_send(frame(1000)).unwrap();
        }
        control.try_send(frame(10)).unwrap();
        // The writer takes a batch and is torn down before writing it (a peer that stopped
        // reading, after the close's wait), with more still queued behind it.
        let Batch::Items { bytes, .. } = out.next_batch(3000).await else {
            panic!("expected items");
        };
        assert!(bytes > 0);
        // Everything queued when the batch was taken is in the gauge; what came after is not.
        stream.try_send(frame(500)).unwrap();
        let reported = 10 * (1000 + FRAME_OVERHEAD) + 10 + FRAME_OVERHEAD;
        assert_eq!(read(&gauge), reported as f64);
        out.close(CloseReason::normal("bye"));
        drop((out, control, stream));
        assert_eq!(
            read(&gauge),
            0.0,
            "the gauge keeps nothing of a connection that is gone"
        );
    }

    #[tokio::test]
    async fn written_failed_and_per_stream_frames_all_leave_the_gauge() {
        let (out, gauge) = gauged(true);
        let tx = out.open(1);
        tx.try_send(frame(100)).unwrap();
        let Batch::Items { bytes, .. } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        tx.try_send(frame(200)).unwrap();
        let Batch::Items { bytes: more, .. } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        out.release(bytes);
        tx.try_send(frame(300)).unwrap();
        out.fail();
        out.release(more);
        assert_eq!(
            read(&gauge),
            0.0,
            "written and dropped frames are taken off once"
        );
        drop((out, tx));
        assert_eq!(read(&gauge), 0.0);

        let (out, gauge) = gauged(false);
        let tx = out.open(4);
        tx.try_send(frame(100)).unwrap();
        tx.try_send(frame(100)).unwrap();
        let (_, bytes) = out.next_for(&tx.stream(), 150).await.unwrap();
        assert!(read(&gauge) > 0.0);
        out.release(bytes);
        drop((out, tx));
        assert_eq!(
            read(&gauge),
            0.0,
            "a stream's backlog leaves with its connection"
        );
    }

    #[tokio::test]
    async fn live_sends_stop_at_the_stream_cap_and_the_last_frame_still_fits() {
        let out = Outbound::multiplexed();
        let tx = out.open(1);
        let mut queued = 0;
        while tx.try_send(frame(1000)).is_ok() {
            queued += 1000 + FRAME_OVERHEAD;
        }
        assert!(queued <= STREAM_QUEUE_BYTES && queued > STREAM_QUEUE_BYTES - 1100);
        assert_eq!(tx.try_send(frame(1000)), Err(SendError::Full));
        tx.send_last(frame(10));
        assert_eq!(tx.try_send(frame(1)), Err(SendError::Closed));
        tokio::time::timeout(std::time::Duration::from_secs(1), tx.closed())
            .await
            .expect("a cut stream is closed");
        let Batch::Items { items, bytes } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        assert_eq!(bytes, queued + 10 + FRAME_OVERHEAD);
        assert!(matches!(items.last(), Some((1, Item::Finish))));
        out.release(bytes);
        assert_eq!(out.held(), 0);
    }

    #[tokio::test]
    async fn the_connection_cap_holds_over_all_streams() {
        let out = Outbound::multiplexed();
        let streams: Vec<StreamTx> = (1..=8).map(|id| out.open(id)).collect();
        let mut queued = 0;
        for tx in &streams {
            while tx.try_send(frame(4096)).is_ok() {
                queued += 4096 + FRAME_OVERHEAD;
            }
        }
        assert!(queued <= CONNECTION_QUEUE_BYTES);
        assert_eq!(out.held(), queued);
    }

    #[tokio::test]
    async fn send_waits_for_the_writer_to_make_room() {
        let out = Outbound::multiplexed();
        let tx = out.open(1);
        tx.send(frame(STREAM_QUEUE_BYTES - 100 - FRAME_OVERHEAD))
            .await
            .unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(frame(1000))).await;
        assert!(waiting.is_err(), "no room: the send waits");
        let Batch::Items { bytes, .. } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        out.release(bytes);
        tx.send(frame(1000)).await.unwrap();
    }

    #[tokio::test]
    async fn one_writer_takes_streams_in_turn_and_ends_them_in_order() {
        let out = Outbound::multiplexed();
        let a = out.open(1);
        let b = out.open(2);
        for _ in 0..2 {
            a.try_send(frame(1)).unwrap();
            b.try_send(frame(2)).unwrap();
        }
        drop(a);
        let Batch::Items { items, .. } = out.next_batch(usize::MAX).await else {
            panic!("expected items");
        };
        let ids: Vec<(u64, bool)> = items
            .iter()
            .map(|(id, item)| (*id, matches!(item, Item::Finish)))
            .collect();
        assert_eq!(
            ids,
            [(1, false), (2, false), (1, false), (2, false), (1, true)]
        );
        out.close(CloseReason::normal("bye"));
        assert!(matches!(out.next_batch(usize::MAX).await, Batch::Close(_)));
    }

    #[tokio::test]
    async fn a_burst_drained_leaves_no_buffer_behind_and_a_waiting_writer_is_woken() {
        let out = Outbound::multiplexed();
        let (a, b) = (out.open(1), out.open(2));
        // The writer waits for work with nothing but its waker kept in the queue.
        let writer = {
            let out = out.clone();
            tokio::spawn(async move { out.next_batch(usize::MAX).await })
        };
        tokio::task::yield_now().await;
        for _ in 0..40 {
            a.try_send(frame(100)).unwrap();
            b.try_send(frame(100)).unwrap();
        }
        let Ok(Batch::Items { items, bytes }) =
            tokio::time::timeout(std::time::Duration::from_secs(5), writer)
                .await
                .expect("queuing a frame wakes the waiting writer")
        else {
            panic!("expected items");
        };
        assert_eq!(items.len(), 80);
        out.release(bytes);
        let state = out.shared.lock();
        assert_eq!(state.ready.capacity(), 0, "the turn list kept its buffer");
        for (_, slot) in &state.slots.0 {
            assert_eq!(slot.items.capacity(), 0, "a stream kept its queue's buffer");
        }
        assert!(state.writer.is_none());
    }

    #[tokio::test]
    async fn per_stream_writers_see_only_their_stream() {
        let out = Outbound::per_stream();
        let a = out.open(1);
        let b = out.open(2);
        let (ra, rb) = (a.stream(), b.stream());
        a.try_send(frame(3)).unwrap();
        b.try_send(frame(5)).unwrap();
        drop(a);
        let (frames, bytes) = out.next_for(&ra, usize::MAX).await.unwrap();
        assert_eq!((frames.len(), bytes), (1, 3 + FRAME_OVERHEAD));
        assert!(out.next_for(&ra, usize::MAX).await.is_none());
        let (_, bytes_b) = out.next_for(&rb, usize::MAX).await.unwrap();
        assert_eq!(bytes_b, 5 + FRAME_OVERHEAD);
        out.release(bytes + bytes_b);
        assert_eq!(out.held(), 0);
    }

    #[tokio::test]
    async fn closing_from_outside_sends_the_last_frame_past_a_full_queue_then_the_reason() {
        let out = Outbound::multiplexed();
        let control = out.open(0);
        let other = out.open(1);
        while control.try_send(frame(4096)).is_ok() {}
        let reason = CloseReason::error(quibble_protocol::ErrorCode::Banned, "banned: spam");
        control.live().close_connection(frame(9), reason.clone());
        assert_eq!(control.closing(), Some(reason.clone()));
        assert_eq!(other.try_send(frame(1)), Err(SendError::Closed));
        tokio::time::timeout(std::time::Duration::from_secs(1), other.closed())
            .await
            .expect("every stream of the connection ends");
        let mut last = None;
        loop {
            match out.next_batch(usize::MAX).await {
                Batch::Items { items, bytes } => {
                    last = items.last().map(|(_, item)| match item {
                        Item::Frame(f) => f.len(),
                        Item::Finish => 0,
                    });
                    out.release(bytes);
                }
                Batch::Close(got) => {
                    assert_eq!(got, reason);
                    break;
                }
                Batch::Failed => panic!("failed"),
            }
        }
        assert_eq!(last, Some(9), "the closing frame goes out last");
    }
}
