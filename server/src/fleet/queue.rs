//! A hand-off between tasks bounded in bytes: the sender counts what each item holds (plus a
//! fixed overhead, so empty items are bounded too) and refuses an item that would take the
//! queue over its budget, instead of waiting, because its callers (the store's commit hook, a
//! Redis connection's reader) must never block. What a refusal loses, the fleet recovers from
//! the store ([`crate::fleet::sequencer`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// What every item costs on top of its own bytes.
const ITEM_OVERHEAD: usize = 64;

/// The queue is full: the item was not taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

pub struct Sender<T> {
    tx: mpsc::UnboundedSender<(T, usize)>,
    bytes: Arc<AtomicUsize>,
    budget: usize,
}

pub struct Receiver<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    bytes: Arc<AtomicUsize>,
}

/// A queue holding at most `budget` bytes.
pub fn bounded<T>(budget: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bytes = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            tx,
            bytes: Arc::clone(&bytes),
            budget,
        },
        Receiver { rx, bytes },
    )
}

impl<T> Sender<T> {
    /// Queue `item`, which holds `bytes` bytes, unless that would take the queue over budget
    /// (or the receiver is gone).
    pub fn push(&self, item: T, bytes: usize) -> Result<(), Full> {
        let cost = bytes.saturating_add(ITEM_OVERHEAD);
        let taken = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(cost).filter(|&total| total <= self.budget)
            });
        if taken.is_err() {
            return Err(Full);
        }
        self.tx.send((item, cost)).map_err(|_| {
            self.bytes.fetch_sub(cost, Ordering::AcqRel);
            Full
        })
    }
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let (item, cost) = self.rx.recv().await?;
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
        Some(item)
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let (item, cost) = self.rx.try_recv().ok()?;
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_would_go_over_budget_and_takes_again_once_drained() {
        let (tx, mut rx) = bounded::<u32>(3 * (100 + ITEM_OVERHEAD));
        for i in 0..3 {
            assert_eq!(tx.push(i, 100), Ok(()));
        }
        assert_eq!(tx.push(3, 100), Err(Full));
        assert_eq!(tx.push(4, 0), Err(Full), "an empty item costs its overhead");
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(tx.push(5, 100), Ok(()));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(5));
        assert_eq!(rx.try_recv(), None);
        assert_eq!(tx.push(6, usize::MAX), Err(Full));
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }
}
