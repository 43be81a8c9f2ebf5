//! Ingress backpressure per conversation: when most of a conversation's live readers are
//! behind, the server is what cannot keep up, so new sends into it are refused with
//! `RateLimited` and a "retry in N ms" hint (clients resend by themselves, in order) instead of
//! letting every reader's queue fill until the hub cuts them all.
//!
//! Measuring: as the hub pushes a message into each live subscriber's queue it learns how many
//! bytes that subscriber's connection holds ([`Tally::count`]). A reader holding at least the
//! high-water mark is behind; one below the low-water mark (half of it) has caught up. A reader
//! whose queue has not shrunk for [`STALL`] while above the low-water mark does not read at
//! all: it is left out of the count, so peers that stop reading cannot hold a room's senders
//! back (their queues fill and the hub cuts them, as before). A single slow reader never
//! congests a conversation either: it takes a strict majority of the counted readers.
//!
//! Deciding: each publish's tally sets the conversation's [`Congestion`] (a majority behind:
//! refuse sends for the retry time, renewed by every such publish) or clears it (at most half
//! above the low-water mark). While nothing is published nobody measures, so a refusal lasts
//! only the retry time: the sends admitted after it are the next measurement. The hint is the
//! time left plus up to as much again at random, so refused senders do not all come back at
//! once.
//!
//! Cost: the send path reads one atomic ([`Congestion::check`]); a clock is read only while
//! the conversation is congested. The hub reads the clock once per publish.
//!
//! Bound: sends already queued with the store when the conversation becomes congested still
//! commit and are delivered, so a reader's queue may pass the high-water mark by up to the
//! in-flight sends of every sender (`max_inflight_sends` each); the stream and connection caps
//! of `outbound` still hold whatever happens.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Limits;

/// How long a reader above the low-water mark may go without its queue shrinking before it
/// counts as not reading (left out of the majority).
pub const STALL: Duration = Duration::from_secs(1);

/// The thresholds, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A reader whose connection holds at least this many bytes is behind.
    pub high_water: usize,
    /// A reader holding less has caught up.
    pub low_water: usize,
    /// How long refused senders wait, at least.
    pub retry: Duration,
}

impl Policy {
    pub fn new(high_water: usize, retry: Duration) -> Policy {
        let high_water = high_water.max(1);
        Policy {
            high_water,
            low_water: high_water / 2,
            retry: retry.max(Duration::from_millis(1)),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from(&Limits::default())
    }
}

impl From<&Limits> for Policy {
    fn from(limits: &Limits) -> Self {
        Policy::new(limits.congested_queue_bytes, limits.congestion_retry)
    }
}

/// Microseconds since the first call (never 0), the clock this module keeps times in.
fn now_us() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(ORIGIN.elapsed().as_micros())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What the hub keeps for one live subscriber: whether its queue drains.
#[derive(Debug, Clone, Copy)]
pub struct Reader {
    /// The bytes its connection held after the last push.
    last_held: usize,
    /// When its queue was last seen to shrink (or to be below the low-water mark).
    progressed_at: u64,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            // The first push always counts as progress.
            last_held: usize::MAX,
            progressed_at: now_us(),
        }
    }
}

/// One publish's count of a conversation's live readers.
#[derive(Debug)]
pub struct Tally {
    policy: Policy,
    now: u64,
    /// Readers counted (those that read).
    live: u32,
    /// Counted readers at or above the high-water mark.
    behind: u32,
    /// Counted readers at or above the low-water mark.
    above_low: u32,
}

impl Tally {
    pub fn new(policy: Policy) -> Tally {
        Tally {
            policy,
            now: now_us(),
            live: 0,
            behind: 0,
            above_low: 0,
        }
    }

    /// A message was queued for `reader`, whose connection now holds `held` bytes.
    pub fn count(&mut self, reader: &mut Reader, held: usize) {
        let low = self.policy.low_water;
        if held <= reader.last_held || held < low {
            reader.progressed_at = self.now;
        }
        reader.last_held = held;
        if held < low {
            self.live += 1;
            return;
        }
        let stalled = self.now.saturating_sub(reader.progressed_at) > STALL.as_micros() as u64;
        if stalled {
            return;
        }
        self.live += 1;
        self.above_low += 1;
        if held >= self.policy.high_water {
            self.behind += 1;
        }
    }
}

