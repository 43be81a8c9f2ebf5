//! Live counts of what a run still owes (answers to sends, first deliveries), shared by its
//! bots: the run is done when nothing is owed any more, and the counts feed the progress line.
//! It also marks the start of the measured window (the first measured send), when the server's
//! cost starts being counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::plan::Plan;

#[derive(Debug)]
pub struct Tracker {
    /// Answers plus first deliveries still to come.
    outstanding: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
    sends: u64,
    deliveries: u64,
    done: Notify,
    /// A measured message has been sent.
    measuring: AtomicBool,
    measuring_began: Notify,
}

/// A snapshot for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub acked: u64,
    pub sends: u64,
    pub delivered: u64,
    pub deliveries: u64,
}

impl Tracker {
    pub fn new(plan: &Plan) -> Tracker {
        let (sends, deliveries) = (plan.sends(), plan.deliveries());
        Tracker {
            outstanding: AtomicU64::new(sends.saturating_add(deliveries)),
            acked: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            sends,
            deliveries,
            done: Notify::new(),
            measuring: AtomicBool::new(false),
            measuring_began: Notify::new(),
        }
    }

    /// A send was acknowledged.
    pub fn acked(&self) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        self.settle(1);
    }

    /// A send was refused: its answer came, and its deliveries to `members` never will.
    pub fn rejected(&self, members: u64) {
        self.settle(members.saturating_add(1));
    }

    /// A message reached a member for the first time.
    pub fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.settle(1);
    }

    /// `deliveries` owed to a member that could not join will never come.
    pub fn abandon(&self, deliveries: u64) {
        self.settle(deliveries);
    }

    /// Wait until nothing is owed.
    pub async fn all_done(&self) {
        let notified = self.done.notified();
        if self.outstanding.load(Ordering::Acquire) == 0 {
            return;
        }
        notified.await;
    }

    /// A measured message is being sent.
    pub fn measuring(&self) {
        if !self.measuring.swap(true, Ordering::AcqRel) {
            self.measuring_began.notify_waiters();
        }
    }

    /// Wait until the first measured message is sent.
    pub async fn measuring_began(&self) {
        // Created before the check, so a `notify_waiters` after it still wakes this.
        let notified = self.measuring_began.notified();
        if self.measuring.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    pub fn progress(&self) -> Progress {
        Progress {
            acked: self.acked.load(Ordering::Relaxed),
            sends: self.sends,
            delivered: self.delivered.load(Ordering::Relaxed),
            deliveries: self.deliveries,
        }
    }

    fn settle(&self, n: u64) {
        let before = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left.saturating_sub(n))
            })
            .unwrap_or_default();
        if before > 0 && before <= n {
            // `notify_one` keeps a permit, so a waiter that arrives later still wakes.
            self.done.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn done_once_every_answer_and_delivery_came() {
        // One room of two bots, one message each: 2 answers and 4 deliveries owed.
        let tracker = Tracker::new(&Plan::new(1, 2, 0, 1).unwrap());
        // The first message is acknowledged and reaches both members.
        tracker.acked();
        tracker.delivered();
        tracker.delivered();
        let early = tokio::time::timeout(Duration::from_millis(20), tracker.all_done()).await;
        assert!(early.is_err(), "done with the second message unanswered");
        // The second send is refused: its answer is in, its two deliveries are off the books.
        tracker.rejected(2);
        tokio::time::timeout(Duration::from_secs(1), tracker.all_done())
            .await
            .unwrap();
        assert_eq!(
            tracker.progress(),
            Progress {
                acked: 1,
                sends: 2,
                delivered: 2,
                deliveries: 4
            }
        );
    }

    #[tokio::test]
    async fn the_measured_window_begins_at_the_first_measured_send() {
        let tracker = Tracker::new(&Plan::new(1, 2, 1, 1).unwrap());
        let early =
            tokio::time::timeout(Duration::from_millis(20), tracker.measuring_began()).await;
        assert!(early.is_err(), "began before any measured send");
        let waiting = tracker.measuring_began();
        tracker.measuring();
        tracker.measuring();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), tracker.measuring_began())
            .await
            .unwrap();
    }
}
