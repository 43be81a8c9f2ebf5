//! A bounded channel from one producer to one consumer that costs one allocation for its whole
//! life and holds no buffer while it is empty: a transport's hand-off of a stream's decoded
//! frames, and of a connection's new streams, to the engine (see `chat::stream`).
//!
//! Design: both ends share one `Arc<Mutex<..>>` holding a `VecDeque` of at most `capacity`
//! items and the waker of each end. The queue's buffer is allocated by the first item and
//! freed whenever the consumer empties it, so an idle connection's channels hold no buffer
//! between frames. There is one sender (it is not `Clone`), so room it saw stays room until
//! it sends. Either end going away is seen by the other: the consumer gets `None` once the
//! queue is drained, the producer gets its item back. (`futures-channel`'s channel took four
//! allocations, ~0.4 KB, per channel; tokio's reserves 32 slots at creation.)

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    /// The consumer, waiting for an item or the end.
    receiver: Option<Waker>,
    /// The producer, waiting for room.
    sender: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

type Shared<T> = Arc<Mutex<State<T>>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // Nothing panics while holding the lock; should something, the state is still whole.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wake `waker` if there is one (after the lock is released).
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Keep `cx`'s waker in `slot` (unless it is already the same task's).
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// A channel holding at most `capacity` items (at least one).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(State {
        queue: VecDeque::new(),
        capacity: capacity.max(1),
        receiver: None,
        sender: None,
        sender_gone: false,
        receiver_gone: false,
    }));
    (Sender(shared.clone()), Receiver(shared))
}

/// The producer's end; dropping it ends the channel once the consumer has taken what is queued.
pub struct Sender<T>(Shared<T>);

impl<T> Sender<T> {
    /// Wait for room, then queue `item`; gives it back if the consumer is gone.
    pub async fn send(&mut self, item: T) -> Result<(), T> {
        let open = poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.receiver_gone {
                return Poll::Ready(false);
            }
            if state.queue.len() < state.capacity {
                return Poll::Ready(true);
            }
            register(&mut state.sender, cx);
            Poll::Pending
        })
        .await;
        if !open {
            return Err(item);
        }
        let mut state = lock(&self.0);
        if state.receiver_gone {
            return Err(item);
        }
        // Only this sender adds items: the room seen above is still there.
        state.queue.push_back(item);
        let receiver = state.receiver.take();
        drop(state);
        wake(receiver);
        Ok(())
    }

    /// Whether the consumer is gone.
    pub fn is_closed(&self) -> bool {
        lock(&self.0).receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.sender_gone = true;
        let receiver = state.receiver.take();
        drop(state);
        wake(receiver);
    }
}

/// The consumer's end; dropping it drops what is queued and refuses further items.
pub struct Receiver<T>(Shared<T>);

impl<T> Receiver<T> {
    /// The next item; `None` once the sender is gone and everything it sent was taken.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// [`Receiver::recv`] as a poll.
    pub fn poll_recv(&mut self, cx: &Context<'_>) -> Poll<Option<T>> {
        let mut state = lock(&self.0);
        if let Some(item) = state.queue.pop_front() {
            if state.queue.is_empty() {
                // Give the buffer back: an idle channel holds none.
                state.queue = VecDeque::new();
            }
            let sender = state.sender.take();
            drop(state);
            wake(sender);
            return Poll::Ready(Some(item));
        }
        if state.sender_gone {
            return Poll::Ready(None);
        }
        register(&mut state.receiver, cx);
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.receiver_gone = true;
        let queued = std::mem::take(&mut state.queue);
        let sender = state.sender.take();
        drop(state);
        // Dropped outside the lock: an item may give something back (a budget's permit).
        drop(queued);
        wake(sender);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    fn buffer_capacity<T>(rx: &Receiver<T>) -> usize {
        lock(&rx.0).queue.capacity()
    }

    #[tokio::test]
    async fn items_arrive_in_order_and_the_end_after_them() {
        let (mut tx, mut rx) = channel(4);
        for i in 0..3 {
            tx.send(i).await.unwrap();
        }
        drop(tx);
        for i in 0..3 {
            assert_eq!(rx.recv().await, Some(i));
        }
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_full_channel_makes_the_sender_wait_until_an_item_is_taken() {
        let (mut tx, mut rx) = channel(2);
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        let blocked = timeout(Duration::from_millis(50), tx.send(3)).await;
        assert!(blocked.is_err(), "a third item fits in a channel of two");
        let sender = tokio::spawn(async move {
            tx.send(3).await.unwrap();
            tx
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!sender.is_finished(), "the sender did not wait for room");
        assert_eq!(rx.recv().await, Some(1));
        let _tx = timeout(Duration::from_secs(5), sender)
            .await
            .expect("taking an item wakes the sender")
            .unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_an_item_and_by_the_end() {
        let (mut tx, mut rx) = channel::<u32>(1);
        let receiver = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(7).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(tx);
        let got = timeout(Duration::from_secs(5), receiver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, (Some(7), None));
    }

    #[tokio::test]
    async fn a_gone_receiver_gives_the_item_back_and_wakes_a_waiting_sender() {
        let (mut tx, rx) = channel(1);
        tx.send(1).await.unwrap();
        assert!(!tx.is_closed());
        let sender = tokio::spawn(async move { tx.send(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        let returned = timeout(Duration::from_secs(5), sender)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(returned, Err(2));
    }

    #[tokio::test]
    async fn a_drained_channel_holds_no_buffer() {
        let (mut tx, mut rx) = channel(4);
        assert_eq!(buffer_capacity(&rx), 0, "a new channel holds a buffer");
        for i in 0..4 {
            tx.send(i).await.unwrap();
        }
        assert!(buffer_capacity(&rx) >= 4);
        for _ in 0..4 {
            rx.recv().await;
        }
        assert_eq!(buffer_capacity(&rx), 0, "a drained channel kept its buffer");
    }

    #[test]
    fn a_dropped_receiver_drops_what_was_queued() {
        let item = Arc::new(());
        let (mut tx, rx) = channel(2);
        futures_util::FutureExt::now_or_never(tx.send(item.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(Arc::strong_count(&item), 2);
        drop(rx);
        assert_eq!(
            Arc::strong_count(&item),
            1,
            "the queued item outlived the channel"
        );
        assert!(tx.is_closed());
    }
}