/// Whether sends into one conversation are refused now; shared by the hub, which sets it from
/// each publish's [`Tally`], and the conversation's streams, which check it on every send.
#[derive(Debug, Default)]
pub struct Congestion {
    /// Until when (in [`now_us`] time) sends are refused; 0 when they are not.
    until: AtomicU64,
}

impl Congestion {
    /// Decide from a publish's tally (see the module doc).
    pub fn observe(&self, tally: &Tally) {
        if tally.live == 0 {
            return;
        }
        if tally.behind * 2 > tally.live {
            let retry = u64::try_from(tally.policy.retry.as_micros()).unwrap_or(u64::MAX);
            self.until
                .store(tally.now.saturating_add(retry), Ordering::Relaxed);
        } else if tally.above_low * 2 <= tally.live && self.until.load(Ordering::Relaxed) != 0 {
            self.until.store(0, Ordering::Relaxed);
        }
    }

    /// `Ok` to accept a send now, or how long the sender should wait (with jitter).
    pub fn check(&self) -> Result<(), Duration> {
        let until = self.until.load(Ordering::Relaxed);
        if until == 0 {
            return Ok(());
        }
        let left = until.saturating_sub(now_us());
        if left == 0 {
            return Ok(());
        }
        let wait = left + rand::random_range(0..=left);
        Err(Duration::from_micros(wait))
    }
}

/// The reason given to a send refused because its conversation is congested (clients read
/// the "retry in N ms").
pub fn reason(wait: Duration) -> String {
    format!(
        "the conversation's readers are behind (server busy); retry in {} ms",
        wait.as_millis().max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    fn policy() -> Policy {
        Policy::new(64 * KIB, Duration::from_millis(50))
    }

    /// Count readers holding `held` bytes each (every one seen draining just before).
    fn tally(held: &[usize]) -> Tally {
        let mut tally = Tally::new(policy());
        for &h in held {
            tally.count(&mut Reader::default(), h);
        }
        tally
    }

    #[test]
    fn a_majority_behind_congests_and_a_majority_caught_up_clears() {
        let congestion = Congestion::default();
        congestion.observe(&tally(&[0, 0, 70 * KIB, 70 * KIB]));
        assert!(congestion.check().is_ok(), "half is not a majority");
        congestion.observe(&tally(&[0, 70 * KIB, 70 * KIB, 70 * KIB]));
        let wait = congestion.check().unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(reason(wait).contains("retry in"));
        // Between the marks: it stays as it is.
        congestion.observe(&tally(&[40 * KIB, 40 * KIB, 40 * KIB, 0]));
        assert!(congestion.check().is_err());
        // Most readers below the low-water mark: clear.
        congestion.observe(&tally(&[40 * KIB, 40 * KIB, 0, 0]));
        assert!(congestion.check().is_ok());
    }

    #[test]
    fn a_refusal_lapses_after_the_retry_time_without_a_new_measure() {
        let congestion = Congestion::default();
        let mut tally = tally(&[70 * KIB]);
        tally.policy.retry = Duration::from_millis(1);
        congestion.observe(&tally);
        std::thread::sleep(Duration::from_millis(5));
        assert!(congestion.check().is_ok());
    }

    #[test]
    fn readers_that_do_not_drain_are_left_out_of_the_count() {
        let policy = policy();
        let mut deaf = Reader::default();
        let mut first = Tally::new(policy);
        first.count(&mut deaf, 70 * KIB);
        assert_eq!(first.behind, 1, "new readers count");
        // Its queue only grows, for longer than STALL.
        let mut later = Tally::new(policy);
        later.now = first.now + STALL.as_micros() as u64 + 1;
        later.count(&mut deaf, 80 * KIB);
        let mut healthy = Reader::default();
        later.count(&mut healthy, 0);
        assert_eq!((later.live, later.behind), (1, 0));
        let congestion = Congestion::default();
        congestion.observe(&later);
        assert!(congestion.check().is_ok(), "deaf readers congest nothing");
        // Once it drains it counts again.
        let mut again = Tally::new(policy);
        again.now = later.now + 1;
        again.count(&mut deaf, 75 * KIB);
        assert_eq!((again.live, again.behind), (1, 1));
    }
}
